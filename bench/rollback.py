#!/usr/bin/env python3
"""Benchmark: `rollback.yml` after a v1 -> v2 deploy, under webhook load.

    .venv/bin/python bench/rollback.py [--rate 100]

Deploys v1 then v2 of the sample app into an isolated app on this machine,
then runs ``playbooks/rollback.yml -e rollback_restore_db=never`` (code and
image only: no rebuild, no database restore) while webhook updates go through
the proxy at ``--rate`` requests/s, from before the rollback until after it.
Reports the rollback's wall time (``rollback_s``, the whole ansible-playbook
command; goal <= 15 s) and what the senders saw (goal: 0 failed).
Writes ``bench/results/rollback.json``. Removes the app afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time

from _support import (
    machine,
    new_deployment,
    run_playbook,
    source,
    webhook_load,
    webhook_outcome,
    write_result,
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=100.0, help="webhook requests per second")
    ap.add_argument("--margin-seconds", type=float, default=3.0, help="load before and after the rollback")
    ap.add_argument("--control-nice", type=int, default=0, metavar="N",
                    help="run ansible-playbook at nice N (the control node shares this machine's cores)")
    args = ap.parse_args(argv)

    d = new_deployment("fs_brb", skip_tests=True)
    result: dict = {"rate_rps_target": args.rate, "control_nice": args.control_nice, "machine": machine()}
    try:
        for version in (1, 2):
            source(d, version)
            r = run_playbook(d, profile=False)
            if r["rc"]:
                print(r["tail"], file=sys.stderr)
                return 1
            time.sleep(1.1)  # deploy logs are named by the second
        v2 = d.current_release()
        load = webhook_load(d, args.rate, first_update_id=4_000_000).start()
        time.sleep(args.margin_seconds)
        rb = run_playbook(d, "rollback.yml", nice=args.control_nice, rollback_restore_db="never")
        time.sleep(args.margin_seconds)
        during = webhook_outcome(d, load.stop(), first_id=4_000_000)
        if rb["rc"]:
            print(rb["tail"], file=sys.stderr)
        result.update({
            "rollback_s": rb["seconds"],
            "rollback_rc": rb["rc"],
            "from_release": v2,
            "to_release": d.current_release(),
            "slowest_tasks": [{"task": t, "s": s} for t, s in rb["profile"][:5]],
            **{k: during[k] for k in ("requests_sent", "requests_failed", "failures_by_outcome",
                                      "answered_not_stored", "p50_ms", "p99_ms", "max_ms")},
        })
        result["goal_le_15s"] = rb["seconds"] <= 15
        result["goal_no_failed_request"] = during["requests_failed"] == 0 and rb["rc"] == 0
    finally:
        d.destroy()
    path = write_result("rollback", result)
    print(" ".join(f"{k}={result.get(k)}" for k in
                   ("rollback_s", "requests_sent", "requests_failed", "p99_ms")) + f"\nwritten: {path}")
    for t in result.get("slowest_tasks", []):
        print(f"    {t['s']:6.2f} s  {t['task']}")
    return 0 if result.get("rollback_rc") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
