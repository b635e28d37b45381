# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``dump``: take one backup (the pre-deploy and safety backups; ``run`` too).

What a dump does
----------------
1. Take the server-wide lock (fcntl.flock on --lock-file; the holder writes
   its pid and start time into it so a waiting or failing run can say who
   holds it). Then delete stale ``.<name>.partial`` files in --dest-dir that
   are older than the lock we now hold: they are left by a run that was
   SIGKILLed (with the lock held nothing else can be writing them).
2. Run the pipeline ``pg_dump | compressor`` (a list of ``Stage``s) and read
   its output in Python, which hashes it (SHA-256) and writes it to
   ``<dest>/.<name>.partial`` (0600). Nothing uncompressed touches the disk.
   pg_dump's own output passes through a Python tap that keeps its last bytes:
   the plain-SQL dump must end with pg_dump's "dump complete" trailer. This
   matters because a killed ``docker exec`` client exits 0.
3. fsync the file and check the exit status of EVERY stage.
4. Write the sidecar ``<name>.sha256`` (``sha256sum`` format, atomically),
   then rename the partial file to ``<name>`` and fsync the directory. The
   sidecar is written before the rename so that a file under a final name
   always has its sidecar (a crash in between leaves at worst a sidecar
   without a backup, which the next run deletes).
5. With --rotate-keep/--rotate-max-age (``run`` passes the schedule's), rotate
   --dest-dir by the rules (``actions/rotate.py``), still under the lock.
On any failure (a stage exits non-zero, SIGTERM/SIGINT/SIGHUP, ENOSPC, an
exception) the other stages are killed, the partial file is deleted, older
backups are left alone and one line ``fs_backup: ERROR: ...`` goes to stderr.
A pg_dump that outlives a killed ``docker exec`` client inside the database
container (it would, e.g. while waiting for a table lock) is ended with
``pg_terminate_backend`` on its unique application_name; a one-off
``docker run`` container is removed with ``docker rm -f -v`` (with the anonymous
volume of the image, if it declares one).

pg_dump options
---------------
Plain SQL with ``--no-owner --no-privileges --encoding=UTF8``, no --clean
and no --create: the dump is meant for ``psql -v ON_ERROR_STOP=1`` into a
fresh, empty database. Whatever role runs the restore (normally the app's
own user, which owns the new database) becomes the owner of every object;
GRANTs to other roles are not kept (the app uses a single role). Recent
pg_dump releases put ``\\restrict``/``\\unrestrict`` lines around the dump:
restore with a psql of the same or a newer minor release.
"""

from __future__ import annotations

import logging
import os
import sys
import time

from ..encryption import read_secret_file
from ..errors import BackupError
from ..execute import run_pipeline
from ..files import ensure_dir, now_text
from ..lock import BackupLock, clean_stale_files
from ..monitoring import ping
from ..names import ENCRYPTED_SUFFIX, check_name, render_name
from ..pipelines import build_stages
from ..progress import Progress
from ..signals import disarm_signals
from ..status import record
from .rotate import rotate_folder

log = logging.getLogger(__name__)


def run(args) -> dict:
    """Take one backup; return the result dict (printed with --json)."""
    # Passed on to pg_dump by name (-e PGPASSWORD), never in an argv.
    if getattr(args, "db_password_stdin", False):
        os.environ["PGPASSWORD"] = sys.stdin.readline().rstrip("\n")
    elif getattr(args, "db_password_file", None):
        data = read_secret_file(args.db_password_file, "the password file",
                                getattr(args, "remove_secret_files", False))
        os.environ["PGPASSWORD"] = data.decode("utf-8").split("\n", 1)[0]
    with Progress(getattr(args, "progress_file", None)) as progress:
        return _dump(args, progress)


def _dump(args, progress: Progress) -> dict:
    dest_dir = os.path.abspath(args.dest_dir)
    where = (f"container {args.db_container}" if args.db_container
             else f"{args.db_host}:{args.db_port}")
    # Encryption problems (no tool, no key) stop the run before anything.
    stages = build_stages(args)
    ensure_dir(dest_dir)
    lock = BackupLock(args.lock_file, args.lock_timeout,
                      what=f"dump {args.db_name} to {dest_dir}")
    plan = None
    progress.note("waiting for the backup lock (another backup runs)")
    with lock:
        clean_stale_files(dest_dir, lock.acquired_at)
        name = args.name or render_name(args.name_format, time.time(), args.utc)
        if args.encrypt != "none" and not name.endswith(ENCRYPTED_SUFFIX):
            name += ENCRYPTED_SUFFIX
        check_name(name)
        path = os.path.join(dest_dir, name)
        log.info("dumping database %s (%s) to %s", args.db_name, where, path)
        log.info("pipeline: %s", " | ".join(
            stage.name if stage.name == "age" else stage.describe() for stage in stages))
        progress.count("written")
        result = run_pipeline(stages, path, replace=bool(getattr(args, "replace", False)),
                              progress=progress)
        # The backup is out: a late signal no longer changes the outcome.
        disarm_signals()
        sql = result.tapped_bytes.get("pg_dump")
        log.info("wrote %s (%d bytes%s, sha256 %s) in %.1fs", path, result.bytes,
                 f" from {sql} bytes of SQL" if sql is not None else "",
                 result.sha256, result.seconds)
        summary = {"path": path, "name": name, "bytes": result.bytes,
                   "sha256": result.sha256, "seconds": round(result.seconds, 3),
                   "db": args.db_name, "compress": args.compress,
                   "encrypted": args.encrypt != "none"}
        record(args.status_file, "last_success", {
            "time": now_text(), "file": path, "bytes": result.bytes,
            "seconds": round(result.seconds, 3), "sha256": result.sha256})
        # Rotation only now that a new backup succeeded, and under the lock.
        if getattr(args, "rotate_keep", None):
            try:
                plan = rotate_folder(dest_dir, args.name_format, args.rotate_keep,
                                     args.rotate_max_age, args.utc)
            except (OSError, BackupError) as exc:
                raise BackupError(f"backup {name} was written, but the rotation of {dest_dir} "
                                  f"failed: {exc}") from exc
    if plan is not None:
        summary["rotation"] = plan.as_dict()
    ping(getattr(args, "ping_url", None), True, f"backup {name} written ({result.bytes} bytes)")
    return summary
