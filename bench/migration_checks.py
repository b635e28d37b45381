#!/usr/bin/env python3
"""Benchmark: what the migration safety checks add to a deploy.

    .venv/bin/python bench/migration_checks.py [--rounds 3]

The sample app's v1 is deployed once. Then this benchmark holds the server's
deploy lock itself (a lock file naming its own, living process), so that each
deploy below runs everything up to the lock (reading the server, the
pre-deploy checks) and is refused there, changing nothing; the runs differ
only in the checks. Four kinds, alternated, ``--rounds`` of each:

* ``pending_on``: v2's source (one pending migration, 0001 -> 0002) with the
  lint and the check of the serving release on the new schema (the defaults);
* ``pending_off``: the same with ``preflight_migrations_lint=false`` and
  ``preflight_serving_check=false``;
* ``none_on`` / ``none_off``: a code-only change of v1 (no pending migration).

The cost is the difference of the medians (goal: <= 5 s with one pending
migration, 0 with none), less the work the checks only move earlier: the
serving check reads the webhook secrets before the lock, which a deploy that
goes on reads after it anyway (so a refused ``_off`` run never pays it); the
raw difference is kept too. Also kept: the lint's and the serving check's own
seconds as the deploy reports them. Writes ``bench/results/migration_checks.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time

from _support import machine, median, new_deployment, run_playbook, source, write_result

KINDS = ("pending_on", "pending_off", "none_on", "none_off")
OFF = {"preflight_migrations_lint": False, "preflight_serving_check": False}
# done before the deploy lock when the serving release is checked, after it otherwise
MOVED = "Read the webhook secrets"


def hold_lock(app_root: str) -> None:
    """The deploy lock, held by this process (alive, on this host): every deploy stops at it."""
    with open(os.path.join(app_root, ".deploy.lock"), "w", encoding="utf-8") as fh:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "user": "bench",
                   "playbook": "bench/migration_checks.py", "since": time.time(), "token": "bench"}, fh)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)

    d = new_deployment("fs_bmc")
    runs: dict[str, list[dict]] = {k: [] for k in KINDS}
    try:
        source(d, 1)
        first = run_playbook(d, profile=False)
        if first["rc"]:
            print(f"the first deploy failed:\n{first['tail']}", file=sys.stderr)
            return 1
        hold_lock(d.app_root)
        for i in range(args.rounds):
            for kind in KINDS:
                if kind.startswith("pending"):
                    source(d, 2)
                else:
                    source(d, 1, app_version=f"1.0.{i + 1}")
                r = run_playbook(d, **(OFF if kind.endswith("off") else {}))
                with open(r["output"], encoding="utf-8") as fh:
                    text = fh.read()
                if r["rc"] == 0 or "deploy lock" not in text.lower():
                    print(f"{kind}: expected the refusal at the deploy lock:\n{text[-3000:]}",
                          file=sys.stderr)
                    return 1
                with open(d.logs()[-1], encoding="utf-8") as fh:
                    log = fh.read()
                if kind == "pending_on" and "runs on the new schema" not in log:
                    print(f"{kind}: the serving release was not checked:\n{log}", file=sys.stderr)
                    return 1
                served = re.search(r"runs on the new schema and took its test messages "
                                   r"\((\d+(?:\.\d+)?) s\)", log)
                r["serving_check_s"] = float(served.group(1)) if served else None
                r["moved_s"] = sum(s for name, s in r["profile"] if MOVED in name)
                runs[kind].append(r)
                print(f"round {i + 1}: {kind:<12} {r['seconds']:7.2f} s"
                      + (f"  (serving check {r['serving_check_s']:.2f} s)" if served else ""))
    finally:
        d.destroy()

    result: dict = {"rounds": args.rounds, "machine": machine()}
    for kind in KINDS:
        result[f"{kind}_s"] = median([r["seconds"] for r in runs[kind]])
        result[f"{kind}_all_s"] = [r["seconds"] for r in runs[kind]]
    result["serving_check_s"] = median([r["serving_check_s"] for r in runs["pending_on"]])
    result["moved_s"] = median([r["moved_s"] for r in runs["pending_on"]])
    result["cost_pending_raw_s"] = round(result["pending_on_s"] - result["pending_off_s"], 2)
    result["cost_pending_s"] = round(result["cost_pending_raw_s"] - result["moved_s"], 2)
    result["cost_none_s"] = round(result["none_on_s"] - result["none_off_s"], 2)
    result["goal_pending_le_5s"] = result["cost_pending_s"] <= 5
    path = write_result("migration_checks", result)
    print()
    for kind in KINDS:
        print(f"{kind:<12} median {result[f'{kind}_s']:7.2f} s  (runs: {result[f'{kind}_all_s']})")
    print(f"the checks cost {result['cost_pending_s']:.2f} s with one pending migration (the serving "
          f"release's own run {result['serving_check_s']} s; {result['cost_pending_raw_s']:.2f} s less "
          f"{result['moved_s']:.2f} s of work moved before the lock), "
          f"{result['cost_none_s']:.2f} s with none")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
