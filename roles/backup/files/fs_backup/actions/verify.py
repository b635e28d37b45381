# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``verify [FILE | --newest [--schedule NAME]]``: read a backup back and load it into a scratch database.

Checksum, decryption (with the identity on stdin), decompression, and a
load with ``ON_ERROR_STOP`` into a throw-away PostgreSQL container with no
network, which is removed afterwards. The result goes to ``last_verify``
in the status file. An encrypted backup without the key (the server holds
none, by design) can only be checked partially: with ``--allow-partial``
(the weekly cron job) the checksum and the age header.

With ``--compare`` (a restore drill) the rows of each table of the loaded
copy are compared with the live database's: a table missing on either side,
or a count that differs by more than ``--tolerance`` percent of the
backup's (the live database went on after the backup), fails the verify,
naming what differs. With ``--schedule`` the newest backup of that schedule's
folder is taken, and the result is also kept as that schedule's
``last_verify``.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from ..checksum import verify_checksum
from ..compression import backup_kind
from ..configuration import db_namespace, known_dirs, load_config
from ..encryption import AGE_HEADER, KeyPipes, read_identity
from ..errors import BackupError
from ..execute import run_stream
from ..files import now_text
from ..monitoring import ping, tell
from ..names import ENCRYPTED_SUFFIX, SIDECAR_SUFFIX
from ..pipelines import source_stages
from ..postgresql import load_stage, psql, remove_container, start_scratch
from ..status import record

log = logging.getLogger(__name__)

_TABLES_SQL = ("SELECT count(*) FROM pg_catalog.pg_tables WHERE "
               "schemaname NOT IN ('pg_catalog', 'information_schema')")
# each table and its rows, one per line: "schema.table|rows"
_COUNTS_SQL = ("SELECT format('%I.%I', schemaname, tablename), (xpath('/row/c/text()', "
               "query_to_xml(format('SELECT count(*) AS c FROM %I.%I', schemaname, tablename), "
               "false, true, '')))[1]::text FROM pg_catalog.pg_tables "
               "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1")
_ROWS_SQL = ("SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml("
             "format('SELECT count(*) AS c FROM %I.%I', schemaname, "
             "tablename), false, true, '')))[1]::text::bigint), 0) FROM "
             "pg_catalog.pg_tables WHERE schemaname NOT IN "
             "('pg_catalog', 'information_schema')")


def newest_backup(config: dict, schedule: str | None = None) -> str:
    """The backup with the newest file time, over every known folder (or the schedule's)."""
    newest, newest_mtime = None, -1.0
    for key, directory in known_dirs(config):
        if schedule and key != schedule:
            continue
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            continue
        for entry in entries:
            if (entry.name.startswith(".") or entry.name.endswith(SIDECAR_SUFFIX)
                    or not entry.is_file(follow_symlinks=False)):
                continue
            try:
                backup_kind(entry.name)
            except BackupError:
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
            if mtime > newest_mtime:
                newest, newest_mtime = entry.path, mtime
    if newest is None:
        raise BackupError("there is no backup to verify" + (f" in the {schedule} folder" if schedule else ""))
    return newest


