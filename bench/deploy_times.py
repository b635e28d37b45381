#!/usr/bin/env python3
"""Benchmark: wall time of a first deploy, a no-op deploy and a code change.

    .venv/bin/python bench/deploy_times.py [--rounds 3]

Each round deploys a fresh isolated copy of the sample app on this machine
(first deploy: provisioning, database, proxy, image build, migrations),
then the same code again (no-op: no new release), then a change of the
app's code only (a new VERSION and its CHANGELOG entry: new release, image
build on the cached layers, switch). ``ansible-playbook`` runs as a user
runs it, timed from start to exit, with Ansible's per-task profile
(``ansible.posix.profile_tasks``); the five slowest tasks of the median run
of each kind are kept. Goals on a 2-core machine: no-op <= 15 s, code
change <= 45 s. Writes ``bench/results/deploy_times.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from _support import machine, new_deployment, run_playbook, source, write_result

KINDS = ("first", "noop", "code_change")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--with-tests", action="store_true",
                    help="run the app's tests on the control node too (skip_tests=false)")
    args = ap.parse_args(argv)

    runs: dict[str, list[dict]] = {k: [] for k in KINDS}
    for i in range(args.rounds):
        d = new_deployment("fs_bdt", skip_tests=not args.with_tests)
        try:
            source(d, 1)
            for kind, version in (("first", None), ("noop", None), ("code_change", f"1.0.{i + 1}")):
                if version:
                    source(d, 1, app_version=version)
                r = run_playbook(d)
                if r["rc"]:
                    print(f"{kind} deploy failed:\n{r['tail']}", file=sys.stderr)
                    return 1
                runs[kind].append(r)
                print(f"round {i + 1}: {kind:<12} {r['seconds']:7.2f} s")
        finally:
            d.destroy()

    result: dict = {"rounds": args.rounds, "skip_tests": not args.with_tests, "machine": machine()}
    for kind in KINDS:
        times = [r["seconds"] for r in runs[kind]]
        med = statistics.median(times)
        median_run = min(runs[kind], key=lambda r: abs(r["seconds"] - med))
        result[f"{kind}_s"] = round(med, 2)
        result[f"{kind}_all_s"] = times
        result[f"{kind}_slowest_tasks"] = [{"task": t, "s": s} for t, s in median_run["profile"][:5]]
    result["goal_noop_le_15s"] = result["noop_s"] <= 15
    result["goal_code_change_le_45s"] = result["code_change_s"] <= 45
    path = write_result("deploy_times", result)
    print()
    for kind in KINDS:
        print(f"{kind:<12} median {result[f'{kind}_s']:7.2f} s  (runs: {result[f'{kind}_all_s']})")
        for t in result[f"{kind}_slowest_tasks"]:
            print(f"    {t['s']:6.2f} s  {t['task']}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
