"""Heartbeat semantics, startup without a database, and the Docker healthcheck."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from fs_support import PROJECT, Fake, assert_clean_logs, free_port, query, wait_for


def beat(url: str, service: str = "master_bot") -> tuple[str, float, str] | None:
    rows = query(url, "SELECT release, EXTRACT(EPOCH FROM now()-beat_at), state FROM heartbeats"
                      " WHERE service = %s", (service,))
    return (rows[0][0], float(rows[0][1]), rows[0][2]) if rows else None


def test_heartbeat_written_with_release(database_url: str, fake: Fake, start_bot) -> None:
    bot = start_bot("master_bot", database_url, fake, APP_RELEASE="20260101T000000-abc123",
                    SERVICE_NAME="master_bot")
    wait_for(lambda: beat(database_url), 10, "heartbeat row")
    first = query(database_url, "SELECT beat_at FROM heartbeats")[0][0]
    release, age, state = beat(database_url)
    assert release == "20260101T000000-abc123" and state == "polling" and age < 1.5
    # keeps beating every HEARTBEAT_INTERVAL (1 s here)
    wait_for(lambda: query(database_url, "SELECT beat_at FROM heartbeats")[0][0] > first,
             3, "next heartbeat")
    assert bot.terminate() == 0


def test_heartbeat_goes_in_the_row_the_deploy_names(database_url: str, fake: Fake, start_bot) -> None:
    # one of several app servers: the deploy sets HEARTBEAT_KEY=<service>@<server>
    bot = start_bot("admin_bot", database_url, fake, APP_RELEASE="r-fleet", HEARTBEAT_KEY="admin_bot@app2")
    wait_for(lambda: beat(database_url, "admin_bot@app2"), 10, "heartbeat row of app2")
    assert beat(database_url, "admin_bot@app2")[0] == "r-fleet"
    assert beat(database_url, "admin_bot") is None
    assert bot.terminate() == 0


def test_deaf_poller_stops_heartbeating(database_url: str, fake: Fake, start_bot) -> None:
    # HEARTBEAT_INTERVAL=1: the bot may stop beating 2 s after its last good getUpdates
    bot = start_bot("master_bot", database_url, fake)
    wait_for(lambda: beat(database_url), 10, "heartbeat row")
    fake.fail("500")  # every getUpdates now fails: the bot is alive but deaf
    bot.wait_log("heartbeat paused: no successful getUpdates in the last 2s")
    age_at_pause = beat(database_url)[1]
    time.sleep(1.5)
    release, age, _ = beat(database_url)
    assert age > 2.0 and age >= age_at_pause + 1.4, "a deaf poller must not heartbeat"
    assert release == "r-test"
    assert bot.proc.poll() is None and bot.status("/health") == 200
    assert "ERROR field_service: getUpdates failed: getUpdates: 500" in bot.logs()
    fake.fail("none")
    wait_for(lambda: beat(database_url)[1] < 1.0, 10, "heartbeat resumed")
    bot.wait_log("heartbeat resumed")
    assert bot.terminate() == 0
    assert_clean_logs(bot.logs())


def test_unreachable_database_at_start_is_retried(fake: Fake, start_bot) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    bot = start_bot("master_bot", dead, fake)
    wait_for(lambda: bot.status("/health") == 200, 10, "HTTP up")
    bot.wait_log("WARNING field_service.heartbeat: database unreachable")
    bot.wait_log("WARNING field_service: poller: database unreachable")
    status, info = bot.http("GET", "/ready")
    assert status == 503 and info["status"] == "database unreachable"
    time.sleep(1.0)
    assert bot.proc.poll() is None  # not crash-looping
    assert bot.logs().count("database unreachable") == 2  # warned once per component
    assert bot.terminate() == 0
    assert_clean_logs(bot.logs())


def test_healthcheck_module(database_url: str, fake: Fake, start_bot) -> None:
    def healthcheck(port: int) -> int:
        env = {**os.environ, "HTTP_PORT": str(port)}
        t0 = time.monotonic()
        rc = subprocess.run([sys.executable, "-m", "field_service.healthcheck"], cwd=PROJECT,
                            env=env, capture_output=True, timeout=10).returncode
        assert time.monotonic() - t0 < 5
        return rc

    bot = start_bot("admin_bot", database_url, fake)
    bot.wait_ready()
    assert healthcheck(bot.port) == 0
    assert healthcheck(free_port()) == 1  # nothing listening
    not_ready = start_bot("admin_bot", f"postgresql://postgres@127.0.0.1:{free_port()}/x", fake)
    wait_for(lambda: not_ready.status("/health") == 200, 10, "HTTP up")
    assert healthcheck(not_ready.port) == 1  # 503
    assert bot.terminate() == 0 and not_ready.terminate() == 0


def test_port_in_use_is_fatal(database_url: str, fake: Fake, start_bot) -> None:
    a = start_bot("admin_bot", database_url, fake)
    a.wait_ready()
    b = start_bot("admin_bot", database_url, fake, HTTP_PORT=a.port)
    assert b.wait(10) == 1
    assert " CRITICAL field_service: cannot listen on 0.0.0.0:" in b.logs()
    assert a.terminate() == 0
