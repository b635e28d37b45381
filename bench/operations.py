#!/usr/bin/env python3
"""Benchmark: what the operations features cost and how fast they tell.

    .venv/bin/python bench/operations.py [--messages 50]

* Notification latency: the sample app is deployed with two channels, the
  stand-in Telegram Bot API (its ``sendMessage`` recorded) and a local JSON
  webhook receiver; ``--messages`` events are sent to each with the code the
  deploy uses (plugins/plugin_utils/notify.py): p50/p95/max of one delivery
  (``notify_ms``), on this machine (no internet latency).
* What the notify and audit tasks add to a deploy of nothing new: the
  profile's tasks of roles/notify (``notify_tasks_s``).
* The restore drill: ``verify_backup.yml -e each_schedule=true -e
  compare=true`` after one backup of each schedule: the whole command
  (``drill_s``) and each backup's own verify seconds.

Writes ``bench/results/operations.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from _support import ROOT, machine, new_deployment, run_playbook, source, write_result

sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "playbooks", "collections"))
from http_receiver import Receiver  # noqa: E402

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import notify  # noqa: E402

TOKEN = "100009:bench-ops"


def pct(values: list, q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(round(q * (len(values) - 1))))], 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=50)
    args = ap.parse_args(argv)

    receiver = Receiver()
    d = new_deployment("fs_bops")
    result: dict = {"machine": machine(), "messages": args.messages}
    try:
        channels = [{"type": "telegram", "bot_token": TOKEN, "chat_id": "-1",
                     "api_base": f"http://127.0.0.1:{d.telegram_port}"},
                    {"type": "webhook", "url": receiver.url + "/hook"}]
        d.extravars.update(notify_channels=channels, backup_cron_enabled=True, backup_cron_service=False)
        source(d, 1)
        first = run_playbook(d, profile=False)
        if first["rc"]:
            print(f"the first deploy failed:\n{first['tail']}", file=sys.stderr)
            return 1

        # one delivery, timed, to each channel (the stand-in runs now)
        per_channel: dict = {"telegram": [], "webhook": []}
        for i in range(args.messages):
            for channel in channels:
                started = time.monotonic()
                [sent] = notify.send([channel], {"event": "deploy_success", "app": d.name, "release": str(i)},
                                     retries=0)
                if not sent["ok"]:
                    print(f"a message was not delivered: {sent}", file=sys.stderr)
                    return 1
                per_channel[channel["type"]].append((time.monotonic() - started) * 1000)
        result["notify_ms"] = {kind: {"p50": pct(v, 0.5), "p95": pct(v, 0.95), "max": round(max(v), 2)}
                               for kind, v in per_channel.items()}

        # what the notify role's tasks add to a deploy of nothing new
        noop = run_playbook(d)
        result["noop_deploy_s"] = noop["seconds"]
        result["notify_tasks_s"] = round(sum(s for name, s in noop["profile"]
                                             if name.startswith("fieldservice.deploy.notify")), 2)

        # the restore drill: one backup of each schedule, then each verified against the live database
        for schedule in ("daily", "weekly", "monthly"):
            r = run_playbook(d, "backup.yml", profile=False, backup_now_schedule=schedule)
            if r["rc"]:
                print(f"backup {schedule} failed:\n{r['tail']}", file=sys.stderr)
                return 1
        drill = run_playbook(d, "verify_backup.yml", profile=False, each_schedule=True, compare=True)
        if drill["rc"]:
            print(f"the drill failed:\n{drill['tail']}", file=sys.stderr)
            return 1
        result["drill_s"] = drill["seconds"]
        with open(os.path.join(d.backup_root, "status.json"), encoding="utf-8") as fh:
            status = json.load(fh)
        result["drill_each_s"] = {s: status["schedules"][s]["last_verify"]["seconds"]
                                  for s in ("daily", "weekly", "monthly")}
        result["drill_rows"] = status["schedules"]["daily"]["last_verify"]["rows"]
    finally:
        d.destroy()
        receiver.close()

    path = write_result("operations", result)
    for kind, m in result["notify_ms"].items():
        print(f"notification to {kind:<9} p50 {m['p50']} ms, p95 {m['p95']} ms, max {m['max']} ms")
    print(f"notify + audit tasks in a deploy of nothing new: {result['notify_tasks_s']} s "
          f"(of {result['noop_deploy_s']} s)")
    print(f"restore drill (3 backups, {result['drill_rows']} rows each, compared live): "
          f"{result['drill_s']} s; each verify {result['drill_each_s']}")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
