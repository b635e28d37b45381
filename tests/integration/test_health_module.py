"""The health_check module end to end: ansible-playbook runs the module against real containers.

A real postgres:15 container holds the heartbeats table; python:3.11-slim
containers act as the services and print log lines. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
PYTHON = VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable
PLAYBOOK_BIN = os.path.join(os.path.dirname(PYTHON), "ansible-playbook")
DOCKER_HOST = os.environ.get("FS_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")


@pytest.fixture(autouse=True)
def no_heartbeats(pg, run_sql):
    """Each test starts without heartbeat rows in the shared database."""
    run_sql(pg, "DELETE FROM heartbeats")


def run_module(tmp_path, args: dict, check: bool = False) -> dict:
    """Run the health_check module once through ansible-playbook; return the registered result (+ rc)."""
    out = tmp_path / "result.json"
    if out.exists():
        out.unlink()
    args = dict(args)
    args.setdefault("docker_host", DOCKER_HOST)
    play = [{
        "name": "health check",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {"name": "check", "fieldservice.deploy.health_check": args, "register": "health",
             "ignore_errors": True},
            {"name": "save", "ansible.builtin.copy": {"content": "{{ health | to_json }}", "dest": str(out)},
             "check_mode": False},
        ],
    }]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps(play, indent=1))
    cfg = tmp_path / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\n")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, "playbooks", "collections"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
        "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    })
    cmd = [PLAYBOOK_BIN, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={PYTHON}",
           str(playbook)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.exists(), f"playbook did not save the result:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(out.read_text())
    result["_rc"] = proc.returncode
    result["_stdout"] = proc.stdout
    return result


def svc(name, container, release="r2", heartbeat="required"):
    return {"name": name, "container": container.name, "release": release, "heartbeat": heartbeat}


def assert_report_shape(r):
    for key in ("status", "reason", "failures", "services", "database", "attempts", "elapsed"):
        assert key in r, (key, r)
    assert r["changed"] is False
    for entry in r["services"].values():
        for key in ("container", "running", "restarting", "restart_count", "started_at", "critical_lines",
                    "heartbeat_age", "heartbeat_release", "ok"):
            assert key in entry
    assert set(r["database"]) == {"reachable", "error"}


def assert_failed(r, reason_start):
    assert_report_shape(r)
    assert r["status"] == "FAILED", r
    assert r.get("failed") is True
    assert r["reason"].startswith(reason_start), r["reason"]
    assert r["msg"] == f"Health check: FAILED ({r['reason']})"
    assert r["reason"] in r["failures"]


def test_healthy_services_pass(tmp_path, pg, service, beat):
    bot, worker = service(), service()
    beat(pg, "it_bot", "r2")
    beat(pg, "it_worker", "r2", age=5)
    args = {"services": [svc("it_bot", bot), svc("it_worker", worker)], "db_container": pg.name,
            "timeout": 20, "interval": 1}
    r = run_module(tmp_path, args)
    assert_report_shape(r)
    assert r["status"] == "PASSED", r["failures"]
    assert r.get("failed") is not True and r["_rc"] == 0
    assert r["reason"] == "all checks passed" and r["failures"] == []
    assert r["attempts"] == 1
    assert r["database"] == {"reachable": True, "error": None}
    w = r["services"]["it_worker"]
    assert w["container"] == worker.name and w["running"] is True and w["ok"] is True
    assert w["heartbeat_release"] == "r2" and 5 <= w["heartbeat_age"] < 30
    assert w["critical_lines"] == [] and w["restart_count"] == 0 and w["started_at"]
    # Check mode: same checks, same answer, nothing changed.
    r = run_module(tmp_path, args, check=True)
    assert r["status"] == "PASSED" and r["changed"] is False


def test_critical_line_fails_fast(tmp_path, pg, service, beat):
    c = service(extra_line="CRITICAL payment gateway down: " + "x" * 400)
    beat(pg, "it_bot", "r2")
    r = run_module(tmp_path, {"services": [svc("it_bot", c)], "db_container": pg.name,
                              "timeout": 60, "interval": 1})
    assert_failed(r, f"it_bot: critical log line in {c.name}: CRITICAL payment gateway down")
    assert "...ignoring" in r["_stdout"]  # the task failed (the test play ignores it)
    assert r["attempts"] == 1 and r["elapsed"] < 30
    lines = r["services"]["it_bot"]["critical_lines"]
    assert len(lines) == 1 and lines[0].endswith("...") and len(lines[0]) <= 203


def test_traceback_of_a_previous_run_does_not_count(tmp_path, pg, service, beat, docker_sdk):
    c = service()
    # Written to the service's stdout, as if the service had printed it.
    code, _ = c.exec_run(["sh", "-c", "echo 'Traceback (most recent call last):' > /proc/1/fd/1"])
    assert code == 0
    args = {"services": [svc("it_bot", c)], "db_container": pg.name, "timeout": 10, "interval": 1,
            "critical_patterns": ["Traceback \\(most recent call last\\)"]}
    beat(pg, "it_bot", "r2")
    r = run_module(tmp_path, args)
    assert_failed(r, "it_bot: critical log line")
    c.restart(timeout=1)  # new State.StartedAt: the traceback belongs to the previous run
    r = run_module(tmp_path, args)
    assert r["status"] == "PASSED", r["failures"]
    assert r["services"]["it_bot"]["critical_lines"] == []


def test_custom_patterns(tmp_path, pg, service, beat):
    c = service(extra_line="ERROR: disk full")
    beat(pg, "it_bot", "r2")
    base = {"services": [svc("it_bot", c)], "db_container": pg.name, "timeout": 5, "interval": 1}
    assert run_module(tmp_path, base)["status"] == "PASSED"
    r = run_module(tmp_path, dict(base, critical_patterns=["^ERROR:"]))
    assert_failed(r, f"it_bot: critical log line in {c.name}: ERROR: disk full")


def test_stale_heartbeat(tmp_path, pg, service, beat):
    c = service()
    beat(pg, "it_bot", "r2", age=45)
    r = run_module(tmp_path, {"services": [svc("it_bot", c)], "db_container": pg.name,
                              "timeout": 3, "interval": 1})
    assert_failed(r, "it_bot: heartbeat stale (")
    assert r["reason"].endswith("s > 30s)")
    assert r["attempts"] >= 2  # retried until the timeout
    assert r["elapsed"] >= 3
    assert r["services"]["it_bot"]["heartbeat_age"] >= 45


def test_missing_heartbeat(tmp_path, pg, service):
    c = service()
    r = run_module(tmp_path, {"services": [svc("it_nobeat", c)], "db_container": pg.name,
                              "timeout": 2, "interval": 1})
    assert_failed(r, "it_nobeat: heartbeat missing")
    assert r["services"]["it_nobeat"]["heartbeat_age"] is None


def test_heartbeat_auto_is_used_only_when_the_app_writes_them(tmp_path, pg, service, beat):
    c = service()
    # the table exists, the service never beat: not used
    r = run_module(tmp_path, {"services": [svc("it_nobeat", c, heartbeat="auto")], "db_container": pg.name,
                              "timeout": 2, "interval": 1})
    assert r["status"] == "PASSED", r["failures"]
    assert r["services"]["it_nobeat"]["heartbeat"] == "not used (the service has written none)"
    # no such table (a stock app): not used, and required names the setting
    args = {"db_container": pg.name, "timeout": 2, "interval": 1, "heartbeat_table": "no_such_beats"}
    r = run_module(tmp_path, {**args, "services": [svc("it_bot", c, heartbeat="auto")]})
    assert r["status"] == "PASSED", r["failures"]
    assert r["services"]["it_bot"]["heartbeat"] == "not used (no table no_such_beats)"
    r = run_module(tmp_path, {**args, "services": [svc("it_bot", c)]})
    assert_failed(r, "it_bot: heartbeat missing (no table no_such_beats: the app writes no heartbeats; "
                     "set heartbeat: false on the service; docs/zero-downtime.md#readiness)")
    # a row of the service: auto checks it like required (stale fails)
    beat(pg, "it_bot", "r2", age=45)
    r = run_module(tmp_path, {"services": [svc("it_bot", c, heartbeat="auto")], "db_container": pg.name,
                              "timeout": 2, "interval": 1})
    assert_failed(r, "it_bot: heartbeat stale (")
    r = run_module(tmp_path, {"services": [svc("it_bot", c, heartbeat="off")], "db_container": pg.name,
                              "timeout": 2, "interval": 1})
    assert r["status"] == "PASSED" and r["services"]["it_bot"]["heartbeat"] == "off"


def test_heartbeat_of_the_old_release(tmp_path, pg, service, beat):
    c = service()
    beat(pg, "it_bot", "r1")
    r = run_module(tmp_path, {"services": [svc("it_bot", c, release="r2")], "db_container": pg.name,
                              "timeout": 2, "interval": 1})
    assert_failed(r, "it_bot: heartbeat from release r1 (expected r2)")
    # Without an expected release, any release counts.
    r = run_module(tmp_path, {"services": [{"name": "it_bot", "container": c.name}], "db_container": pg.name,
                              "timeout": 2, "interval": 1})
    assert r["status"] == "PASSED", r["failures"]


def test_stopped_container(tmp_path, pg, service, beat):
    c = service()
    beat(pg, "it_bot", "r2")
    c.stop(timeout=1)
    r = run_module(tmp_path, {"services": [svc("it_bot", c)], "db_container": pg.name,
                              "timeout": 2, "interval": 1})
    assert_failed(r, f"it_bot: container {c.name} is not running (exited, exit code ")
    assert r["services"]["it_bot"]["running"] is False


def test_missing_container(tmp_path, pg, beat):
    beat(pg, "it_bot", "r2")
    r = run_module(tmp_path, {"services": [{"name": "it_bot", "container": "fs_test_health_gone"}],
                              "db_container": pg.name, "timeout": 1, "interval": 1})
    assert_failed(r, "it_bot: container fs_test_health_gone not found")


def test_crash_loop(tmp_path, pg, service):
    # Exits with 3 after a second; Docker restarts it. A crashing service writes no heartbeat.
    c = service(exit_after=1, restart_policy={"Name": "on-failure"})
    r = run_module(tmp_path, {"services": [svc("it_bot", c)], "db_container": pg.name,
                              "timeout": 40, "interval": 0.5})
    assert_failed(r, "it_bot: crash loop (")
    assert r["elapsed"] < 40  # a crash loop does not heal: no wait for the timeout


def test_database_container_stopped(tmp_path, fresh_pg, service, beat):
    db = fresh_pg()
    c = service()
    beat(db, "it_bot", "r2")
    args = {"services": [svc("it_bot", c)], "db_container": db.name, "timeout": 3, "interval": 1}
    assert run_module(tmp_path, args)["status"] == "PASSED"
    db.stop(timeout=5)
    r = run_module(tmp_path, args)
    assert_failed(r, f"database: unreachable (container {db.name}: ")
    assert "is not running" in r["reason"]
    assert r["database"]["reachable"] is False and db.name in r["database"]["error"]
    assert r["attempts"] >= 2


def test_a_heartbeat_table_of_another_shape_is_a_database_error(tmp_path, pg, service, run_sql):
    # (a missing table is the app writing none: test_heartbeat_auto_is_used_only_when_the_app_writes_them)
    c = service()
    r = run_module(tmp_path, {"services": [svc("it_bot", c)], "db_container": pg.name,
                              "heartbeat_table": "pg_catalog.pg_am", "timeout": 1, "interval": 1})
    assert_failed(r, "database: heartbeat query failed: ERROR:  column \"service\" does not exist")
    assert r["database"]["reachable"] is True


def test_retries_until_the_heartbeat_arrives(tmp_path, pg, service, beat):
    c = service()
    # late enough that the module, however slow to start, has to wait for it
    timer = threading.Timer(6.0, beat, args=(pg, "it_late", "r2"))
    timer.start()
    try:
        start = time.monotonic()
        r = run_module(tmp_path, {"services": [svc("it_late", c)], "db_container": pg.name,
                                  "timeout": 30, "interval": 0.5})
    finally:
        timer.cancel()
        timer.join()
    assert r["status"] == "PASSED", r["failures"]
    assert r["attempts"] >= 2
    assert r["elapsed"] >= 1.0 and time.monotonic() - start < 30


def test_report_only_when_fail_on_unhealthy_is_false(tmp_path, pg, service, beat):
    c = service()
    beat(pg, "it_bot", "r2", age=100)
    r = run_module(tmp_path, {"services": [svc("it_bot", c)], "db_container": pg.name,
                              "timeout": 1, "interval": 1, "fail_on_unhealthy": False})
    assert_report_shape(r)
    assert r.get("failed") is not True and r["_rc"] == 0
    assert r["status"] == "FAILED" and r["reason"].startswith("it_bot: heartbeat stale")


def test_invalid_parameters(tmp_path, pg, service):
    c = service()
    r = run_module(tmp_path, {"services": [svc("it_bot", c)], "db_container": pg.name,
                              "heartbeat_table": "beats; DROP TABLE x"})
    assert r.get("failed") is True
    assert r["msg"].startswith("Invalid parameters: heartbeat_table")
    r = run_module(tmp_path, {"services": [{"name": "it_bot"}], "db_container": pg.name})
    assert r.get("failed") is True and "container" in r["msg"]
