#!/usr/bin/env python3
"""Benchmark: a rolling deploy over 1, 2 and 3 app servers of the test bed.

    .venv/bin/python bench/rolling.py [--hosts 1,2,3] [--rate 20] [--rounds 1] [--batch 1]

The fleet of tests/integration/fleet.py: app servers with their own Docker
engines, reached over SSH, none with a route to PyPI; a shared PostgreSQL on
db1; the tool's load balancer on lb1; the image built once on the control
node and pulled by digest through the registry. For each number of app
servers a fresh app gets v1 (the first deploy, not timed here), then v2 is
deployed (timed: ``ansible-playbook`` from start to exit, batches of
``--batch`` servers - 1 by default, as ``rollout_batch_size`` - with
``rollout_batch_wait`` 0 and ``lb_drain_seconds`` 2) under webhook load
through the load balancer (open loop, ``--rate`` requests per second) and a
steady feed of updates for the polling bot (10 per second; the bot runs on
every server, one of them polls: the lock in the shared database): the
requests that failed, their p99, the updates answered but not kept, and the
polling updates lost or repeated and the 409 answers Telegram gave.

Reported per server count: ``deploy_s`` (median of the rounds), the image
step (build once, push, pull on every server: from the deploy log's
"Building Docker images" line to the next step's), and the cost of each
extra server as a share of the one-server deploy (goal <= 25 %). Writes
``bench/results/rolling.json`` (``rolling_batch_<size>.json`` for another
``--batch``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import tempfile
import uuid

from _support import (
    SECRET_HEADER,
    LoadGenerator,
    PollingFeed,
    fleet,
    machine,
    make_source,
    run_playbook,
    testbed,
    webhook_outcome,
    write_result,
)

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] (.*)$")


def step_seconds(log: str, start: str) -> float | None:
    """Seconds from the deploy log line starting with ``start`` to the next line of another step."""
    lines = [(datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S"), m[2])
             for m in (STAMP.match(line) for line in log.splitlines()) if m]
    for i, (at, text) in enumerate(lines):
        if text.startswith(start):
            for later, other in lines[i + 1:]:
                if "Image of " not in other:  # the pull lines belong to the step
                    return (later - at).total_seconds()
    return None


def one_round(f: fleet.Fleet, apps: list[str], rate: float, batch: str, work: str) -> dict:
    name = f"roll_{uuid.uuid4().hex[:6]}"
    d = f.deployment(name, work, apps=apps)
    d.extravars["rollout_batch_size"] = batch
    try:
        make_source(os.path.join(work, "src"), 1)
        first = run_playbook(d, profile=False)
        if first["rc"]:
            raise RuntimeError(f"v1 deploy on {len(apps)} server(s) failed:\n{first['tail']}")
        secret = f.apps[apps[0]].ssh(f"cat /opt/{name}/shared/webhooks/admin_bot.secret").stdout.strip()
        make_source(os.path.join(work, "src"), 2)
        load = LoadGenerator(url=f.lb_url(), rate=rate, headers={SECRET_HEADER: secret})
        feed = PollingFeed(f, interval=0.1).start()  # the fleet's stand-in Bot API and database
        load.start()
        try:
            second = run_playbook(d, profile=False)
        finally:
            samples = load.stop()
            feed.stop()
        if second["rc"]:
            raise RuntimeError(f"v2 deploy on {len(apps)} server(s) failed:\n{second['tail']}")
        log = fleet.last_log(d)
        web = webhook_outcome(f, samples)  # the fleet's database on db1 (Fleet.psql)
        polled = feed.measure()
        return {"first_s": first["seconds"], "deploy_s": second["seconds"],
                "image_step_s": step_seconds(log, "Building Docker images"),
                "requests_sent": web["requests_sent"], "requests_failed": web["requests_failed"],
                "failures_by_outcome": web["failures_by_outcome"], "p50_ms": web["p50_ms"],
                "p99_ms": web["p99_ms"], "answered_not_stored": web["answered_not_stored"],
                "updates_sent": polled["updates_sent"], "updates_lost": polled["updates_lost"],
                "updates_duplicated": polled["updates_duplicated"], "conflicts_409": polled["conflicts_409"],
                "poll_max_gap_s": polled["max_gap_s"]}
    finally:
        f.remove_app(name)
        f.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", default="1,2,3", help="numbers of app servers, e.g. 1,2,3")
    ap.add_argument("--rate", type=float, default=20.0, help="webhook requests per second")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batch", default="1", help="rollout_batch_size: servers per batch (1, 50%%, all)")
    args = ap.parse_args(argv)
    counts = sorted({int(n) for n in args.hosts.split(",")})
    why = testbed.problem()
    if why:
        print(f"cannot make the test bed: {why}", file=sys.stderr)
        return 2

    started = machine()
    per: dict[int, list[dict]] = {n: [] for n in counts}
    with fleet.fleet(apps=max(counts)) as f:
        names = list(f.apps)
        for r in range(args.rounds):
            for n in counts:
                with tempfile.TemporaryDirectory(prefix="fs-bench-rolling-") as work:
                    got = one_round(f, names[:n], args.rate, args.batch, work)
                per[n].append(got)
                print(f"round {r + 1}: {n} server(s): deploy {got['deploy_s']:6.2f} s, image step "
                      f"{got['image_step_s']} s, requests {got['requests_sent']} sent / "
                      f"{got['requests_failed']} failed, p99 {got['p99_ms']} ms, "
                      f"answered but not kept {got['answered_not_stored']}; polling updates "
                      f"{got['updates_sent']} sent / {got['updates_lost']} lost / "
                      f"{got['updates_duplicated']} repeated, 409s {got['conflicts_409']}, "
                      f"longest gap {got['poll_max_gap_s']} s")

    def med(n: int, key: str):
        values = [x[key] for x in per[n] if x[key] is not None]
        return round(statistics.median(values), 2) if values else None

    deploy = {str(n): med(n, "deploy_s") for n in counts}
    result = {
        "hosts": counts,
        "rounds": args.rounds,
        "rate_rps": args.rate,
        "batch_size": args.batch,
        "lb_drain_seconds": 2,
        "deploy_s": deploy,
        "first_deploy_s": {str(n): med(n, "first_s") for n in counts},
        "image_step_s": {str(n): med(n, "image_step_s") for n in counts},
        "requests_sent": sum(x["requests_sent"] for n in counts for x in per[n]),
        "requests_failed": sum(x["requests_failed"] for n in counts for x in per[n]),
        "answered_not_stored": sum(x["answered_not_stored"] for n in counts for x in per[n]),
        "p99_ms": {str(n): med(n, "p99_ms") for n in counts},
        "updates_sent": sum(x["updates_sent"] for n in counts for x in per[n]),
        "updates_lost": sum(x["updates_lost"] for n in counts for x in per[n]),
        "updates_duplicated": sum(x["updates_duplicated"] for n in counts for x in per[n]),
        "conflicts_409": sum(x["conflicts_409"] for n in counts for x in per[n]),
        "poll_max_gap_s": {str(n): med(n, "poll_max_gap_s") for n in counts},
        "runs": {str(n): per[n] for n in counts},
        "machine": started,
    }
    if 1 in counts:
        one = deploy["1"]
        result["extra_server_cost_pct"] = {
            str(n): round(100 * (deploy[str(n)] - one) / (n - 1) / one, 1) for n in counts if n > 1}
        result["goal_extra_server_le_25pct"] = all(v <= 25 for v in result["extra_server_cost_pct"].values())
    safe = "".join(c if c.isalnum() else "_" for c in args.batch)
    path = write_result("rolling" if args.batch == "1" else f"rolling_batch_{safe}", result)
    print()
    for n in counts:
        print(f"{n} server(s): deploy {deploy[str(n)]} s (first {result['first_deploy_s'][str(n)]} s), "
              f"image step {result['image_step_s'][str(n)]} s, p99 {result['p99_ms'][str(n)]} ms")
    if "extra_server_cost_pct" in result:
        print(f"each extra server: {result['extra_server_cost_pct']} % of the one-server deploy "
              f"(goal <= 25 %: {'met' if result['goal_extra_server_le_25pct'] else 'not met'})")
    print(f"requests: {result['requests_sent']} sent, {result['requests_failed']} failed, "
          f"{result['answered_not_stored']} answered but not kept")
    print(f"polling updates: {result['updates_sent']} sent, {result['updates_lost']} lost, "
          f"{result['updates_duplicated']} repeated, {result['conflicts_409']} 409s")
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
