"""Health check logic from hand-built inspect dicts, log text and psql output (no Docker)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.fieldservice.deploy.plugins.module_utils import health as h
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import (
    DockerAPIError,
    DockerUnavailable,
)

STARTED = "2025-10-10T15:30:00.500000000Z"
SERVICES = [
    {"name": "master_bot", "container": "fs_master_bot_r2", "release": "r2", "heartbeat": "required"},
    {"name": "worker", "container": "fs_worker_r2", "release": "r2", "heartbeat": "required"},
]
DB_OK = {"reachable": True, "error": None}


def inspect(cid="c1", running=True, restarting=False, restarts=0, status=None, exit_code=0,
            started=STARTED, tty=False, finished="0001-01-01T00:00:00Z"):
    return {
        "Id": cid,
        "RestartCount": restarts,
        "State": {
            "Status": status or ("restarting" if restarting else "running" if running else "exited"),
            "Running": running, "Restarting": restarting, "ExitCode": exit_code, "StartedAt": started,
            "FinishedAt": finished,
        },
        "Config": {"Tty": tty},
    }


def fresh_beats(release="r2", age=1.5):
    return {s["name"]: {"release": release, "age": age} for s in SERVICES}


def healthy_inputs():
    return {
        "inspects": {s["name"]: inspect(cid=s["container"]) for s in SERVICES},
        "critical": {},
        "database": dict(DB_OK),
        "heartbeats": fresh_beats(),
    }


def run_eval(**over):
    data = healthy_inputs()
    baselines = over.pop("baselines", None)
    errors = over.pop("errors", None)
    max_age = over.pop("heartbeat_max_age", 30.0)
    data.update(over)
    return h.evaluate(SERVICES, data["inspects"], data["critical"], data["database"], data["heartbeats"],
                      heartbeat_max_age=max_age, baselines=baselines, errors=errors)


# -- evaluate -----------------------------------------------------------------


def test_healthy_report_shape():
    r = run_eval()
    assert r["status"] == h.PASSED
    assert r["failures"] == []
    assert r["reason"] == "all checks passed"
    assert r["database"] == {"reachable": True, "error": None}
    assert r["permanent"] is False
    svc = r["services"]["master_bot"]
    for key in ("container", "running", "restarting", "restart_count", "started_at", "critical_lines",
                "heartbeat_age", "heartbeat_release", "ok"):
        assert key in svc
    assert svc == {
        "container": "fs_master_bot_r2", "exists": True, "status": "running", "running": True,
        "restarting": False, "paused": False, "restart_count": 0, "started_at": STARTED, "critical_lines": [],
        "heartbeat_age": 1.5, "heartbeat_release": "r2", "heartbeat": "checked", "ok": True,
    }


def test_missing_container():
    data = healthy_inputs()
    data["inspects"]["worker"] = None
    r = run_eval(inspects=data["inspects"])
    assert r["status"] == h.FAILED
    assert r["reason"] == "worker: container fs_worker_r2 not found"
    assert r["services"]["worker"]["exists"] is False
    assert r["services"]["worker"]["ok"] is False
    assert r["services"]["master_bot"]["ok"] is True


def test_stopped_container():
    data = healthy_inputs()
    data["inspects"]["master_bot"] = inspect(running=False, exit_code=137)
    r = run_eval(inspects=data["inspects"])
    assert r["reason"] == "master_bot: container fs_master_bot_r2 is not running (exited, exit code 137)"
    assert r["permanent"] is False


def test_a_paused_container_passes_only_in_maintenance_mode():
    data = healthy_inputs()
    data["inspects"]["master_bot"] = inspect()
    data["inspects"]["master_bot"]["State"]["Paused"] = True
    # its HEALTHCHECK cannot run, so Docker calls it unhealthy; it beats no more
    data["inspects"]["master_bot"]["State"]["Health"] = {"Status": "unhealthy"}
    data["heartbeats"]["master_bot"] = {"release": "r2", "age": 600.0}
    r = run_eval(inspects=data["inspects"], heartbeats=data["heartbeats"])
    assert r["status"] == h.FAILED
    assert r["reason"] == ("master_bot: container fs_master_bot_r2 is paused and maintenance mode is off "
                           "(playbooks/maintenance.yml -e state=off resumes it)")
    services = [dict(s, maintenance=True) for s in SERVICES]
    r = h.evaluate(services, data["inspects"], {}, dict(DB_OK), data["heartbeats"])
    assert r["status"] == h.PASSED, r["reason"]
    assert r["services"]["master_bot"]["paused"] is True
    assert r["services"]["master_bot"]["heartbeat"] == "paused for maintenance"
    # maintenance mode does not excuse a stale heartbeat of a service that runs
    data["heartbeats"]["worker"] = {"release": "r2", "age": 600.0}
    r = h.evaluate(services, data["inspects"], {}, dict(DB_OK), data["heartbeats"])
    assert r["reason"].startswith("worker: heartbeat stale"), r["reason"]


def test_restarting_container():
    data = healthy_inputs()
    data["inspects"]["worker"] = inspect(running=True, restarting=True, restarts=4)
    r = run_eval(inspects=data["inspects"])
    assert r["status"] == h.FAILED
    assert r["reason"] == "worker: container fs_worker_r2 is restarting"
    assert r["services"]["worker"]["restarting"] is True
    assert r["services"]["worker"]["restart_count"] == 4


def test_crash_loop_is_a_rising_restart_count_and_permanent():
    data = healthy_inputs()
    data["inspects"]["worker"] = inspect(cid="w", restarts=3)
    # Same count as at the first attempt: a restart before the check is not a crash loop.
    r = run_eval(inspects=data["inspects"], baselines={"worker": {"id": "w", "restart_count": 3}})
    assert r["status"] == h.PASSED
    r = run_eval(inspects=data["inspects"], baselines={"worker": {"id": "w", "restart_count": 1}})
    assert r["status"] == h.FAILED
    assert r["reason"].startswith("worker: crash loop (container fs_worker_r2 restarted 2 time(s)")
    assert r["permanent"] is True
    # A replaced container (other id) is not compared with the old one's count.
    r = run_eval(inspects=data["inspects"], baselines={"worker": {"id": "old", "restart_count": 0}})
    assert r["status"] == h.PASSED


def test_started_again_during_the_check_is_a_crash_loop():
    # First seen restarting (count already raised), later running again: same count, new StartedAt.
    data = healthy_inputs()
    data["inspects"]["worker"] = inspect(cid="w", restarts=1, started="2025-10-10T15:31:00Z")
    base = {"worker": {"id": "w", "restart_count": 1, "started_at": "2025-10-10T15:30:00Z"}}
    r = run_eval(inspects=data["inspects"], baselines=base)
    assert r["reason"] == ("worker: crash loop (container fs_worker_r2 was started again during the check,"
                           " restart count 1)")
    assert r["permanent"] is True
    base["worker"]["started_at"] = "2025-10-10T15:31:00Z"
    assert run_eval(inspects=data["inspects"], baselines=base)["status"] == h.PASSED


def test_critical_lines_fail_permanently_and_come_first():
    data = healthy_inputs()
    data["inspects"]["worker"] = None
    r = run_eval(inspects=data["inspects"],
                 critical={"master_bot": ["CRITICAL token rejected", "FATAL bye"]},
                 heartbeats={})
    assert r["status"] == h.FAILED
    assert r["permanent"] is True
    assert r["reason"] == "master_bot: critical log line in fs_master_bot_r2: CRITICAL token rejected"
    assert r["services"]["master_bot"]["critical_lines"] == ["CRITICAL token rejected", "FATAL bye"]
    # All reasons, most serious first: critical, container, heartbeats.
    assert r["failures"] == [
        "master_bot: critical log line in fs_master_bot_r2: CRITICAL token rejected",
        "worker: container fs_worker_r2 not found",
        "master_bot: heartbeat missing",
        "worker: heartbeat missing",
    ]


def test_stale_heartbeat():
    beats = fresh_beats()
    beats["master_bot"]["age"] = 45.21
    r = run_eval(heartbeats=beats)
    assert r["status"] == h.FAILED
    assert r["reason"] == "master_bot: heartbeat stale (45.2s > 30s)"
    assert r["services"]["master_bot"]["heartbeat_age"] == 45.21
    assert r["permanent"] is False


def test_heartbeat_limit_is_inclusive():
    beats = fresh_beats(age=30.0)
    assert run_eval(heartbeats=beats)["status"] == h.PASSED
    beats = fresh_beats(age=30.001)
    assert run_eval(heartbeats=beats)["status"] == h.FAILED
    r = run_eval(heartbeats=fresh_beats(age=12.0), heartbeat_max_age=7.5)
    assert r["reason"] == "master_bot: heartbeat stale (12.0s > 7.5s)"


def test_missing_heartbeat():
    beats = fresh_beats()
    del beats["worker"]
    r = run_eval(heartbeats=beats)
    assert r["failures"] == ["worker: heartbeat missing"]
    assert r["services"]["worker"]["heartbeat_age"] is None
    assert r["services"]["worker"]["heartbeat_release"] is None


def test_heartbeat_of_the_old_release_does_not_count():
    beats = fresh_beats()
    beats["worker"]["release"] = "r1"
    r = run_eval(heartbeats=beats)
    assert r["status"] == h.FAILED
    assert r["reason"] == "worker: heartbeat from release r1 (expected r2)"
    assert r["services"]["worker"]["heartbeat_release"] == "r1"


def test_on_a_fleet_each_server_reads_its_own_row_and_the_poller_may_be_on_a_release_still_served():
    # app1 switched to r2; app2 still serves r1 and holds the fleet's one poller
    services = [{"name": "admin_bot", "container": "a", "release": "r2", "heartbeat_key": "admin_bot@app1"},
                {"name": "master_bot", "container": "m", "release": "r2", "releases": ["r2", "r1"]}]
    inspects = {"admin_bot": inspect(), "master_bot": inspect()}
    beats = {"admin_bot": {"release": "r2", "age": 1}, "admin_bot@app1": {"release": "r2", "age": 1},
             "admin_bot@app2": {"release": "r1", "age": 1}, "master_bot": {"release": "r1", "age": 2}}
    assert h.evaluate(services, inspects, {}, DB_OK, beats)["status"] == h.PASSED
    # the other server's row never stands in for this one's
    del beats["admin_bot@app1"]
    r = h.evaluate(services, inspects, {}, DB_OK, beats)
    assert r["reason"].startswith("admin_bot: heartbeat missing (row admin_bot@app1: on several app servers")
    # the stale row of this server fails, naming the row
    beats["admin_bot@app1"] = {"release": "r2", "age": 99.0}
    r = h.evaluate(services, inspects, {}, DB_OK, beats)
    assert r["reason"] == "admin_bot: heartbeat stale (99.0s > 30s) (row admin_bot@app1)"
    # once no server serves r1, a poller of r1 no longer counts
    beats["admin_bot@app1"]["age"] = 1
    services[1]["releases"] = ["r2"]
    r = h.evaluate(services, inspects, {}, DB_OK, beats)
    assert r["reason"] == "master_bot: heartbeat from release r1 (expected r2)"
    services[1]["releases"] = ["r2", "r0"]
    r = h.evaluate(services, inspects, {}, DB_OK, beats)
    assert r["reason"] == "master_bot: heartbeat from release r1 (expected r2 or r0)"


def test_the_fleet_keys_are_checked_and_kept_by_normalize():
    p = h.normalize_params({"db_container": "db", "services": [
        {"name": "a", "container": "c", "release": "r2", "releases": ["r2", "r1"], "heartbeat_key": "a@app1"},
        {"name": "b", "container": "d"}]})
    assert p["services"][0]["releases"] == ["r2", "r1"] and p["services"][0]["heartbeat_key"] == "a@app1"
    assert p["services"][1]["releases"] == [] and p["services"][1]["heartbeat_key"] == "b"
    with pytest.raises(ValueError, match="releases must be a list"):
        h.normalize_params({"db_container": "db", "services": [
            {"name": "a", "container": "c", "releases": "r1"}]})


def test_no_release_given_accepts_any_release():
    services = [{"name": "worker", "container": "w", "release": None}]
    r = h.evaluate(services, {"worker": inspect()}, {}, DB_OK, {"worker": {"release": "r0", "age": 1}})
    assert r["status"] == h.PASSED


def test_database_unreachable():
    r = run_eval(database={"reachable": False, "error": "container fs_db: is not running (HTTP 409)"},
                 heartbeats=None)
    assert r["status"] == h.FAILED
    assert r["reason"] == "database: unreachable (container fs_db: is not running (HTTP 409))"
    assert r["database"] == {"reachable": False, "error": "container fs_db: is not running (HTTP 409)"}
    assert "master_bot: heartbeat not checked (database not readable)" in r["failures"]
    assert r["services"]["master_bot"]["ok"] is False


def test_heartbeat_query_error_is_reported_with_reachable_database():
    r = run_eval(database={"reachable": True, "error": "heartbeat query failed: no such table"},
                 heartbeats=None)
    assert r["reason"] == "database: heartbeat query failed: no such table"
    assert r["database"]["reachable"] is True


def test_unknown_container_is_not_reported_missing():
    data = healthy_inputs()
    del data["inspects"]["worker"]
    err = h.fetch_failure("worker", "container", "cannot inspect container fs_worker_r2: boom")
    r = run_eval(inspects=data["inspects"], errors=[err])
    assert r["failures"] == ["worker: cannot inspect container fs_worker_r2: boom"]
    assert r["services"]["worker"]["status"] == "unknown"
    assert r["services"]["worker"]["ok"] is False


# -- logs ---------------------------------------------------------------------


def test_critical_lines_only_after_started_at():
    logs = (
        "2025-10-10T15:29:59.000000000Z Traceback (most recent call last):\n"
        "2025-10-10T15:30:00.499999999Z CRITICAL old run\n"
        "2025-10-10T15:30:00.500000000Z INFO starting\n"
        "2025-10-10T15:30:01.000000000Z CRITICAL new run\n"
        "2025-10-10T15:30:02.000000000Z a FATAL error\n"
    )
    assert h.critical_lines(logs, h.DEFAULT_CRITICAL_PATTERNS, since=STARTED) == [
        "CRITICAL new run", "a FATAL error",
    ]
    # Without a start time everything counts.
    assert len(h.critical_lines(logs, h.DEFAULT_CRITICAL_PATTERNS)) == 4


def test_default_patterns_are_word_bounded():
    logs = ("NONCRITICAL stuff\nlevel=critical lower case\nFATALITY\nCRITICAL: yes\n"
            "Traceback (most recent call last):\n")
    assert h.critical_lines(logs, h.DEFAULT_CRITICAL_PATTERNS) == [
        "CRITICAL: yes", "Traceback (most recent call last):",
    ]


def test_critical_lines_limited_and_truncated():
    logs = "".join(f"CRITICAL {i} " + "x" * 500 + "\n" for i in range(20))
    found = h.critical_lines(logs, ["CRITICAL"], limit=3, max_len=50)
    assert len(found) == 3
    assert all(len(line) == 53 and line.endswith("...") for line in found)
    assert found[0].startswith("CRITICAL 0 ")


def test_lines_without_timestamp_always_count():
    found = h.critical_lines("CRITICAL boom\r\n", h.DEFAULT_CRITICAL_PATTERNS, since=STARTED)
    assert found == ["CRITICAL boom"]


def test_lines_split_on_newlines_only():
    # str.splitlines() would cut this old line at \x1e and count its untimed tail.
    logs = "2025-10-10T15:29:00Z old\x1eCRITICAL before start\n2025-10-10T15:31:00Z ok\n"
    assert h.critical_lines(logs, h.DEFAULT_CRITICAL_PATTERNS, since=STARTED) == []


def test_last_log_timestamp():
    logs = "2025-10-10T15:30:01.000000001Z a\nno stamp\n2025-10-10T15:30:00Z b\n"
    assert h.last_log_timestamp(logs) == h.parse_docker_time("2025-10-10T15:30:01.000000001Z")
    assert h.last_log_timestamp("") is None


def test_invalid_pattern():
    with pytest.raises(ValueError, match="not a valid regular expression"):
        h.compile_patterns(["(unclosed"])


SAMPLE_LINES = ["INFO ok", "CRITICAL x", "debug", "FATAL y", "Traceback (most recent call last):"]


@given(st.lists(st.sampled_from(SAMPLE_LINES), max_size=30))
def test_critical_lines_match_a_reference(lines):
    text = "\n".join(lines)
    expected = [ln for ln in lines if any(re.search(p, ln) for p in h.DEFAULT_CRITICAL_PATTERNS)][:5]
    assert h.critical_lines(text, h.DEFAULT_CRITICAL_PATTERNS) == expected


# -- times --------------------------------------------------------------------


def test_parse_docker_time():
    assert h.parse_docker_time("1970-01-01T00:00:01Z") == 1_000_000_000
    assert h.parse_docker_time("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert h.parse_docker_time("1970-01-01T00:00:01.123456789Z") == 1_123_456_789
    assert h.parse_docker_time("1970-01-01T01:00:00+01:00") == 0
    assert h.parse_docker_time("0001-01-01T00:00:00Z") < 0
    assert h.parse_docker_time("garbage") is None
    assert h.parse_docker_time("") is None


@given(st.integers(min_value=0, max_value=4_102_444_800 * 10**9))
def test_ns_round_trip(ns):
    seconds, nanos = divmod(ns, 10**9)
    import datetime

    stamp = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert h.parse_docker_time(f"{stamp}.{nanos:09d}Z") == ns
    assert h.ns_to_since(ns) == f"{seconds}.{nanos:09d}"


# -- database -----------------------------------------------------------------


def test_db_probe_result():
    assert h.db_probe_result(0, "1\n", "") == {"reachable": True, "error": None}
    r = h.db_probe_result(2, "", "psql: error: connection to server on socket failed\nmore\n")
    assert r == {"reachable": False,
                 "error": "psql exit code 2: psql: error: connection to server on socket failed"}
    assert h.db_probe_result(None, error="container db: not running")["reachable"] is False


def test_parse_heartbeat_rows():
    text = "master_bot|r2|3.25\nworker|r1|120.000001\n\nodd line\nnoage|r3|\n"
    assert h.parse_heartbeat_rows(text) == {
        "master_bot": {"release": "r2", "age": 3.25},
        "worker": {"release": "r1", "age": 120.000001},
        "noage": {"release": "r3", "age": None},
    }


@given(st.dictionaries(
    st.text(alphabet=st.characters(blacklist_characters="|\n\r", blacklist_categories=("Cs",)), min_size=1)
    .filter(lambda s: s.strip() == s and s),
    st.tuples(st.text(alphabet="abcdef0123456789-.", min_size=1, max_size=12),
              st.floats(min_value=0, max_value=1e6, allow_nan=False)),
    max_size=8,
))
def test_parse_heartbeat_rows_round_trip(rows):
    text = "".join(f"{s}|{rel}|{age!r}\n" for s, (rel, age) in rows.items())
    parsed = h.parse_heartbeat_rows(text)
    assert parsed == {s: {"release": rel, "age": age} for s, (rel, age) in rows.items()}


def test_heartbeat_query_and_table_validation():
    assert h.heartbeat_query() == (
        "SELECT service, release, EXTRACT(EPOCH FROM (now() - beat_at)) FROM heartbeats"
    )
    assert h.heartbeat_query("app.beats").endswith("FROM app.beats")
    for bad in ("", "heart beats", "x; DROP TABLE y", "a.b.c", "1abc", 'he"art', "a" * 64):
        with pytest.raises(ValueError, match="heartbeat_table"):
            h.heartbeat_query(bad)


def test_psql_command():
    assert h.psql_command("app", "fs", "SELECT 1") == [
        "psql", "-X", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1", "-U", "app", "-d", "fs", "-c", "SELECT 1",
    ]


def test_normalize_params():
    p = h.normalize_params({"services": [{"name": "a", "container": "c"}], "db_container": "db"})
    assert p["heartbeat_max_age"] == 30.0 and p["timeout"] == 60.0 and p["interval"] == 2.0
    assert p["services"] == [{"name": "a", "container": "c", "release": None, "releases": [],
                              "heartbeat_key": "a", "heartbeat": "auto", "maintenance": False}]
    with pytest.raises(ValueError, match="twice"):
        h.normalize_params({"services": [{"name": "a", "container": "c"}] * 2, "db_container": "db"})
    with pytest.raises(ValueError, match="services"):
        h.normalize_params({"services": [], "db_container": "db"})
    with pytest.raises(ValueError, match="interval"):
        h.normalize_params({"services": [{"name": "a", "container": "c"}], "db_container": "db",
                            "interval": 0})


# -- the polling loop, with a scripted engine and a fake clock ---------------


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedEngine:
    """Answers like DockerClient from per-attempt scripts (attempt n uses entry min(n, last))."""

    def __init__(self, clock, inspects, logs=None, beats=None, ping=None, table=True):
        self.clock = clock
        self.table = table              # whether the heartbeat table exists
        self.inspects = inspects        # container -> list of inspect dicts (or None / exception)
        self.logs = logs or {}          # container -> list of log texts
        self.beats = beats or ["master_bot|r2|1.0\nworker|r2|2.0\n"]
        self.ping = ping or [(0, "1\n", "")]
        self.calls = {"inspect": 0, "logs": [], "exec": []}
        self.attempt = 0

    @staticmethod
    def _pick(seq, n):
        return seq[min(n, len(seq) - 1)]

    def inspect_container(self, name):
        if name == SERVICES[0]["container"]:
            self.attempt = self.calls["inspect"] // len(SERVICES)
        self.calls["inspect"] += 1
        value = self._pick(self.inspects[name], self.attempt)
        if isinstance(value, Exception):
            raise value
        return value

    def container_logs(self, name, since=None, timestamps=False, tty=None, tail=None):
        self.calls["logs"].append((name, since))
        return self._pick(self.logs.get(name, [""]), self.attempt)

    def exec_run(self, container, cmd, user=None, env=None, timeout=60):
        self.calls["exec"].append(cmd[-1])
        if cmd[-1].startswith("SELECT to_regclass"):
            return 0, "t\n" if self.table else "f\n", ""
        value = self._pick(self.ping, self.attempt) if cmd[-1] == "SELECT 1" else (
            0, self._pick(self.beats, self.attempt), "")
        if isinstance(value, Exception):
            raise value
        return value


PARAMS = {"services": SERVICES, "db_container": "fs_db", "timeout": 10, "interval": 2}


def healthy_inspects():
    return {s["container"]: [inspect(cid=s["container"])] for s in SERVICES}


def test_retry_then_pass_with_fake_clock():
    clock = FakeClock()
    engine = ScriptedEngine(
        clock, healthy_inspects(),
        beats=["master_bot|r1|1.0\n", "master_bot|r2|40\nworker|r2|1\n", "master_bot|r2|0.5\nworker|r2|1\n"],
    )
    r = h.run_health_check(engine, PARAMS, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.PASSED
    assert r["attempts"] == 3
    assert clock.sleeps == [2, 2]
    assert r["elapsed"] == 4.0
    assert r["services"]["master_bot"]["heartbeat_age"] == 0.5
    assert engine.calls["exec"][:3] == ["SELECT 1", h.table_query(), h.heartbeat_query()]


def test_timeout_reports_last_failure():
    clock = FakeClock()
    engine = ScriptedEngine(clock, healthy_inspects(), beats=["master_bot|r2|45.2\nworker|r2|1\n"])
    r = h.run_health_check(engine, PARAMS, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED
    assert r["reason"] == "master_bot: heartbeat stale (45.2s > 30s)"
    assert r["attempts"] == 6  # t = 0, 2, 4, 6, 8, 10
    assert r["elapsed"] == 10.0
    assert set(r) == {"status", "reason", "failures", "services", "database", "webhooks", "attempts",
                      "elapsed"}


def test_last_sleep_is_cut_to_the_timeout():
    clock = FakeClock()
    engine = ScriptedEngine(clock, healthy_inspects(), beats=[""])
    r = h.run_health_check(engine, dict(PARAMS, timeout=5, interval=2), clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [2, 2, 1]
    assert r["attempts"] == 4 and r["elapsed"] == 5.0


def test_critical_line_fails_fast():
    clock = FakeClock()
    logs = {SERVICES[1]["container"]: [
        "2025-10-10T15:30:01Z INFO up\n2025-10-10T15:30:02Z Traceback (most recent call last):\n"]}
    engine = ScriptedEngine(clock, healthy_inspects(), logs=logs)
    r = h.run_health_check(engine, PARAMS, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED
    assert r["attempts"] == 1 and clock.sleeps == []
    assert r["reason"] == "worker: critical log line in fs_worker_r2: Traceback (most recent call last):"


def test_logs_read_from_the_start_of_the_run_then_incrementally():
    clock = FakeClock()
    c = SERVICES[0]["container"]
    logs = {c: ["2025-10-10T15:30:01.000000000Z INFO a\n", "2025-10-10T15:30:03.000000000Z CRITICAL b\n"]}
    beats = ["", "master_bot|r2|1\nworker|r2|1\n"]
    engine = ScriptedEngine(clock, healthy_inspects(), logs=logs, beats=beats)
    r = h.run_health_check(engine, PARAMS, clock=clock, sleep=clock.sleep)
    calls = [since for name, since in engine.calls["logs"] if name == c]
    assert calls[0] is None  # its first run: the whole log is this run's
    assert calls[1] == h.ns_to_since(h.parse_docker_time("2025-10-10T15:30:01Z") + 1)
    assert r["status"] == h.FAILED and r["attempts"] == 2
    assert r["services"]["master_bot"]["critical_lines"] == ["CRITICAL b"]


def test_run_cutoff_is_the_end_of_the_previous_run():
    first = h.container_state(inspect())
    assert h.run_cutoff_ns(first) is None  # never stopped: every line is this run's
    restarted = h.container_state(inspect(finished="2025-10-10T15:29:59.5Z"))
    assert h.run_cutoff_ns(restarted) == h.parse_docker_time("2025-10-10T15:29:59.5Z") + 1
    stopped = h.container_state(inspect(running=False, finished="2025-10-10T15:31:00Z"))
    assert h.run_cutoff_ns(stopped) == h.parse_docker_time(STARTED)
    assert h.run_cutoff_ns(h.container_state(inspect(started="0001-01-01T00:00:00Z"))) is None


def test_a_critical_line_stamped_just_before_started_at_counts():
    # The engine stamps a line when it reads it and records StartedAt after
    # the process runs: a line printed at once can carry an earlier time.
    clock = FakeClock()
    c = SERVICES[0]["container"]
    inspects = healthy_inspects()
    inspects[c] = [inspect(cid=c, finished="2025-10-10T15:29:50Z")]
    logs = {c: ["2025-10-10T15:29:49.000000000Z CRITICAL previous run\n"
                "2025-10-10T15:29:59.999000000Z CRITICAL at start\n"]}
    engine = ScriptedEngine(clock, inspects, logs=logs)
    r = h.run_health_check(engine, PARAMS, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED
    assert r["services"]["master_bot"]["critical_lines"] == ["CRITICAL at start"]
    calls = [since for name, since in engine.calls["logs"] if name == c]
    assert calls[0] == h.ns_to_since(h.parse_docker_time("2025-10-10T15:29:50Z") + 1)


def test_crash_loop_detected_during_the_check():
    clock = FakeClock()
    inspects = healthy_inspects()
    inspects["fs_worker_r2"] = [inspect(cid="w", restarts=2), inspect(cid="w", restarts=2),
                                inspect(cid="w", restarts=3)]
    engine = ScriptedEngine(clock, inspects, beats=[""])
    r = h.run_health_check(engine, PARAMS, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED
    assert r["attempts"] == 3
    assert r["reason"].startswith("worker: crash loop")


def test_restarting_then_running_is_a_crash_loop():
    clock = FakeClock()
    inspects = healthy_inspects()
    inspects["fs_worker_r2"] = [
        inspect(cid="w", running=True, restarting=True, restarts=1, started="2025-10-10T15:30:00Z"),
        inspect(cid="w", restarts=1, started="2025-10-10T15:30:02Z"),
    ]
    r = h.run_health_check(ScriptedEngine(clock, inspects), PARAMS, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED and r["attempts"] == 2
    assert r["reason"].startswith("worker: crash loop (container fs_worker_r2 was started again")


def test_replaced_container_gets_a_new_baseline():
    clock = FakeClock()
    inspects = healthy_inspects()
    inspects["fs_worker_r2"] = [inspect(cid="old", running=False), inspect(cid="new", restarts=0)]
    r = h.run_health_check(ScriptedEngine(clock, inspects), PARAMS, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.PASSED and r["attempts"] == 2


def test_database_unreachable_then_reachable():
    clock = FakeClock()
    engine = ScriptedEngine(
        clock, healthy_inspects(),
        ping=[DockerAPIError(409, "Container fs_db is not running"), (2, "", "psql: error: starting up"),
              (0, "1\n", "")],
    )
    r = h.run_health_check(engine, dict(PARAMS, timeout=0.5, interval=0.5), clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED and r["attempts"] == 2
    assert r["reason"] == "database: unreachable (psql exit code 2: psql: error: starting up)"
    r = h.run_health_check(
        ScriptedEngine(clock, healthy_inspects(), ping=engine.ping), PARAMS, clock=clock, sleep=clock.sleep
    )
    assert r["status"] == h.PASSED and r["attempts"] == 3


def test_db_container_missing_reason_names_it():
    clock = FakeClock()
    engine = ScriptedEngine(clock, healthy_inspects(), ping=[DockerAPIError(404, "No such container: fs_db")])
    r = h.run_health_check(engine, dict(PARAMS, timeout=0), clock=clock, sleep=clock.sleep)
    assert r["attempts"] == 1
    assert r["reason"] == "database: unreachable (container fs_db: No such container: fs_db (HTTP 404))"


def test_engine_unavailable():
    clock = FakeClock()
    down = DockerUnavailable("cannot connect to the Docker engine at unix:///nope: No such file")
    engine = ScriptedEngine(clock, {s["container"]: [down] for s in SERVICES}, ping=[down])
    r = h.run_health_check(engine, dict(PARAMS, timeout=0), clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED
    assert r["reason"].startswith("master_bot: cannot inspect container fs_master_bot_r2: cannot connect")
    assert r["services"]["master_bot"]["status"] == "unknown"


def test_invalid_params_raise():
    with pytest.raises(ValueError, match="heartbeat_table"):
        h.run_health_check(None, dict(PARAMS, heartbeat_table="x;y"))


def test_unhealthy_docker_healthcheck_is_a_failure():
    from ansible_collections.fieldservice.deploy.plugins.module_utils import health

    doc = {"Id": "x", "RestartCount": 0,
           "State": {"Running": True, "Status": "running", "StartedAt": "2025-10-10T15:30:00Z",
                     "Health": {"Status": "unhealthy"}}}
    state = health.container_state(doc)
    failures = health.container_failures("admin_bot", "c1", state)
    assert [f["check"] for f in failures] == ["container"]
    assert "unhealthy" in failures[0]["reason"]
    doc["State"]["Health"]["Status"] = "healthy"
    assert health.container_failures("admin_bot", "c1", health.container_state(doc)) == []


# -- heartbeat modes: required, off, auto ---------------------------------------


def _svc(mode, name="bot"):
    return [{"name": name, "container": f"c_{name}", "release": "r2", "heartbeat": mode}]


def _inspects(name="bot"):
    return {name: inspect(cid=f"c_{name}")}


def test_heartbeat_off_is_not_asked_of_the_service():
    r = h.evaluate(_svc("off"), _inspects(), {}, DB_OK, {})
    assert r["status"] == h.PASSED, r["failures"]
    assert r["services"]["bot"]["heartbeat"] == "off"


def test_heartbeat_auto_without_a_row_is_not_used_and_says_so():
    r = h.evaluate(_svc("auto"), _inspects(), {}, DB_OK, {})
    assert r["status"] == h.PASSED
    assert r["services"]["bot"]["heartbeat"] == "not used (the service has written none)"
    r = h.evaluate(_svc("auto"), _inspects(), {}, DB_OK, {}, table="heartbeats")
    assert r["services"]["bot"]["heartbeat"] == "not used (no table heartbeats)"


def test_heartbeat_auto_with_a_row_is_checked_like_required():
    stale = {"bot": {"release": "r2", "age": 99.0}}
    old = {"bot": {"release": "r1", "age": 1.0}}
    for mode in ("auto", "required"):
        r = h.evaluate(_svc(mode), _inspects(), {}, DB_OK, stale)
        assert r["failures"] == ["bot: heartbeat stale (99.0s > 30s)"]
        r = h.evaluate(_svc(mode), _inspects(), {}, DB_OK, old)
        assert r["failures"] == ["bot: heartbeat from release r1 (expected r2)"]
        assert r["services"]["bot"]["heartbeat"] == "checked"


def test_a_required_heartbeat_without_a_table_names_the_setting():
    r = h.evaluate(_svc("required"), _inspects(), {}, DB_OK, {}, table="heartbeats")
    assert r["status"] == h.FAILED
    assert r["reason"].startswith("bot: heartbeat missing (no table heartbeats")
    assert "heartbeat: false" in r["reason"]


def test_without_heartbeat_a_crash_or_a_critical_line_still_fails():
    r = h.evaluate(_svc("off"), {"bot": inspect(cid="c_bot", running=False, status="exited")}, {}, DB_OK, {})
    assert r["status"] == h.FAILED and "is not running" in r["reason"]
    r = h.evaluate(_svc("off"), _inspects(), {"bot": ["CRITICAL boom"]}, DB_OK, {})
    assert r["status"] == h.FAILED and "critical log line" in r["reason"]
    r = h.evaluate(_svc("off"), _inspects(), {}, {"reachable": False, "error": "refused"}, None)
    assert r["failures"] == ["database: unreachable (refused)"]


def test_a_missing_table_is_read_once_and_not_queried():
    clock = FakeClock()
    engine = ScriptedEngine(clock, {"c_bot": [inspect(cid="c_bot")]}, table=False)
    params = {"services": _svc("auto"), "db_container": "fs_db", "timeout": 4, "interval": 2}
    r = h.run_health_check(engine, params, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.PASSED and r["attempts"] == 1
    assert r["services"]["bot"]["heartbeat"] == "not used (no table heartbeats)"
    assert engine.calls["exec"] == ["SELECT 1", h.table_query()]
    r = h.run_health_check(engine, dict(params, services=_svc("required")), clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED and r["attempts"] == 3  # retried: the app may create it meanwhile


def test_all_heartbeats_off_asks_the_database_only_for_select_1():
    clock = FakeClock()
    engine = ScriptedEngine(clock, {"c_bot": [inspect(cid="c_bot")]})
    params = {"services": _svc("off"), "db_container": "fs_db", "timeout": 4, "interval": 2}
    r = h.run_health_check(engine, params, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.PASSED
    assert engine.calls["exec"] == ["SELECT 1"]


# -- an external database (app_db_managed false): psql in a throwaway container --


class ExternalDbEngine(ScriptedEngine):
    """The engine of an app server whose database is elsewhere: no container to exec in; each
    probe is a throwaway container whose logs are psql's answer."""

    def __init__(self, clock, inspects, answers, **kw):
        super().__init__(clock, inspects, **kw)
        self.answers = answers  # (exit code, output) for each probe, in turn
        self.bodies, self.removed = [], []

    def exec_run(self, container, cmd, user=None, env=None, timeout=60):
        raise AssertionError(f"exec in {container}: an external database has no container here")

    def remove_container(self, name, force=False, volumes=True):
        self.removed.append(name)

    def create_container(self, name, body):
        self.bodies.append((name, body))

    def start_container(self, name):
        pass

    def request_json(self, method, path, timeout=None):
        return {"StatusCode": self._pick(self.answers, len(self.bodies) - 1)[0]}

    def container_logs(self, name, since=None, timestamps=False, tty=None, tail=None):
        if name.startswith("fs_health_db_"):
            return self._pick(self.answers, len(self.bodies) - 1)[1]
        return super().container_logs(name, since, timestamps, tty, tail)


