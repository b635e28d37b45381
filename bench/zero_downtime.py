#!/usr/bin/env python3
"""Benchmark: webhook traffic through the proxy during a v1 -> v2 deploy.

    .venv/bin/python bench/zero_downtime.py [--rate 200] [--steady-seconds 30]

Deploys v1 of the sample app into an isolated app on this machine, measures
the steady latency of webhook updates sent through the proxy at ``--rate``
requests/s with no deploy (``p99_ms_steady``), then keeps the same load on
for the whole of a v1 -> v2 deploy driven by ``playbooks/deploy.yml`` (new
migration, new image, blue/green switch) and reports what the senders saw.
Goals: ``requests_failed`` = 0 and ``p99_ms`` <= 2 x ``p99_ms_steady``.
Writes ``bench/results/zero_downtime.json``. Removes the app afterwards.
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
    ap.add_argument("--rate", type=float, default=200.0, help="webhook requests per second")
    ap.add_argument("--steady-seconds", type=float, default=30.0, help="length of the run without a deploy")
    ap.add_argument("--margin-seconds", type=float, default=3.0, help="load before and after the deploy")
    ap.add_argument("--keep", action="store_true", help="keep the app (for a look afterwards)")
    ap.add_argument("--control-nice", type=int, default=0, metavar="N",
                    help="run ansible-playbook at nice N (the control node shares this machine's cores)")
    args = ap.parse_args(argv)

    d = new_deployment("fs_bzd", skip_tests=True)
    result: dict = {"rate_rps_target": args.rate, "control_nice": args.control_nice, "machine": machine()}
    try:
        source(d, 1)
        first = run_playbook(d, profile=False)
        if first["rc"]:
            print(first["tail"], file=sys.stderr)
            return 1
        warm = webhook_load(d, args.rate)
        warm.run_for(3)  # connections, caches and the database warmed up

        steady_load = webhook_load(d, args.rate, first_update_id=2_000_000)
        steady = webhook_outcome(d, steady_load.run_for(args.steady_seconds), first_id=2_000_000)
        print(f"steady, no deploy:  {steady}")

        source(d, 2)
        load = webhook_load(d, args.rate, first_update_id=3_000_000).start()
        time.sleep(args.margin_seconds)
        deploy = run_playbook(d, profile=False, nice=args.control_nice)
        time.sleep(args.margin_seconds)
        during = webhook_outcome(d, load.stop(), first_id=3_000_000)
        print(f"during the deploy:  {during}")
        if deploy["rc"]:
            print(deploy["tail"], file=sys.stderr)
        result.update({
            "requests_sent": during["requests_sent"],
            "requests_failed": during["requests_failed"],
            "failures_by_outcome": during["failures_by_outcome"],
            "answered_not_stored": during["answered_not_stored"],
            "rate_rps": during["rate_rps"],
            "p50_ms": during["p50_ms"],
            "p99_ms": during["p99_ms"],
            "max_ms": during["max_ms"],
            "p50_ms_steady": steady["p50_ms"],
            "p99_ms_steady": steady["p99_ms"],
            "max_ms_steady": steady["max_ms"],
            "requests_failed_steady": steady["requests_failed"],
            "deploy_s": deploy["seconds"],
            "deploy_rc": deploy["rc"],
        })
        result["goal_no_failed_request"] = result["requests_failed"] == 0 and deploy["rc"] == 0
        result["goal_p99_within_2x_steady"] = result["p99_ms"] <= 2 * result["p99_ms_steady"]
    finally:
        if not args.keep:
            d.destroy()
    path = write_result("zero_downtime", result)
    print(f"\nrequests_sent={result.get('requests_sent')} requests_failed={result.get('requests_failed')} "
          f"p50_ms={result.get('p50_ms')} p99_ms={result.get('p99_ms')} max_ms={result.get('max_ms')} "
          f"p99_ms_steady={result.get('p99_ms_steady')} deploy_s={result.get('deploy_s')}\nwritten: {path}")
    return 0 if result.get("deploy_rc") == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
