"""Database access: connections, a tiny pool and the SQL the bots run."""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

import psycopg

# Fail fast instead of hanging when the database host is unreachable, and
# notice a dead peer on long-lived connections (the poller lock connection).
CONNECT_KWARGS: dict[str, Any] = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10000,  # ms
}

DbError = psycopg.Error


def connect(url: str, application_name: str, statement_timeout_ms: int = 10000
            ) -> psycopg.Connection:
    """Open an autocommit connection; use ``with conn.transaction():`` for transactions."""
    return psycopg.connect(
        url,
        autocommit=True,
        application_name=application_name[:63],
        options=f"-c statement_timeout={statement_timeout_ms}",
        **CONNECT_KWARGS,
    )


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` -> ``postgresql+psycopg://...`` (psycopg 3 driver)."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    raise ValueError("DATABASE_URL must start with postgresql://")


def is_usable(conn: psycopg.Connection) -> bool:
    return not conn.closed and not conn.broken


class PoolExhausted(psycopg.OperationalError):
    """Every connection of the pool stayed in use for the whole wait."""


class ConnectionPool:
    """A small thread-safe LIFO pool (psycopg_pool is not a dependency).

    At most ``max_size`` connections are open at once: a request that finds
    them all in use waits up to ``wait`` seconds for one (then PoolExhausted,
    a DbError), so that a burst of requests, or two releases of a service
    side by side during a deploy, never exhaust PostgreSQL's max_connections.
    """

    def __init__(self, url: str, application_name: str, max_size: int = 10,
                 wait: float = 5.0) -> None:
        self._url = url
        self._name = application_name
        self._wait = wait
        self._slots = threading.BoundedSemaphore(max_size)
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> psycopg.Connection:
        if not self._slots.acquire(timeout=self._wait):
            raise PoolExhausted(f"all connections of the pool stayed busy for {self._wait:g}s")
        try:
            with self._lock:
                while self._idle:
                    conn = self._idle.pop()
                    if is_usable(conn):
                        return conn
                    conn.close()
            return connect(self._url, self._name)
        except BaseException:
            self._slots.release()
            raise

    def put(self, conn: psycopg.Connection) -> None:
        """Give back a connection that get() returned (exactly once)."""
        try:
            usable = is_usable(conn) and (
                conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE)
            with self._lock:
                if usable and not self._closed:
                    self._idle.append(conn)
                    return
            conn.close()
        finally:
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


# -- heartbeats -------------------------------------------------------------------
def write_heartbeat(conn: psycopg.Connection, service: str, release: str, state: str) -> None:
    conn.execute(
        """
        INSERT INTO heartbeats (service, release, beat_at, pid, hostname, state)
        VALUES (%s, %s, now(), %s, %s, %s)
        ON CONFLICT (service) DO UPDATE SET
            release = EXCLUDED.release, beat_at = EXCLUDED.beat_at,
            pid = EXCLUDED.pid, hostname = EXCLUDED.hostname, state = EXCLUDED.state
        """,
        (service, release, os.getpid(), socket.gethostname(), state),
    )


# -- poller lock and offsets ---------------------------------------------------------
def try_poller_lock(conn: psycopg.Connection, lock_name: str) -> bool:
    """Session-level advisory lock: held until released or the session ends."""
    row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (lock_name,)).fetchone()
    return bool(row and row[0])


def read_offset(conn: psycopg.Connection, service: str) -> int:
    row = conn.execute(
        "SELECT next_offset FROM bot_offsets WHERE service = %s", (service,)
    ).fetchone()
    return int(row[0]) if row else 0


def save_offset(conn: psycopg.Connection, service: str, next_offset: int) -> None:
    conn.execute(
        """
        INSERT INTO bot_offsets (service, next_offset) VALUES (%s, %s)
        ON CONFLICT (service) DO UPDATE SET next_offset = EXCLUDED.next_offset
        """,
        (service, next_offset),
    )


# -- updates -------------------------------------------------------------------------
def record_update(conn: psycopg.Connection, service: str, update_id: int,
                  chat_id: int | None, text: str | None, release: str) -> bool:
    """Insert into processed_updates; False when it was already processed."""
    cur = conn.execute(
        """
        INSERT INTO processed_updates (service, update_id, chat_id, text, release)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (service, update_id) DO NOTHING
        """,
        (service, update_id, chat_id, text, release),
    )
    return cur.rowcount == 1
