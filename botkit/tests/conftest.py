"""Fixtures of the kit's tests: a real PostgreSQL 15 cluster (initdb, pg_ctl),
the deploy tool's stand-in Bot API in this process, and bots of both libraries
run as real processes (``apps/ptb_bot.py``, ``apps/aiogram_bot.py``).

The cluster and the stand-in come from the sample app's test support
(examples/field-service/tests/fs_support.py), so both test suites run the same
PostgreSQL and the same Bot API.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples" / "field-service" / "tests"))

from fs_support import PG_BIN, FakeTelegram, PgCluster, free_port, wait_for  # noqa: E402

APPS = Path(__file__).resolve().parent / "apps"
SRC = Path(__file__).resolve().parents[1] / "src"  # the kit's source, not an installed copy
LIBRARIES = ["ptb", "aiogram"]
_ids = itertools.count(1)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL server binaries not found in {PG_BIN} (set PG_BIN)")
    run_as = None
    if os.geteuid() == 0:
        pwd.getpwnam("postgres")  # PostgreSQL refuses to run as root
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="botkit-pg-"))
    if run_as:
        shutil.chown(root, run_as, run_as)
    cluster = PgCluster(root, free_port(), run_as)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def db(pg: PgCluster) -> str:
    """A new database with the app's own table; the kit creates its tables itself."""
    name = f"kit{next(_ids)}_{os.getpid()}"
    with pg.admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = pg.url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kit_notes (id bigserial PRIMARY KEY, update_id bigint NOT NULL, "
                     "body text NOT NULL, pid integer NOT NULL)")
        conn.execute("CREATE TABLE kit_events (id bigserial PRIMARY KEY, pid integer NOT NULL, "
                     "event text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
    return url


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    server = FakeTelegram().start()
    try:
        yield server
    finally:
        server.stop()


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


class BotProcess:
    """One bot of the kit's test apps, a real process."""

    def __init__(self, library: str, mode: str, env: dict[str, str], log_path: Path) -> None:
        self.library, self.mode = library, mode
        self.port = int(env["BOTKIT_PORT"])
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in wait/kill)
        self.proc = subprocess.Popen([sys.executable, str(APPS / f"{library}_bot.py"), mode], env=env,
                                     stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def ready(self) -> dict[str, Any] | None:
        try:
            status, body = self.http("GET", "/ready")
        except OSError:
            return None
        return body if status == 200 else None

    def wait_ready(self, timeout: float = 30) -> dict[str, Any]:
        got = wait_for(lambda: self.ready() or self.proc.poll() is not None, timeout, f"{self.library} ready")
        assert self.proc.poll() is None, f"{self.library} bot exited early:\n{self.logs()}"
        return got

    def wait_log(self, needle: str, timeout: float = 15) -> None:
        try:
            wait_for(lambda: needle in self.logs(), timeout, repr(needle))
        except AssertionError:
            raise AssertionError(f"{needle!r} not logged:\n{self.logs()}") from None

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 20) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture
def bots(db: str, telegram: FakeTelegram, tmp_path: Path) -> Iterator[Any]:
    """``bots(library, mode, **env)`` starts a bot against this test's database and stand-in."""
    started: list[BotProcess] = []

    def start(library: str, mode: str = "polling", **extra: str) -> BotProcess:
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/root"),
            "PYTHONPATH": str(SRC),
            "DATABASE_URL": db, "BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": telegram.url.rstrip("/"),
            "SERVICE_NAME": f"{mode}_bot", "APP_RELEASE": f"r{len(started) + 1}",
            "BOTKIT_PORT": str(free_port()), "BOTKIT_POLL_TIMEOUT": "1", "BOTKIT_HEARTBEAT_INTERVAL": "0.5",
            "SLOW_SECONDS": "2", **extra,
        }
        bot = BotProcess(library, mode, env, tmp_path / f"{library}-{mode}-{len(started) + 1}.log")
        started.append(bot)
        return bot

    try:
        yield start
    finally:
        for bot in started:
            bot.kill()


TOKEN = "400001:kit-token"
