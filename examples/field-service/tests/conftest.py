"""Fixtures: a throwaway PostgreSQL 15 cluster, the fake Telegram server, bots.

The cluster is created with initdb in a temp dir and started with pg_ctl on a
free port (as user ``postgres`` when running as root, since PostgreSQL
refuses to run as root).  Each test gets its own database cloned from a
template that was migrated once with ``alembic upgrade head``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fs_support import (
    PG_BIN,
    TEMPLATE_DB,
    Bot,
    Fake,
    FakeTelegram,
    PgCluster,
    alembic,
    counter,
    free_port,
)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN} (set PG_BIN)")
    run_as = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root but there is no 'postgres' user to run initdb as")
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="fs-pg-"))
    if run_as:
        shutil.chown(root, run_as, run_as)
    cluster = PgCluster(root, free_port(), run_as)
    try:
        cluster.start()
        # one migrated template; every test clones it (fast)
        with cluster.admin() as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        alembic("upgrade", "head", url=cluster.url(TEMPLATE_DB))
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def database_url(pg: PgCluster) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t{os.getpid()}_{next(counter)}"
    with pg.admin() as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    try:
        yield pg.url(name)
    finally:
        with pg.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture()
def empty_database_url(pg: PgCluster) -> Iterator[str]:
    """A fresh database without any table."""
    name = f"e{os.getpid()}_{next(counter)}"
    with pg.admin() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield pg.url(name)
    finally:
        with pg.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeTelegram]:
    server = FakeTelegram("127.0.0.1", 0).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def fake(fake_server: FakeTelegram) -> Iterator[Fake]:
    token = f"{next(counter)}00{os.getpid()}:TEST-{int(time.time() * 1000)}"
    yield Fake(fake_server, token)
    fake_server.reset(token)


@pytest.fixture()
def start_bot() -> Iterator[Callable[..., Bot]]:
    """Start bots as subprocesses; all are killed and their logs removed afterwards.

    Set FS_TEST_KEEP_LOGS=1 to keep the log directory (its path is printed).
    """
    bots: list[Bot] = []
    log_dir = Path(tempfile.mkdtemp(prefix="fs-bots-"))

    def _start(name: str, database_url: str, fake: Fake | None = None, **env: Any) -> Bot:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("BOT_", "HTTP_PORT", "HEARTBEAT", "APP_", "SERVICE_NAME",
                                     "WEBHOOK_", "POLL_", "SHUTDOWN_", "TELEGRAM_"))}
        full = {
            **base,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url,
            "BOT_TOKEN": fake.token if fake else "1:unused",
            "TELEGRAM_API_BASE": fake.url if fake else "http://127.0.0.1:9",
            "HTTP_PORT": str(free_port()),
            "HEARTBEAT_INTERVAL": "1",
            "POLL_TIMEOUT": "1",
            "SHUTDOWN_TIMEOUT": "8",
            "APP_RELEASE": "r-test",
        }
        full.update({k: str(v) for k, v in env.items()})
        log_path = log_dir / f"{name}-{len(bots)}.log"
        bot = Bot(name, full, log_path)
        bots.append(bot)
        return bot

    try:
        yield _start
    finally:
        for bot in bots:
            bot.kill()
        if os.environ.get("FS_TEST_KEEP_LOGS"):
            print(f"bot logs kept in {log_dir}")
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
