#!/usr/bin/env python3
"""Benchmark: a stock python-telegram-bot app, before it adopts anything.

    .venv/bin/python bench/stock_app.py [--deploys 3] [--interval 0.05] [--rate 50]

Deploys examples/ptb-notes (a polling bot with ``run_polling()``, a webhook
bot with ``run_webhook()``: no lock, no heartbeat, no readiness endpoint)
into an isolated app on this machine, with the app's tests run in its own
environment: the first deploy makes the virtualenv from its requirements
files (``venv_make_s``), the next ones find it cached (``venv_cached_s``).
Then ``--deploys`` times a new release under a steady polling feed (one
update every ``--interval`` s) and webhook load through the proxy
(``--rate`` requests/s): the poller is recreated, the webhook bot switched
blue/green. Per deploy: the gap the switch measured for the poller
(``recreate_gap_s``: SIGTERM to the old container until the new one runs),
the longest pause between two processed updates as the users saw it
(``max_gap_s``), updates lost, answered twice, 409s, failed webhook
requests. Goals: 0 lost, 0 duplicated, 0 409, 0 failed requests.
Writes ``bench/results/stock_app.json``. Removes the app afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import time

from _support import (
    PollingFeed,
    add_changelog_entry,
    machine,
    median,
    new_deployment,
    run_playbook,
    webhook_load,
    webhook_outcome,
    write_result,
)
from harness import PTB_NOTES_SRC, PTB_POLL_TOKEN, ptb_notes_feed_args, ptb_notes_vars

GAP = re.compile(r"polling_bot recreate: down for (\d+(?:\.\d+)?) s")
ENV = re.compile(r"App environment: \S+ \((made from .+? in (?P<made>[\d.]+) s|cached, from [^)]+)\)")


def deploy_log(d) -> str:
    logs = [p for p in d.logs() if os.path.basename(p).startswith("deploy_")]
    with open(logs[-1], encoding="utf-8") as fh:
        return fh.read()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deploys", type=int, default=3, help="new releases deployed under traffic")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between two queued updates")
    ap.add_argument("--rate", type=float, default=50, help="webhook requests per second")
    ap.add_argument("--margin-seconds", type=float, default=3.0, help="traffic before and after a deploy")
    ap.add_argument("--keep", action="store_true", help="keep the app (for a look afterwards)")
    args = ap.parse_args(argv)

    d = new_deployment("fs_bstk", skip_tests=False)
    d.extravars.update(ptb_notes_vars(d.name), preflight_app_venv_cache=os.path.join(d.workdir, "venvs"))
    src = d.extravars["code_sync_source_dir"]
    shutil.copytree(PTB_NOTES_SRC, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".venv"))
    result: dict = {"interval_s": args.interval, "rate_rps": args.rate, "machine": machine(), "deploys": []}
    rc = 0
    try:
        first = run_playbook(d, profile=False)
        if first["rc"]:
            print(first["tail"], file=sys.stderr)
            return 1
        made = ENV.search(deploy_log(d))
        result["first_deploy_s"] = first["seconds"]
        result["venv_make_s"] = float(made["made"]) if made and made["made"] else None
        for n in range(args.deploys):
            with open(os.path.join(src, "notes", "bot.py"), "a", encoding="utf-8") as fh:
                fh.write(f"\nRELEASE_{n} = {n}\n")
            add_changelog_entry(src, f"1.{n + 1}.0", time.strftime("%Y-%m-%d"))
            feed = PollingFeed(d, PTB_POLL_TOKEN, "polling_bot", interval=args.interval,
                               **ptb_notes_feed_args()).start()
            load = webhook_load(d, args.rate, service="webhook_bot").start()
            time.sleep(args.margin_seconds)
            deploy = run_playbook(d, profile=False)
            time.sleep(args.margin_seconds)
            samples = load.stop()
            feed.stop()
            log = deploy_log(d)
            gap, env = GAP.search(log), ENV.search(log)
            one = {"deploy_rc": deploy["rc"], "deploy_s": deploy["seconds"],
                   "recreate_gap_s": float(gap.group(1)) if gap else None,
                   "venv_cached": bool(env and not env["made"]),
                   **feed.measure(),
                   "webhook": webhook_outcome(d, samples, service="webhook_bot", table="notes",
                                              service_column="bot")}
            result["deploys"].append(one)
            print(f"deploy {n + 1}: rc={one['deploy_rc']} {one['deploy_s']} s, recreate gap "
                  f"{one['recreate_gap_s']} s, max gap {one['max_gap_s']} s, lost {one['updates_lost']}, "
                  f"duplicated {one['updates_duplicated']}, 409 {one['conflicts_409']}, webhook failed "
                  f"{one['webhook']['requests_failed']}/{one['webhook']['requests_sent']}")
            if deploy["rc"]:
                print(deploy["tail"], file=sys.stderr)
                rc = 1
                break
    finally:
        if not args.keep:
            d.destroy()
    runs = result["deploys"]
    gaps = [r["recreate_gap_s"] for r in runs if r["recreate_gap_s"] is not None]
    result["recreate_gap_s_median"] = median(gaps)
    result["max_gap_s_median"] = median([r["max_gap_s"] for r in runs if r["max_gap_s"] is not None])
    result["deploy_s_median"] = median([r["deploy_s"] for r in runs])
    result["totals"] = {
        "updates_sent": sum(r["updates_sent"] for r in runs),
        "updates_lost": sum(r["updates_lost"] for r in runs),
        "updates_duplicated": sum(r["updates_duplicated"] for r in runs),
        "conflicts_409": sum(r["conflicts_409"] for r in runs),
        "webhook_requests": sum(r["webhook"]["requests_sent"] for r in runs),
        "webhook_failed": sum(r["webhook"]["requests_failed"] for r in runs),
        "answered_not_stored": sum(r["webhook"]["answered_not_stored"] for r in runs),
    }
    t = result["totals"]
    result["goal_met"] = (rc == 0 and len(runs) == args.deploys and t["updates_lost"] == 0
                          and t["updates_duplicated"] == 0 and t["conflicts_409"] == 0
                          and t["webhook_failed"] == 0 and t["answered_not_stored"] == 0)
    path = write_result("stock_app", result)
    keys = ("venv_make_s", "recreate_gap_s_median", "max_gap_s_median", "deploy_s_median", "goal_met")
    print(" ".join(f"{k}={result.get(k)}" for k in keys) + f" totals={t}\nwritten: {path}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
