# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``restore [FILE | --name NAME]``: load a backup into a new database, then swap it in.

The live database is untouched until the new one loaded without an error
(``psql -v ON_ERROR_STOP=1``); the swap is two renames in one transaction
(the live one becomes ``<db>__before_<stamp>``, dropped afterwards unless
``--keep-old``). A load that fails drops the new database and leaves the
live one as it was. The caller stops the writers first (playbooks/restore.yml
does) and took a safety backup. Runs under the backup lock.
"""

from __future__ import annotations

import logging
import os
import time

from ..checksum import verify_checksum
from ..configuration import db_namespace, load_config
from ..encryption import KeyPipes, read_identity
from ..errors import BackupError
from ..execute import run_stream
from ..files import now_text
from ..lock import DEFAULT_LOCK_FILE, DEFAULT_LOCK_TIMEOUT, BackupLock
from ..names import check_request_name
from ..pipelines import source_stages
from ..postgresql import database_exists, load_stage, psql, quote_ident, quote_literal
from ..progress import Progress
from ..signals import disarm_signals, signals_deferred
from ..status import record
from .locate import locate

log = logging.getLogger(__name__)


def _fill_from_config(args, config: dict | None) -> None:
    """Options not given on the command line come from the configuration."""
    if config:
        base = db_namespace(config)
        for key in ("db_container", "db_host", "db_port", "pg_image", "network", "db_user",
                    "db_name", "lock_file", "status_file"):
            if getattr(args, key, None) in (None, ""):
                setattr(args, key, getattr(base, key))
        if args.lock_timeout is None:
            args.lock_timeout = base.lock_timeout
    if args.lock_timeout is None:
        args.lock_timeout = DEFAULT_LOCK_TIMEOUT
    if not args.db_user or not args.db_name or not (args.db_container or args.db_host):
        raise BackupError("restore needs the database: --config, or --db-container/--db-host, "
                          "--db-user and --db-name")


def _create_like(args, live: str, new: str) -> bool:
    """CREATE DATABASE new (template0, the live one's encoding and collation);
    return whether the live database exists."""
    exists = database_exists(args, live)
    create = f"CREATE DATABASE {quote_ident(new)} TEMPLATE template0"
    if exists:
        info = psql(args, "postgres", "SELECT pg_encoding_to_char(encoding) || '|' || "
                                      "datcollate || '|' || datctype FROM pg_database "
                                      "WHERE datname = " + quote_literal(live))
        encoding, collate, ctype = info.split("|")
        create += (f" ENCODING {quote_literal(encoding)} LC_COLLATE {quote_literal(collate)}"
                   f" LC_CTYPE {quote_literal(ctype)}")
    psql(args, "postgres", create)
    return exists


def run(args) -> dict:
    """Load a backup into a new database, then swap it for the live one."""
    if args.name:
        check_request_name(args.name)  # before anything, even the configuration
    identity = read_identity(args)  # a secret file is read (and removed) at once
    with Progress(getattr(args, "progress_file", None)) as progress:
        return _restore(args, identity, progress)


def _restore(args, identity: bytes | None, progress: Progress) -> dict:
    config = load_config(args.config) if args.config else None
    _fill_from_config(args, config)
    if args.name:
        if config is None:
            raise BackupError("--name needs --config (to know the folders)")
        progress.note("finding the backup (a cloud copy is downloaded)")
        path = locate(config, args.name)["path"]
    else:
        path = os.path.abspath(args.file)
    progress.note("checking the backup's checksum")
    digest, _sidecar = verify_checksum(path)
    stamp = time.strftime("%Y%m%d%H%M%S")
    live = args.db_name
    new = f"{live}__restore_{stamp}"[:63]
    old = f"{live}__before_{stamp}"[:63]
    started = time.monotonic()
    progress.note("waiting for the backup lock (another backup runs)")
    with BackupLock(args.lock_file or DEFAULT_LOCK_FILE, args.lock_timeout,
                    what=f"restore {os.path.basename(path)} into {live}"):
        exists = _create_like(args, live, new)
        swapped = False
        try:
            log.info("loading %s into the new database %s", path, new)
            with KeyPipes() as keys:
                stages = source_stages(path, identity, keys)
                stages.append(load_stage(args, new))
                progress.count("of SQL loaded")
                _bytes, _tail, tapped = run_stream(stages, progress)
                sql_bytes = tapped.get(stages[-2].name, 0)
            loaded = time.monotonic() - started
            progress.note("swapping the databases")
            disarm_signals()
            if exists:
                _swap(args, live, new, old)
            else:
                psql(args, "postgres", f"ALTER DATABASE {quote_ident(new)} RENAME TO "
                                       f"{quote_ident(live)}")
            swapped = True
        finally:
            if not swapped:
                with signals_deferred():
                    try:
                        psql(args, "postgres", f"DROP DATABASE IF EXISTS {quote_ident(new)}")
                    except BackupError as exc:
                        log.warning("could not drop %s: %s", new, exc)
        kept_old = None
        if exists:
            if args.keep_old:
                kept_old = old
                psql(args, "postgres", f"ALTER DATABASE {quote_ident(old)} "
                                       "WITH ALLOW_CONNECTIONS true")
            else:
                try:
                    psql(args, "postgres", f"DROP DATABASE {quote_ident(old)}", timeout=600)
                except BackupError as exc:
                    log.warning("the old database %s is still there: %s", old, exc)
                    kept_old = old
    seconds = time.monotonic() - started
    log.info("restored %s into %s (%d bytes of SQL, loaded in %.1fs, %.1fs in all)", path, live,
             sql_bytes, loaded, seconds)
    record(args.status_file, "last_restore", {
        "time": now_text(), "file": path, "sha256": digest, "db": live,
        "seconds": round(seconds, 1), "previous_db_kept_as": kept_old})
    return {"file": path, "name": os.path.basename(path), "db": live, "sql_bytes": sql_bytes,
            "seconds": round(seconds, 3), "load_seconds": round(loaded, 3),
            "previous_db_kept_as": kept_old}


def _swap(args, live: str, new: str, old: str, attempts: int = 20) -> None:
    """Rename live -> old and new -> live in one transaction."""
    psql(args, "postgres", f"ALTER DATABASE {quote_ident(live)} WITH ALLOW_CONNECTIONS false")
    try:
        for attempt in range(attempts):
            psql(args, "postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   f"WHERE datname = {quote_literal(live)} "
                                   "AND pid <> pg_backend_pid()")
            try:
                psql(args, "postgres", f"BEGIN; ALTER DATABASE {quote_ident(live)} RENAME TO "
                                       f"{quote_ident(old)}; ALTER DATABASE {quote_ident(new)} "
                                       f"RENAME TO {quote_ident(live)}; COMMIT;")
                return
            except BackupError as exc:
                if "being accessed by other users" not in str(exc) or attempt == attempts - 1:
                    raise
                time.sleep(0.5)
    except BaseException:
        with signals_deferred():
            try:
                psql(args, "postgres", f"ALTER DATABASE {quote_ident(live)} "
                                       "WITH ALLOW_CONNECTIONS true")
            except BackupError as exc:
                log.warning("could not allow connections to %s again: %s", live, exc)
        raise
