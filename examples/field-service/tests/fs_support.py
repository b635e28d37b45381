"""Helpers shared by the Field Service tests (fixtures are in conftest.py)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT.parent
sys.path.insert(0, str(PROJECT))  # field_service, whatever the current directory
# The stand-in Bot API: FAKE_TELEGRAM_DIR, else the deploy tool's own copy
# (roles/demo_telegram/files of the repository this sample lives in; the
# tool's preflight sets FAKE_TELEGRAM_DIR when it runs these tests from a copy
# of the app).
sys.path.insert(0, os.environ.get("FAKE_TELEGRAM_DIR")
                or str(EXAMPLES.parent / "roles" / "demo_telegram" / "files"))

from fake_telegram import FakeTelegram  # noqa: E402

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE_DB = "fs_template"
counter = itertools.count(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str,
             interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- PostgreSQL -------------------------------------------------------------------------
class PgCluster:
    def __init__(self, root: Path, port: int, run_as: str | None) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.run_as = run_as

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        return [*prefix, *args]

    def start(self) -> None:
        subprocess.run(self._cmd(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                                 "--auth=trust", "-E", "UTF8", "--no-sync"),
                       check=True, capture_output=True, timeout=120)
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100")
        subprocess.run(self._cmd(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                 "-l", str(self.root / "postgres.log"), "-w", "-t", "60",
                                 "start"),
                       check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        subprocess.run(self._cmd(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                 "-w", "stop"), capture_output=True, timeout=60)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True)


def alembic(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    """Run the alembic CLI from the project dir, like the image does."""
    proc = subprocess.run([sys.executable, "-m", "alembic", *args], cwd=PROJECT,
                          env={**os.environ, "DATABASE_URL": url},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


# -- fake Telegram ------------------------------------------------------------------------
class Fake:
    """The in-process fake Telegram server plus helpers for one token."""

    def __init__(self, server: FakeTelegram, token: str) -> None:
        self.server = server
        self.token = token
        self.url = server.url

    def queue(self, *texts: str, chat_id: int = 100) -> list[int]:
        return self.server.queue_updates(self.token, [{"text": t, "chat_id": chat_id}
                                                      for t in texts])

    def sent(self) -> list[dict[str, Any]]:
        return self.server.sent(self.token)

    def stats(self) -> dict[str, Any]:
        return self.server.stats(self.token)

    def fail(self, mode: str, **extra: Any) -> None:
        self.server.set_fail(self.token, {"mode": mode, **extra})


# -- bot processes ------------------------------------------------------------------------
class Bot:
    """A bot running as a real subprocess (``python -m field_service.bots.X.main``)."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = int(env["HTTP_PORT"])
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in wait/kill)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"field_service.bots.{name}.main"], cwd=PROJECT,
            env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                     method=method, headers=headers or {})
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def status(self, path: str) -> int:
        try:
            return self.http("GET", path)[0]
        except OSError:
            return 0  # not listening (yet)

    def wait_ready(self, timeout: float = 15) -> None:
        wait_for(lambda: self.status("/ready") == 200 or self.proc.poll() is not None,
                 timeout, f"{self.name} ready")
        assert self.proc.poll() is None, f"{self.name} exited early:\n{self.logs()}"

    def wait_log(self, needle: str, timeout: float = 10, count: int = 1) -> None:
        try:
            wait_for(lambda: self.logs().count(needle) >= count, timeout, repr(needle))
        except AssertionError:
            raise AssertionError(f"{needle!r} not logged by {self.name}:\n{self.logs()}") from None

    def terminate(self, timeout: float = 15) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 15) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def assert_clean_logs(text: str) -> None:
    """No CRITICAL records and no tracebacks."""
    assert " CRITICAL " not in text, text
    assert "Traceback" not in text, text
