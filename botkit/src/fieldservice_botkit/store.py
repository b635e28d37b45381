"""The kit's state in the app's PostgreSQL database: its tables, the poller lock,
the offsets, the heartbeat row and a small connection pool.

Every table is created by the kit itself (``CREATE TABLE IF NOT EXISTS``, under a
transaction-level advisory lock so that two releases starting at once do not
race); the app's migrations need not know about them.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket

import psycopg

SCHEMA_LOCK = "fieldservice_botkit:schema"
POLLER_LOCK = "fieldservice_botkit:poller:{bot_id}"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")

# The heartbeat table has the shape the deploy's health check reads
# (service, release, beat_at); the offsets are per bot (per token), like
# Telegram's; webhook updates already processed are kept two days, so that
# a redelivered one is answered without running its handler again.
SCHEMA = """
CREATE TABLE IF NOT EXISTS {heartbeats} (
    service text PRIMARY KEY,
    release text NOT NULL,
    beat_at timestamptz NOT NULL DEFAULT now(),
    pid integer,
    hostname text,
    state text
);
CREATE TABLE IF NOT EXISTS botkit_offsets (
    bot_id bigint PRIMARY KEY,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS botkit_webhook_updates (
    bot_id bigint NOT NULL,
    update_id bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot_id, update_id)
);
"""
KEEP_WEBHOOK_UPDATES = "2 days"


def valid_table(name: str) -> bool:
    return bool(_IDENT.match(name))


async def connect(url: str, purpose: str, timeout: float = 5.0) -> psycopg.AsyncConnection:
    """An autocommit connection named ``<purpose>`` in pg_stat_activity."""
    return await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=max(1, int(timeout)), application_name=purpose[:63])


def usable(conn: psycopg.AsyncConnection | None) -> bool:
    return conn is not None and not conn.closed and not conn.broken


class SchemaError(Exception):
    """A table of the kit's exists with another shape (the message names the setting)."""


async def ensure_schema(conn: psycopg.AsyncConnection, heartbeat_table: str) -> None:
    if not valid_table(heartbeat_table):
        raise ValueError(f"BOTKIT_HEARTBEAT_TABLE {heartbeat_table!r} is not a valid table name")
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SCHEMA_LOCK,))
        await conn.execute(SCHEMA.format(heartbeats=heartbeat_table))
    # an app's own heartbeat table of that name may lack what the kit writes: find out
    # now, not at the first beat (nothing of this check is kept)
    try:
        async with conn.transaction(force_rollback=True):
            await write_heartbeat(conn, heartbeat_table, "botkit schema check", "", "check")
    except psycopg.Error as exc:
        raise SchemaError(
            f"the table {heartbeat_table} exists but the kit cannot write its heartbeat there "
            f"({str(exc).strip()}): it needs service text PRIMARY KEY, release, beat_at, pid, hostname, "
            "state. Set BOTKIT_HEARTBEAT_TABLE to another table (and the deploy's "
            "health_check_heartbeat_table to the same name)") from exc


async def try_poller_lock(conn: psycopg.AsyncConnection, bot_id: int) -> bool:
    """A session-level advisory lock per bot: held until the session ends."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                             (POLLER_LOCK.format(bot_id=bot_id),))
    row = await cur.fetchone()
    return bool(row and row[0])


async def read_offset(conn: psycopg.AsyncConnection, bot_id: int) -> int:
    cur = await conn.execute("SELECT next_offset FROM botkit_offsets WHERE bot_id = %s", (bot_id,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def save_offset(conn: psycopg.AsyncConnection, bot_id: int, next_offset: int) -> None:
    await conn.execute(
        "INSERT INTO botkit_offsets (bot_id, next_offset) VALUES (%s, %s) "
        "ON CONFLICT (bot_id) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
        (bot_id, next_offset))


async def claim_webhook_update(conn: psycopg.AsyncConnection, bot_id: int, update_id: int) -> bool:
    """Record a webhook update as processed (in the handler's transaction); False: it was."""
    cur = await conn.execute(
        "INSERT INTO botkit_webhook_updates (bot_id, update_id) VALUES (%s, %s) "
        "ON CONFLICT DO NOTHING", (bot_id, update_id))
    return cur.rowcount == 1


async def prune_webhook_updates(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("DELETE FROM botkit_webhook_updates WHERE processed_at < now() - %s::interval",
                       (KEEP_WEBHOOK_UPDATES,))


async def write_heartbeat(conn: psycopg.AsyncConnection, table: str, service: str, release: str,
                          state: str) -> None:
    await conn.execute(
        f"INSERT INTO {table} (service, release, beat_at, pid, hostname, state) "  # noqa: S608 (checked name)
        "VALUES (%s, %s, now(), %s, %s, %s) ON CONFLICT (service) DO UPDATE SET "
        "release = EXCLUDED.release, beat_at = EXCLUDED.beat_at, pid = EXCLUDED.pid, "
        "hostname = EXCLUDED.hostname, state = EXCLUDED.state",
        (service, release, os.getpid(), socket.gethostname(), state))


class Pool:
    """At most ``size`` connections for webhook updates, kept open between requests."""

    def __init__(self, url: str, purpose: str, size: int) -> None:
        self.url, self.purpose = url, purpose
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots = asyncio.Semaphore(size)

    async def get(self) -> psycopg.AsyncConnection:
        await self._slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if usable(conn):
                    return conn
            return await connect(self.url, self.purpose)
        except BaseException:
            self._slots.release()
            raise

    async def put(self, conn: psycopg.AsyncConnection) -> None:
        try:
            if usable(conn) and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                self._idle.append(conn)
            else:
                await conn.close()
        finally:
            self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
