#!/usr/bin/env python3
"""Benchmark: the polling bot's handoff during a v1 -> v2 deploy.

    .venv/bin/python bench/polling_handoff.py [--interval 0.05] [--deploys 1]

Deploys v1 of the sample app into an isolated app on this machine; the
stand-in Bot API gets one update for the polling bot (master_bot) every
``--interval`` seconds, from before a v1 -> v2 deploy driven by
``playbooks/deploy.yml`` until after it. Then it counts, from the bot's
``processed_updates`` table and the replies the stand-in recorded:
``updates_lost`` (queued, never processed), ``updates_duplicated`` (answered
more than once), ``conflicts_409`` (two pollers at once, as Telegram
reports it) and ``max_gap_s`` (the longest pause between two consecutive
processed updates). Goals: 0, 0, 0 and ``max_gap_s`` < 1.
Writes ``bench/results/polling_handoff.json``. Removes the app afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time

from _support import PollingFeed, machine, new_deployment, run_playbook, source, write_result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between two queued updates")
    ap.add_argument("--margin-seconds", type=float, default=3.0, help="feed before and after the deploy")
    ap.add_argument("--keep", action="store_true", help="keep the app (for a look afterwards)")
    args = ap.parse_args(argv)

    d = new_deployment("fs_bph", skip_tests=True)
    result: dict = {"interval_s": args.interval, "machine": machine()}
    try:
        source(d, 1)
        first = run_playbook(d, profile=False)
        if first["rc"]:
            print(first["tail"], file=sys.stderr)
            return 1
        source(d, 2)
        feed = PollingFeed(d, interval=args.interval).start()
        time.sleep(args.margin_seconds)
        deploy = run_playbook(d, profile=False)
        time.sleep(args.margin_seconds)
        feed.stop()
        if deploy["rc"]:
            print(deploy["tail"], file=sys.stderr)
        result.update(feed.measure())
        result["deploy_s"] = deploy["seconds"]
        result["deploy_rc"] = deploy["rc"]
        result["goal_met"] = (deploy["rc"] == 0 and result["updates_lost"] == 0
                              and result["updates_duplicated"] == 0 and result["conflicts_409"] == 0
                              and result["max_gap_s"] is not None and result["max_gap_s"] < 1)
    finally:
        if not args.keep:
            d.destroy()
    path = write_result("polling_handoff", result)
    print(" ".join(f"{k}={result.get(k)}" for k in
                   ("updates_sent", "updates_lost", "updates_duplicated", "conflicts_409", "max_gap_s",
                    "deploy_s")) + f"\nwritten: {path}")
    return 0 if result.get("deploy_rc") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
