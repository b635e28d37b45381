"""The webhook's connection pool: connections reused, and capped."""

from __future__ import annotations

import threading
import time

import pytest
from field_service import db
from fs_support import query


def open_connections(url: str, name: str) -> int:
    return query(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))[0][0]


def test_connections_are_reused_and_never_more_than_max_size(database_url: str) -> None:
    pool = db.ConnectionPool(database_url, "pooltest", max_size=2, wait=0.3)
    try:
        a, b = pool.get(), pool.get()
        assert open_connections(database_url, "pooltest") == 2
        started = time.monotonic()
        with pytest.raises(db.PoolExhausted):
            pool.get()  # a third would exceed the cap: it waits, then gives up
        assert 0.25 <= time.monotonic() - started < 2
        assert isinstance(db.PoolExhausted("x"), db.DbError)  # handled like a database error

        got = []
        waiter = threading.Thread(target=lambda: got.append(pool.get()))
        waiter.start()  # waits for a connection given back...
        time.sleep(0.1)
        pool.put(a)
        waiter.join(2)
        assert got == [a]  # ... and gets that very connection
        pool.put(b)
        pool.put(got[0])
        for _ in range(5):  # reused, not reopened
            pool.put(pool.get())
        assert open_connections(database_url, "pooltest") == 2
    finally:
        pool.close()
    # the backends exit a moment after their connections are closed
    deadline = time.monotonic() + 5
    while open_connections(database_url, "pooltest") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections(database_url, "pooltest") == 0


def test_a_broken_connection_is_replaced(database_url: str) -> None:
    pool = db.ConnectionPool(database_url, "pooltest2", max_size=1, wait=0.3)
    try:
        conn = pool.get()
        conn.close()
        pool.put(conn)  # closed: dropped, its slot freed
        fresh = pool.get()
        assert fresh is not conn and not fresh.closed
        pool.put(fresh)
    finally:
        pool.close()
