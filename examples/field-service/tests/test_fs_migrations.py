from __future__ import annotations

import subprocess
import sys

from fs_support import PROJECT, alembic, query


def tables(url: str) -> set[str]:
    return {r[0] for r in query(url, "SELECT tablename FROM pg_tables WHERE schemaname='public'")}


def columns(url: str, table: str) -> dict[str, tuple[str, str]]:
    rows = query(url, "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                      " WHERE table_name = %s", (table,))
    return {name: (dtype, nullable) for name, dtype, nullable in rows}


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    out = alembic("upgrade", "head", url=url)
    assert "Running upgrade  -> 0001" in out.stdout + out.stderr
    assert tables(url) == {"alembic_version", "heartbeats", "bot_offsets", "processed_updates"}
    assert query(url, "SELECT version_num FROM alembic_version") == [("0001",)]

    hb = columns(url, "heartbeats")
    assert hb["service"] == ("text", "NO") and hb["release"] == ("text", "NO")
    assert hb["beat_at"] == ("timestamp with time zone", "NO")
    assert hb["pid"][0] == "integer" and hb["hostname"][0] == "text" and hb["state"][0] == "text"
    assert columns(url, "bot_offsets") == {"service": ("text", "NO"),
                                           "next_offset": ("bigint", "NO")}
    pu = columns(url, "processed_updates")
    assert set(pu) == {"service", "update_id", "chat_id", "text", "processed_at", "release"}
    assert pu["update_id"][0] == "bigint" and pu["chat_id"][0] == "bigint"

    # the deploy tool's query, and the defaults
    query(url, "INSERT INTO heartbeats (service, release) VALUES ('s', 'r1')")
    rows = query(url, "SELECT service, release, EXTRACT(EPOCH FROM now()-beat_at) FROM heartbeats")
    assert rows[0][:2] == ("s", "r1") and 0 <= float(rows[0][2]) < 60
    query(url, "INSERT INTO processed_updates (service, update_id) VALUES ('s', 1)")
    assert query(url, "SELECT processed_at IS NOT NULL FROM processed_updates") == [(True,)]

    alembic("downgrade", "base", url=url)
    assert tables(url) == {"alembic_version"}
    assert query(url, "SELECT count(*) FROM alembic_version") == [(0,)]
    alembic("upgrade", "head", url=url)
    assert {"heartbeats", "bot_offsets", "processed_updates"} <= tables(url)


def test_concurrent_upgrades_are_serialized(empty_database_url: str) -> None:
    cmd = [sys.executable, "-m", "alembic", "upgrade", "head"]
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": empty_database_url}
    procs = [subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    assert sum("Running upgrade  -> 0001" in o for o in outs) == 1, outs
    assert query(empty_database_url, "SELECT version_num FROM alembic_version") == [("0001",)]


def test_migration_script_metadata() -> None:
    ns: dict[str, object] = {}
    exec((PROJECT / "migrations/versions/0001_initial.py").read_text(), ns)  # noqa: S102
    assert ns["revision"] == "0001" and ns["down_revision"] is None
