#!/usr/bin/env python3
"""Benchmark: the example bot apps, stock and with the bot kit, deployed under traffic.

    .venv/bin/python bench/bot_apps.py [--apps ptb-notes,ptb-notes+kit,aiogram-notes,aiogram-notes+kit]
                                       [--deploys 2] [--interval 0.05] [--rate 50]

Each app (examples/ptb-notes: python-telegram-bot 22; examples/aiogram-notes:
aiogram 3; ``+kit``: after its adoption patch, examples/botkit-adoption/, with
the kit's wheel) is deployed into an isolated app on this machine, with its
tests run in its own environment: the first deploy makes the virtualenv from
its requirements files (``venv_make_s``). Then ``--deploys`` times a new
release under a steady polling feed (one update every ``--interval`` s) and
webhook load through the proxy (``--rate`` requests/s from ``--chats`` chats). A stock poller is
recreated (``recreate_gap_s``: the gap the switch measured, SIGTERM to the old
container until the new one runs), a poller under the kit handed over; the
webhook bot is switched blue/green. Per deploy also: the longest pause between
two processed updates as the users saw it (``max_gap_s``; with the feed's
interval in it), updates lost, answered twice, 409s, failed webhook requests.
Goals: 0 lost, 0 duplicated, 0 409, 0 failed requests. Writes
``bench/results/bot_apps.json``. Removes the apps afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
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
from harness import (
    EXAMPLE_LIBRARIES,
    PTB_POLL_TOKEN,
    build_botkit_wheel,
    example_source,
    kit_services,
    ptb_notes_feed_args,
    ptb_notes_vars,
)

APPS = ["ptb-notes", "ptb-notes+kit", "aiogram-notes", "aiogram-notes+kit"]
GUARANTEE = re.compile(r"polling_bot (handoff, no overlap|recreate: down for (\d+(?:\.\d+)?) s)")
ENV = re.compile(r"App environment: \S+ \((made from .+? in (?P<made>[\d.]+) s|cached, from [^)]+)\)")


def deploy_log(d) -> str:
    logs = [p for p in d.logs() if os.path.basename(p).startswith("deploy_")]
    with open(logs[-1], encoding="utf-8") as fh:
        return fh.read()


def settle(d, quiet: float = 3.0, limit: float = 60.0) -> float:
    """Wait until the webhook bot's notes stop growing (an app that answers
    before it processes, as python-telegram-bot's own webhook server does,
    may still be working through what it answered): the seconds it took."""
    start = time.monotonic()
    last, since = None, start
    while time.monotonic() - start < limit:
        count = d.psql("SELECT count(*) FROM notes WHERE bot = 'webhook_bot'")
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.5)
    return round(since - start, 1)


def bench_app(app: str, deploys: int, interval: float, rate: float, margin: float, wheels: str,
              keep: bool, chats: int) -> dict:
    example, _, kit = app.partition("+")
    d = new_deployment("fs_bapp", skip_tests=False)
    d.extravars.update(ptb_notes_vars(d.name), preflight_app_venv_cache=os.path.join(d.workdir, "venvs"))
    if kit:
        d.extravars["app_services"] = kit_services(d.name)
    src = example_source(example, d.extravars["code_sync_source_dir"], wheels if kit else None)
    result: dict = {"app": app, "library": EXAMPLE_LIBRARIES[example], "deploys": []}
    try:
        first = run_playbook(d, profile=False)
        result["first_deploy_rc"] = first["rc"]
        if first["rc"]:
            print(first["tail"], file=sys.stderr)
            return result
        made = ENV.search(deploy_log(d))
        result["first_deploy_s"] = first["seconds"]
        result["venv_make_s"] = float(made["made"]) if made and made["made"] else None
        for n in range(deploys):
            with open(os.path.join(src, "notes", "bot.py"), "a", encoding="utf-8") as fh:
                fh.write(f"\nRELEASE_{n} = {n}\n")
            add_changelog_entry(src, f"1.{n + 1}.0", time.strftime("%Y-%m-%d"))
            feed = PollingFeed(d, PTB_POLL_TOKEN, "polling_bot", interval=interval,
                               **ptb_notes_feed_args()).start()
            load = webhook_load(d, rate, service="webhook_bot", chats=chats).start()
            time.sleep(margin)
            deploy = run_playbook(d, profile=False)
            time.sleep(margin)
            samples = load.stop()
            feed.stop()
            settled = settle(d)
            got = GUARANTEE.search(deploy_log(d))
            one = {"deploy_rc": deploy["rc"], "deploy_s": deploy["seconds"],
                   "poller": got.group(1) if got else None, "webhook_settle_s": settled,
                   "recreate_gap_s": float(got.group(2)) if got and got.group(2) else None,
                   **feed.measure(),
                   "webhook": webhook_outcome(d, samples, service="webhook_bot", table="notes",
                                              service_column="bot"),
                   # old containers killed at their stop timeout (what they queued is lost)
                   "killed": [line for line in deploy_log(d).splitlines() if "was killed" in line]}
            result["deploys"].append(one)
            print(f"{app} deploy {n + 1}: rc={one['deploy_rc']} {one['deploy_s']} s, poller {one['poller']}, "
                  f"max gap {one['max_gap_s']} s, lost {one['updates_lost']}, duplicated "
                  f"{one['updates_duplicated']}, 409 {one['conflicts_409']}, webhook failed "
                  f"{one['webhook']['requests_failed']}/{one['webhook']['requests_sent']}, p99 "
                  f"{one['webhook']['p99_ms']} ms")
            if deploy["rc"]:
                print(deploy["tail"], file=sys.stderr)
                break
    finally:
        if not keep:
            d.destroy()
    runs = result["deploys"]
    gaps = [r["recreate_gap_s"] for r in runs if r["recreate_gap_s"] is not None]
    result["recreate_gap_s_median"] = median(gaps) if gaps else None
    result["max_gap_s_median"] = median([r["max_gap_s"] for r in runs if r["max_gap_s"] is not None])
    result["deploy_s_median"] = median([r["deploy_s"] for r in runs]) if runs else None
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
    result["goal_met"] = (len(runs) == deploys and all(r["deploy_rc"] == 0 for r in runs)
                          and t["updates_lost"] == 0 and t["updates_duplicated"] == 0
                          and t["conflicts_409"] == 0 and t["webhook_failed"] == 0
                          and t["answered_not_stored"] == 0)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apps", default=",".join(APPS), help=f"comma-separated, of {', '.join(APPS)}")
    ap.add_argument("--deploys", type=int, default=2, help="new releases deployed under traffic, per app")
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between two queued updates")
    ap.add_argument("--rate", type=float, default=50, help="webhook requests per second")
    ap.add_argument("--chats", type=int, default=50, help="webhook updates come from this many chats in turn")
    ap.add_argument("--margin-seconds", type=float, default=3.0, help="traffic before and after a deploy")
    ap.add_argument("--keep", action="store_true", help="keep the apps (for a look afterwards)")
    args = ap.parse_args(argv)
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    unknown = [a for a in apps if a not in APPS]
    if unknown:
        ap.error(f"unknown app(s) {', '.join(unknown)}; choose from {', '.join(APPS)}")
    result: dict = {"interval_s": args.interval, "rate_rps": args.rate, "chats": args.chats,
                    "machine": machine(), "apps": {}}
    with tempfile.TemporaryDirectory(prefix="bench-botkit-") as work:
        wheels = build_botkit_wheel(work)
        for app in apps:
            result["apps"][app] = bench_app(app, args.deploys, args.interval, args.rate, args.margin_seconds,
                                            wheels, args.keep, args.chats)
    result["goal_met"] = all(r["goal_met"] for r in result["apps"].values())
    path = write_result("bot_apps", result)
    for app, r in result["apps"].items():
        keys = ("venv_make_s", "recreate_gap_s_median", "max_gap_s_median", "deploy_s_median", "goal_met")
        print(f"{app}: " + " ".join(f"{k}={r.get(k)}" for k in keys) + f" totals={r['totals']}")
    print(f"written: {path}")
    return 0 if result["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