def parse_counts(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        name, sep, rows = line.rpartition("|")
        if sep:
            out[name] = int(rows or 0)
    return out


def compare_counts(backup: dict, live: dict, tolerance_pct: float) -> list:
    """What differs between the rows per table of the copy and of the live
    database: a table missing on one side, or a count off by more than
    ``tolerance_pct`` percent of the backup's (at least one row when it is 0)."""
    differ = []
    for table in sorted(set(backup) | set(live)):
        if table not in live:
            differ.append({"table": table, "backup": backup[table], "live": None})
        elif table not in backup:
            differ.append({"table": table, "backup": None, "live": live[table]})
        else:
            allowed = backup[table] * tolerance_pct / 100.0
            if abs(live[table] - backup[table]) > allowed:
                differ.append({"table": table, "backup": backup[table], "live": live[table]})
    return differ


def _differences_text(differ: list, tolerance_pct: float) -> str:
    def one(d):
        if d["live"] is None:
            return f"{d['table']} is not in the live database ({d['backup']} rows in the backup)"
        if d["backup"] is None:
            return f"{d['table']} is not in the backup ({d['live']} rows live)"
        return f"{d['table']}: {d['backup']} rows in the backup, {d['live']} live"
    shown = "; ".join(one(d) for d in differ[:5])
    if len(differ) > 5:
        shown += f"; and {len(differ) - 5} more"
    return f"the copy differs from the live database beyond {tolerance_pct:g} %: {shown}"


def _checksum_and_header_only(path: str, digest: str, entry: dict, status: str | None) -> dict:
    with open(path, "rb") as handle:
        header = handle.read(len(AGE_HEADER))
    if header != AGE_HEADER:
        raise BackupError(f"{path} does not start with an age header")
    note = ("encrypted and this server holds no private key (by design): only the "
            "checksum and the age header were checked; run playbooks/verify_backup.yml "
            "for a full check with the key from Vault")
    # By design and asked for (--allow-partial): not a warning, so that the
    # weekly cron job does not mail every week.
    log.info("%s: %s", path, note)
    entry.update({"result": "ok", "level": "checksum", "sha256": digest, "note": note})
    record(status, "last_verify", entry)
    return entry


def run(args) -> dict:
    """Checksum, decrypt, decompress and load into a scratch database, then drop it."""
    config = load_config(args.config) if args.config else None
    schedule = getattr(args, "schedule", None)
    path = os.path.abspath(args.file) if args.file else newest_backup(config or {}, schedule)
    if getattr(args, "no_notify", False) and config:
        config = dict(config, notify={})
    if getattr(args, "compare", False) and not config:
        raise BackupError("--compare needs --config (the live database's settings)")
    conf, conf_db = config or {}, (config or {}).get("db") or {}
    status = args.status_file or conf.get("status_file")
    image = args.pg_image or conf.get("verify_image") or conf_db.get("pg_image")
    user = args.db_user or conf_db.get("user") or "postgres"
    db = args.db_name or conf_db.get("name") or "postgres"
    started = time.monotonic()
    entry = {"time": now_text(), "file": path}
    try:
        digest, _sidecar = verify_checksum(path)
        identity = read_identity(args)
        if path.endswith(ENCRYPTED_SUFFIX) and identity is None:
            if not args.allow_partial:
                raise BackupError(f"{os.path.basename(path)} is encrypted: the age private key is "
                                  "needed to verify it (from Vault, --identity-stdin)")
            return _checksum_and_header_only(path, digest, entry, status)
        if not image:
            raise BackupError("no image for the scratch database (--pg-image)")
        container = start_scratch(image, user, db)
        try:
            scratch = argparse.Namespace(db_user=user, db_container=container)
            with KeyPipes() as keys:
                stages = source_stages(path, identity, keys)
                stages.append(load_stage(scratch, db))
                run_stream(stages)
            tables = int(psql(scratch, db, _TABLES_SQL))
            rows = psql(scratch, db, _ROWS_SQL, timeout=3600)
            counts = (parse_counts(psql(scratch, db, _COUNTS_SQL, timeout=3600))
                      if getattr(args, "compare", False) else None)
        finally:
            remove_container(container)
        entry.update({"result": "ok", "level": "full", "sha256": digest, "tables": tables,
                      "rows": int(rows or 0), "seconds": round(time.monotonic() - started, 1)})
        if counts is not None:
            live_args = db_namespace(config)
            live = parse_counts(psql(live_args, live_args.db_name, _COUNTS_SQL, timeout=3600))
            tolerance = float(getattr(args, "tolerance", 10.0))
            differ = compare_counts(counts, live, tolerance)
            entry["compare"] = {"tables": len(counts), "tolerance_pct": tolerance, "differ": differ}
            if differ:
                raise BackupError(_differences_text(differ, tolerance))
        log.info("verified %s: checksum, %s, loaded into a scratch database with errors fatal "
                 "(%d tables, %s rows) in %.1fs", path,
                 "decrypted" if path.endswith(ENCRYPTED_SUFFIX) else "not encrypted",
                 tables, rows, time.monotonic() - started)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        entry.update({"result": "failed", "error": message})
        record(status, "last_verify", entry)
        if schedule:
            record(status, "last_verify", entry, schedule)
        if config:
            ping(config.get("ping_url"), False, f"verify of {path} failed: {message}")
            tell(config, "verify_failure", f"verify of {path} failed: {message}",
                 who=getattr(args, "who", None) or "scheduled job")
        raise
    record(status, "last_verify", entry)
    if schedule:
        record(status, "last_verify", entry, schedule)
    if config:
        tell(config, "verify_success", f"{os.path.basename(path)}: {entry['tables']} tables, "
             f"{entry['rows']} rows loaded in {entry['seconds']} s",
             who=getattr(args, "who", None) or "scheduled job")
    return entry
