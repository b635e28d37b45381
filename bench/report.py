#!/usr/bin/env python3
"""Print the README's benchmark table from bench/results/*.json.

    .venv/bin/python bench/report.py

Each row: the figure, the goal, whether the last run met it, and the command
that produced it. Missing results are reported as such.
"""

from __future__ import annotations

import json
import os
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def load(name: str) -> dict | None:
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def yes(ok: bool) -> str:
    return "met" if ok else "**missed**"


def rows() -> list[tuple[str, str, str, str, str]]:
    out = []
    zd = load("zero_downtime")
    if zd:
        nice = f" --control-nice {zd['control_nice']}" if zd.get("control_nice") else ""
        cmd = f"`bench/zero_downtime.py --rate {zd['rate_rps_target']:g}{nice}`"
        out += [
            ("webhook load through the proxy during a v1 → v2 deploy",
             f"{zd['requests_sent']} requests at {zd['rate_rps']} req/s, {zd['requests_failed']} failed",
             "0 failed", yes(zd["goal_no_failed_request"]), cmd),
            ("latency during the deploy (p50 / p99 / max)",
             f"{zd['p50_ms']} / {zd['p99_ms']} / {zd['max_ms']} ms",
             f"p99 ≤ 2 × steady ({2 * zd['p99_ms_steady']:g} ms)",
             yes(zd["p99_ms"] <= 2 * zd["p99_ms_steady"]), cmd),
            ("latency without a deploy (p50 / p99 / max)",
             f"{zd['p50_ms_steady']} / {zd['p99_ms_steady']} / {zd['max_ms_steady']} ms", "—", "—", cmd),
            ("the deploy itself, under that load", f"{zd['deploy_s']} s", "—", "—", cmd),
        ]
    ph = load("polling_handoff")
    if ph:
        cmd = "`bench/polling_handoff.py`"
        out += [
            ("polling bot during a v1 → v2 deploy: updates sent / lost / duplicated / 409",
             f"{ph['updates_sent']} / {ph['updates_lost']} / {ph['updates_duplicated']} / "
             f"{ph['conflicts_409']}",
             "— / 0 / 0 / 0",
             yes(ph["updates_lost"] == ph["updates_duplicated"] == ph["conflicts_409"] == 0), cmd),
            ("longest pause between two processed updates", f"{ph['max_gap_s']} s", "< 1 s",
             yes(ph["max_gap_s"] is not None and ph["max_gap_s"] < 1), cmd),
        ]
    ba = load("bot_apps")
    if ba:
        cmd = "`bench/bot_apps.py`"
        for app, r in ba["apps"].items():
            t, gaps = r["totals"], ""
            if r.get("recreate_gap_s_median") is not None:
                gaps = f", recreate gap {r['recreate_gap_s_median']} s"
            out.append((
                f"{app} ({r['library']}) v1 → v2 at {ba['rate_rps']:g} req/s: updates sent / lost / "
                "duplicated / 409, webhooks failed / answered but not stored, longest pause",
                f"{t['updates_sent']} / {t['updates_lost']} / {t['updates_duplicated']} / "
                f"{t['conflicts_409']}, "
                f"{t['webhook_failed']} / {t['answered_not_stored']} of {t['webhook_requests']}, "
                f"{r['max_gap_s_median']} s{gaps}",
                "— / 0 / 0 / 0, 0 / 0", yes(bool(r["goal_met"])), cmd))
    dt = load("deploy_times")
    if dt:
        cmd = f"`bench/deploy_times.py --rounds {dt['rounds']}`"
        out += [
            ("first deploy (median)", f"{dt['first_s']} s", "—", "—", cmd),
            ("no-op deploy (median)", f"{dt['noop_s']} s", "≤ 15 s", yes(dt["noop_s"] <= 15), cmd),
            ("code-change deploy (median)", f"{dt['code_change_s']} s", "≤ 45 s",
             yes(dt["code_change_s"] <= 45), cmd),
        ]
    rb = load("rollback")
    if rb:
        nice = f" --control-nice {rb['control_nice']}" if rb.get("control_nice") else ""
        cmd = f"`bench/rollback.py --rate {rb['rate_rps_target']:g}{nice}`"
        out += [
            ("rollback.yml: the previous release serves again after (no database restore)",
             f"{rb.get('serving_s')} s", "≤ 15 s", yes(rb["goal_le_15s"] and rb["rollback_rc"] == 0), cmd),
            ("rollback.yml: whole command (then stops the new release, records, health check)",
             f"{rb['rollback_s']} s", "—", "—", cmd),
            ("webhook requests failed during the rollback",
             f"{rb['requests_failed']} of {rb['requests_sent']}", "0",
             yes(rb["goal_no_failed_request"]), cmd),
        ]
    mc = load("migration_checks")
    if mc:
        cmd = f"`bench/migration_checks.py --rounds {mc['rounds']}`"
        none_runs = mc["none_on_all_s"] + mc["none_off_all_s"]
        spread = max(none_runs) - min(none_runs)
        out += [
            ("migration safety checks (lint + the serving release on the new schema): "
             "added to a deploy with one pending migration",
             f"{mc['cost_pending_s']} s (serving release's run {mc['serving_check_s']} s)", "≤ 5 s",
             yes(mc["cost_pending_s"] <= 5), cmd),
            ("the same checks, deploy with no pending migration",
             f"{mc['cost_none_s']} s (its runs spread over {spread:.2f} s)", "0",
             yes(mc["cost_none_s"] <= spread), cmd),
        ]
    ops = load("operations")
    if ops:
        cmd = "`bench/operations.py`"
        tg, hook = ops["notify_ms"]["telegram"], ops["notify_ms"]["webhook"]
        out += [
            ("one notification delivered (stand-in Bot API / JSON webhook, this machine): p50 / p95",
             f"{tg['p50']} / {tg['p95']} ms, {hook['p50']} / {hook['p95']} ms", "—", "—", cmd),
            ("notify + audit tasks in a deploy of nothing new",
             f"{ops['notify_tasks_s']} s of {ops['noop_deploy_s']} s", "—", "—", cmd),
            (f"restore drill: newest daily, weekly, monthly backup loaded and compared with the live "
             f"database ({ops['drill_rows']} rows)",
             f"{ops['drill_s']} s (each verify {', '.join(f'{v} s' for v in ops['drill_each_s'].values())})",
             "—", "—", cmd),
        ]
    for result in ("rolling", "rolling_batch_all"):
        rl = load(result)
        if not rl:
            continue
        batch = str(rl.get("batch_size", 1))
        batches = "all servers at once" if batch == "all" else f"batches of {batch}"
        cmd = f"`bench/rolling.py --rate {rl['rate_rps']:g}" + ("`" if batch == "1" else f" --batch {batch}`")
        deploys = ", ".join(f"{n}: {s} s" for n, s in rl["deploy_s"].items())
        out.append((f"rolling deploy v1 → v2 over app servers of the test bed ({batches}, through "
                    "the load balancer): deploy time by number of servers", deploys, "—", "—", cmd))
        if "extra_server_cost_pct" in rl:
            out.append((f"each extra app server ({batches}), as a share of the one-server deploy",
                        ", ".join(f"{n} servers: {p} %" for n, p in rl["extra_server_cost_pct"].items()),
                        "≤ 25 %", yes(rl["goal_extra_server_le_25pct"]), cmd))
        out += [
            ("image step (built once on the control node, pushed, pulled by digest on every server)",
             ", ".join(f"{n}: {s} s" for n, s in rl["image_step_s"].items()), "—", "—", cmd),
            (f"webhook requests through the load balancer during the rollouts ({rl['rate_rps']:g} req/s): "
             "failed, answered but not kept; p99",
             f"{rl['requests_failed']} of {rl['requests_sent']}, {rl['answered_not_stored']}; "
             + ", ".join(f"{n}: {p} ms" for n, p in rl["p99_ms"].items()),
             "0, 0", yes(rl["requests_failed"] == 0 and rl["answered_not_stored"] == 0), cmd),
        ]
        if rl.get("updates_lost") is not None:
            out.append((
                "polling bot on every server, one poller in the fleet, during the rollouts: updates lost, "
                "repeated, 409 answers; longest pause between two processed updates",
                f"{rl['updates_lost']}, {rl['updates_duplicated']}, {rl['conflicts_409']} of "
                f"{rl['updates_sent']}; " + ", ".join(f"{n}: {g} s" for n, g in rl["poll_max_gap_s"].items()),
                "0, 0, 0", yes(rl["updates_lost"] == 0 and rl["updates_duplicated"] == 0
                               and rl["conflicts_409"] == 0), cmd))
    bk = load("backup")
    if bk:
        cmd = "`bench/backup.py`"
        out += [
            (f"backup of a {bk['db_mb'] / 1000:.2f} GB database: pg_dump > /dev/null (floor)",
             f"{bk['floor_s']} s", "—", "—", cmd),
            ("pg_dump | gzip -6 (what users write)",
             f"{bk['baseline_s']} s, {bk['baseline_bytes'] / 1e6:.1f} MB", "—", "—", cmd),
            (f"ours (default): pigz -{bk.get('ours_level', 6)} on {bk.get('threads', 1)} threads, niced"
             " + age + SHA-256 + fsync",
             f"{bk['ours_s']} s, {bk['ours_bytes'] / 1e6:.1f} MB",
             f"≤ 2 × floor ({2 * bk['floor_s']:.1f} s), ≤ 1.1 × baseline bytes",
             yes(bk["ours_s"] <= 2 * bk["floor_s"] and bk["ours_bytes"] <= 1.1 * bk["baseline_bytes"]), cmd),
        ]
        if bk.get("gzip_levels"):
            out.append((f"each gzip level ({bk.get('threads', 1)} threads): × floor time, × baseline bytes",
                        ", ".join(f"-{lv}: {m['x_floor']} / {m['x_baseline_bytes']}" for lv, m in
                                  sorted(bk["gzip_levels"].items(), key=lambda kv: int(kv[0]))),
                        "≤ 2 / ≤ 1.1", (f"met by -{bk['chosen_level']}" if bk.get("chosen_level")
                                        else "**missed** by every level"), cmd))
        if "ours_zstd3_s" in bk:
            out.append(("ours with `backup_compress: zstd`, `backup_level: 3` (+ age + SHA-256 + fsync)",
                        f"{bk['ours_zstd3_s']} s, {bk['ours_zstd3_bytes'] / 1e6:.1f} MB",
                        f"≤ 2 × floor ({2 * bk['floor_s']:.1f} s), ≤ 1.1 × baseline bytes",
                        yes(bk["ours_zstd3_s"] <= 2 * bk["floor_s"]
                            and bk["ours_zstd3_bytes"] <= 1.1 * bk["baseline_bytes"]), cmd))
        out += [
            ("restore: psql < plain.sql (floor) / ours (checksum, age, gunzip, psql, swap)",
             f"{bk['restore_floor_s']} s / {bk['restore_s']} s", "ours ≤ 1.1 × floor",
             yes(bk["restore_s"] <= 1.1 * bk["restore_floor_s"]), cmd),
            ("peak RSS of the backup program at 0.1 GB / full size",
             f"{bk['peak_rss_mb_small']} / {bk['peak_rss_mb']} MB", "flat, < 64 MB",
             yes(bk["peak_rss_mb"] < 64 and bk["peak_rss_mb"] <= 1.25 * bk["peak_rss_mb_small"]), cmd),
        ]
    return out


def main() -> int:
    table = rows()
    if not table:
        print("no results in bench/results/", file=sys.stderr)
        return 1
    print("| measure | result | goal | | command |")
    print("|---|---|---|---|---|")
    for row in table:
        # a pipe inside a cell (pg_dump | gzip) would end the cell
        print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