EXTERNAL = {"services": [dict(s, heartbeat="off") for s in SERVICES], "db_host": "10.0.0.20", "db_port": 6432,
            "db_password": "pw-secret", "db_network": "fs_net", "db_user": "fs", "db_name": "fsdb",
            "timeout": 10, "interval": 2}


def test_an_external_database_is_probed_from_a_throwaway_container_on_the_app_network():
    clock = FakeClock()
    engine = ExternalDbEngine(clock, healthy_inspects(), answers=[(2, "psql: error: connection refused\n"),
                                                                  (0, "1\n")])
    r = h.run_health_check(engine, EXTERNAL, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.PASSED and r["attempts"] == 2
    (name, body), _ = engine.bodies
    assert body["Image"] == "postgres:15" and body["HostConfig"]["NetworkMode"] == "fs_net"
    assert body["Cmd"][-2:] == ["-c", "SELECT 1"]
    assert body["Cmd"][body["Cmd"].index("-h") + 1] == "10.0.0.20" and "6432" in body["Cmd"]
    assert "PGPASSWORD=pw-secret" in body["Env"] and "pw-secret" not in " ".join(body["Cmd"])
    assert engine.removed.count(name) == 4  # before and after each of the two probes


def test_an_external_database_that_refuses_fails_the_check_with_psql_s_answer():
    clock = FakeClock()
    engine = ExternalDbEngine(clock, healthy_inspects(), answers=[(2, "psql: error: connection refused\n")])
    r = h.run_health_check(engine, EXTERNAL, clock=clock, sleep=clock.sleep)
    assert r["status"] == h.FAILED
    assert r["reason"] == "database: unreachable (psql exit code 2: psql: error: connection refused)"


def test_a_database_is_named_one_way_or_the_other():
    with pytest.raises(ValueError, match="db_container .* or db_host"):
        h.normalize_params({"services": SERVICES})
    with pytest.raises(ValueError, match="db_network is required"):
        h.normalize_params({"services": SERVICES, "db_host": "10.0.0.20"})
