#!/usr/bin/env python3
"""Benchmark: `rollback.yml` after a v1 -> v2 deploy, under webhook load.

    .venv/bin/python bench/rollback.py [--rate 100]

Deploys v1 then v2 of the sample app into an isolated app on this machine,
then runs ``playbooks/rollback.yml -e rollback_restore_db=never`` (code and
image only: no rebuild, no database restore) while webhook updates go through
the proxy at ``--rate`` requests/s, from before the rollback until after it.
Reports when the rolled-back release serves again (``serving_s``: from the
start of the command to the first webhook update that the target release's
container processed, read from the bot's own table; goal <= 15 s), the
whole command's wall time (``rollback_s``: it goes on with stopping the old
containers, the current link, the records and the health check), and what
the senders saw (goal: 0 failed).
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


def first_answer_s(d, samples, load_started: float, command_started: float, release: str) -> float | None:
    """Seconds from the command's start to the answer of the first webhook
    update that ``release`` processed (the bot records the release of each
    update in processed_updates)."""
    rows = d.psql("SELECT update_id FROM processed_updates WHERE service = 'admin_bot' "
                  f"AND update_id >= 4000000 AND release = '{release}'")
    by_release = {int(x) for x in rows.split()}
    ends = [load_started + s.due + s.latency_ms / 1000 for s in samples if s.update_id in by_release]
    return round(min(ends) - command_started, 2) if ends else None


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
        samples = load.stop()
        during = webhook_outcome(d, samples, first_id=4_000_000)
        serving_s = first_answer_s(d, samples, load.started_at, rb["started"], d.current_release())
        if rb["rc"]:
            print(rb["tail"], file=sys.stderr)
        result.update({
            "rollback_s": rb["seconds"],
            "serving_s": serving_s,
            "rollback_rc": rb["rc"],
            "from_release": v2,
            "to_release": d.current_release(),
            "slowest_tasks": [{"task": t, "s": s} for t, s in rb["profile"][:5]],
            **{k: during[k] for k in ("requests_sent", "requests_failed", "failures_by_outcome",
                                      "answered_not_stored", "p50_ms", "p99_ms", "max_ms")},
        })
        result["goal_le_15s"] = serving_s is not None and serving_s <= 15
        result["goal_no_failed_request"] = during["requests_failed"] == 0 and rb["rc"] == 0
    finally:
        d.destroy()
    path = write_result("rollback", result)
    keys = ("serving_s", "rollback_s", "requests_sent", "requests_failed", "p99_ms")
    print(" ".join(f"{k}={result.get(k)}" for k in keys) + f"\nwritten: {path}")
    for t in result.get("slowest_tasks", []):
        print(f"    {t['s']:6.2f} s  {t['task']}")
    return 0 if result.get("rollback_rc") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
