# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The command line of the backup program: argparse, logging, main().

Usage
-----
  fs-backup dump --db-user USER --db-name DB --dest-dir DIR
                 (--db-container NAME | --db-host HOST --pg-image IMAGE
                  [--db-port PORT] [--network NET]) [options]
  fs-backup run {daily|weekly|monthly} --config PATH     (what cron runs)
  fs-backup rotate --config PATH [--schedule NAME ...] [--cloud] [--dry-run]
                   [--now YYYY-MM-DDTHH:MM:SS]
  fs-backup check-config --config PATH|-
  fs-backup verify [FILE | --newest] [--config PATH] [--allow-partial]
  fs-backup check FILE [--identity-stdin | --identity-file PATH]
  fs-backup restore [FILE | --name NAME] [--config PATH] [--keep-old]
  fs-backup locate NAME --config PATH [--no-fetch]
  fs-backup list --config PATH [--no-checksum] [--cloud]
  fs-backup cloud-rotate --config PATH [--dry-run] [--now TIME]   (= the cloud part of rotate)
  fs-backup verify-checksum FILE [--sidecar PATH]
(``fs-backup <command> --help`` has every option of each; every command takes
--json, --log-file PATH and --quiet. ``python3 -m fs_backup`` is the same.)

``dump`` options (default in brackets):
  --db-container NAME   the database runs in this container; pg_dump runs in it
                        with ``docker exec`` over the local socket.
  --db-host HOST        external PostgreSQL: pg_dump runs in a one-off
                        ``docker run --rm`` container of --pg-image.
  --db-port PORT        [5432] with --db-host only.
  --pg-image IMAGE      image with a pg_dump at least as new as the server;
                        required with --db-host.
  --network NET         Docker network of the one-off container [Docker's
                        default]; with --db-host only.
  --db-user USER        (required) role pg_dump connects as.
  --db-name DB          (required) database to dump.
  PGPASSWORD            (environment, never argv) the password, or the first
                        line of stdin with --db-password-stdin, or of the file
                        --db-password-file PATH; when set and
                        not empty it is passed on by name (``-e PGPASSWORD``)
                        in both modes (a container's local socket usually
                        needs none).
  --dest-dir DIR        (required) folder of the backups; created 0700.
  --name NAME           file name of the backup, or
  --name-format FMT     strftime format of the name
                        [backup_%Y%m%d_%H%M%S.sql.gz; .sql.zst with zstd,
                        .sql with none]. The name is taken once the lock is
                        held, so it is the time the dump really started.
  --utc                 format the name in UTC [local time].
  --compress KIND       gzip | zstd | none [gzip]. gzip runs ``pigz -p N``
                        when pigz is installed, else ``gzip``; both write
                        plain gzip (``gunzip -c`` reads it).
  --level N             compression level [gzip 5 (1-9), zstd 3 (1-19)].
  --threads N           pigz/zstd threads [all the CPUs; the compressor runs niced].
  --encrypt age         encrypt to --recipient / --recipients-file public keys
                        [none]; fails closed.
  --lock-file PATH      [/opt/backups/.fs_backup.lock] one lock for EVERY
                        backup of the server (the role passes
                        <app_backup_root>/.fs_backup.lock).
  --lock-timeout SECS   [600] how long to wait for a running backup.
  --status-file PATH    JSON with last_success / last_failure [none].
  --log-file PATH       append log lines here too [stderr only].
  --progress-file PATH  (dump and restore) keep the bytes written or loaded
                        so far in this JSON file, for the deploy's console.
  --remove-secret-files (dump and restore) delete --db-password-file and
                        --identity-file once read.
  --json                print the result as JSON on stdout.

Exit codes
----------
  0  success (dump: backup published; verify-checksum: checksum matches;
     check-config: the configuration is usable)
  1  failure (a stage failed, disk full, I/O error, checksum mismatch, ...)
  2  usage error; check-config: a setting that cannot be used
  3  dump, run, restore, rotate: another backup held the lock for longer than
     the lock timeout
  4  run: the backup was written, but its cloud copy failed
  128+N  stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP)

Every failure ends with ONE stderr line ``fs_backup: ERROR: <message>`` (the
playbooks show it); log lines are ``YYYY-mm-dd HH:MM:SS fs_backup LEVEL ...``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import PROG
from .actions import (
    check,
    check_config,
    cloud_rotate,
    dump,
    locate,
    restore,
    rotate,
    run,
    verify,
    verify_checksum,
    watch,
)
from .actions import list as list_backups
from .compression import COMPRESS_SUFFIXES, DEFAULT_LEVELS, LEVEL_RANGES, default_threads
from .configuration import config_value
from .errors import EXIT_FAILED, EXIT_OK, BackupError
from .files import ensure_dir, now_text
from .lock import DEFAULT_LOCK_FILE, DEFAULT_LOCK_TIMEOUT
from .monitoring import ping
from .names import DEFAULT_NAME_STEM
from .signals import disarm_signals, install_signal_handlers, pending_signal
from .status import update_status

# The package's logger: every module logs to a child of it (``__name__``).
log = logging.getLogger(__name__.rpartition(".")[0] or PROG)

DEFAULT_NAME_FORMAT = DEFAULT_NAME_STEM + COMPRESS_SUFFIXES["gzip"]
NOW_FORMAT = "%Y-%m-%dT%H:%M:%S"

COMMANDS = {
    "dump": dump.run,
    "run": run.run,
    "rotate": rotate.run,
    "check-config": check_config.run,
    "verify": verify.run,
    "check": check.run,
    "restore": restore.run,
    "locate": locate.run,
    "list": list_backups.run,
    "cloud-rotate": cloud_rotate.run,
    "verify-checksum": verify_checksum.run,
    "watch": watch.run,
}


# --------------------------------------------------------------------------
# Logging


class _OneLineFormatter(logging.Formatter):
    def format(self, record):
        return " | ".join(super().format(record).splitlines())


class _NotFileOnly(logging.Filter):
    def filter(self, record):
        return not getattr(record, "file_only", False)


class _Quiet(logging.Filter):
    def filter(self, record):
        return record.levelno >= logging.WARNING


class _LogFileHandler(logging.StreamHandler):
    """The log file: a line that cannot be written (a full disk, the very
    fault being reported) is dropped with one short note on stderr, not a
    traceback in the middle of the program's own error line."""

    _noted = False

    def handleError(self, record):  # noqa: N802 - logging's name
        if not _LogFileHandler._noted:
            _LogFileHandler._noted = True
            exc = sys.exc_info()[1]
            sys.stderr.write(f"{PROG}: cannot write the log file: {exc}\n")


def setup_logging(log_file: str | None, quiet: bool = False) -> None:
    """``YYYY-mm-dd HH:MM:SS fs_backup LEVEL message`` to stderr (+ log file)."""
    formatter = _OneLineFormatter(f"%(asctime)s {PROG} %(levelname)s %(message)s",
                                  "%Y-%m-%d %H:%M:%S")
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    stderr.addFilter(_NotFileOnly())  # the final error has its own stderr line
    if quiet:
        stderr.addFilter(_Quiet())
    log.addHandler(stderr)
    if log_file:
        ensure_dir(os.path.dirname(os.path.abspath(log_file)))
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        handler = _LogFileHandler(os.fdopen(fd, "a", encoding="utf-8"))
        handler.setFormatter(formatter)
        log.addHandler(handler)


# --------------------------------------------------------------------------
# Arguments


def _timestamp(text: str) -> datetime.datetime:
    try:
        return datetime.datetime.strptime(text, NOW_FORMAT)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not YYYY-MM-DDTHH:MM:SS") from None


def _add_db_options(parser, required: bool = True) -> None:
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--db-container", metavar="NAME",
                       help="container the database runs in (docker exec)")
    where.add_argument("--db-host", metavar="HOST",
                       help="external database host (a one-off docker run container)")
    parser.add_argument("--db-port", type=int, metavar="PORT",
                        help="port of --db-host (default 5432)")
    parser.add_argument("--pg-image", metavar="IMAGE",
                        help="image with pg_dump/psql, required with --db-host")
    parser.add_argument("--network", metavar="NET",
                        help="Docker network for --db-host (default: Docker's default)")
    parser.add_argument("--db-user", required=required, metavar="USER")
    parser.add_argument("--db-name", required=required, metavar="DB")


def _add_identity_options(parser) -> None:
    key = parser.add_mutually_exclusive_group()
    key.add_argument("--identity-stdin", action="store_true",
                     help="read the age private key from stdin (never written to disk)")
    key.add_argument("--identity-file", metavar="PATH",
                     help="age identity file (prefer --identity-stdin)")


def _add_run_options(parser) -> None:
    """What a watched run (the deploy's backup, a restore) takes besides its work."""
    parser.add_argument("--progress-file", metavar="PATH",
                        help="keep what the run has done so far in this JSON file "
                             "(bytes written or loaded; rewritten once a second)")
    parser.add_argument("--remove-secret-files", action="store_true",
                        help="delete --identity-file / --db-password-file as soon as they are "
                             "read (files written for this one run)")


def _add_dump_parser(sub, common) -> None:
    dump_parser = sub.add_parser("dump", parents=[common], help="dump the database",
                                 description="pg_dump | compressor [| age] -> <dest-dir>/<name> "
                                             "+ <name>.sha256")
    _add_db_options(dump_parser)
    dump_parser.add_argument("--dest-dir", required=True, metavar="DIR",
                             help="folder of the backups (created 0700)")
    naming = dump_parser.add_mutually_exclusive_group()
    naming.add_argument("--name", metavar="NAME", help="file name of the backup")
    naming.add_argument("--name-format", metavar="FMT",
                        help="strftime name (default " + DEFAULT_NAME_FORMAT.replace("%", "%%")
                             + "; .sql.zst for zstd, .sql for none; .age added when encrypted)")
    dump_parser.add_argument("--utc", action="store_true", help="format the name in UTC")
    dump_parser.add_argument("--compress", choices=sorted(COMPRESS_SUFFIXES), default="gzip",
                             help="default gzip (pigz when installed)")
    dump_parser.add_argument("--level", type=int, metavar="N",
                             help="compression level (default gzip 6, zstd 3)")
    dump_parser.add_argument("--threads", type=int, metavar="N", default=default_threads(),
                             help="pigz/zstd threads (default all the CPUs; it runs niced)")
    dump_parser.add_argument("--encrypt", choices=["none", "age"], default="none",
                             help="encrypt to age recipients (public keys); fails closed")
    dump_parser.add_argument("--recipient", action="append", metavar="AGE_PUBLIC_KEY",
                             help="age recipient (age1...), repeatable")
    dump_parser.add_argument("--recipients-file", action="append", metavar="PATH",
                             help="file of age recipients, repeatable")
    password = dump_parser.add_mutually_exclusive_group()
    password.add_argument("--db-password-stdin", action="store_true",
                          help="read the database password from the first line of stdin "
                               "(never in argv or in the environment of a command line)")
    password.add_argument("--db-password-file", metavar="PATH",
                          help="read the database password from the first line of this file")
    _add_run_options(dump_parser)
    dump_parser.add_argument("--replace", action="store_true",
                             help="replace a backup of the same name once the new one is complete")
    dump_parser.add_argument("--rotate-keep", type=int, metavar="N",
                             help="after success, rotate --dest-dir: keep the N newest ...")
    dump_parser.add_argument("--rotate-max-age", metavar="AGE",
                             help="... and everything younger than AGE (7d, 4w, 12m)")
    dump_parser.add_argument("--lock-file", metavar="PATH", default=DEFAULT_LOCK_FILE,
                             help=f"lock shared by every backup (default {DEFAULT_LOCK_FILE})")
    dump_parser.add_argument("--lock-timeout", type=float, metavar="SECONDS",
                             default=DEFAULT_LOCK_TIMEOUT,
                             help="wait this long for another backup (default 600)")
    dump_parser.add_argument("--status-file", metavar="PATH",
                             help="JSON file with last_success / last_failure")
    dump_parser.add_argument("--ping-url", metavar="URL",
                             help="POST here on success, to URL/fail on failure")


def _add_rotate_parsers(sub, common) -> None:
    rot = sub.add_parser("rotate", parents=[common], help="rotate the backup folders now",
                         description="the rotation rules on the configured folders (as run "
                                     "does after a backup), under the backup lock")
    rot.add_argument("--config", required=True, metavar="PATH")
    rot.add_argument("--schedule", action="append", metavar="NAME",
                     help="only this schedule's folder (daily, weekly, monthly), repeatable; "
                          "default all")
    rot.add_argument("--cloud", action="store_true", help="rotate the cloud copies too")
    rot.add_argument("--dry-run", action="store_true",
                     help="list what would be deleted, delete nothing, take no lock")
    rot.add_argument("--now", type=_timestamp, metavar="YYYY-MM-DDTHH:MM:SS",
                     help="rotate as at this time, on the clock of the names (local, or UTC "
                          "with the configuration's utc)")

    cloud = sub.add_parser("cloud-rotate", parents=[common], help="rotate the cloud copies",
                           description="the cloud part of rotate --cloud")
    cloud.add_argument("--config", required=True, metavar="PATH")
    cloud.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    cloud.add_argument("--now", type=_timestamp, metavar="YYYY-MM-DDTHH:MM:SS",
                       help="rotate as at this time, on the clock of the names")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-file", metavar="PATH",
                        help="also append log lines to this file (0600)")
    common.add_argument("--quiet", action="store_true",
                        help="only warnings and errors on stderr (cron)")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    parser = argparse.ArgumentParser(
        prog="fs-backup", description="PostgreSQL backups for field-service.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_dump_parser(sub, common)

    run_parser = sub.add_parser("run", parents=[common], help="a scheduled backup (cron)",
                                description="dump + rotate the schedule's folder, then copy to "
                                            "the cloud and rotate there (as configured)")
    run_parser.add_argument("schedule", metavar="SCHEDULE", help="daily, weekly or monthly")
    run_parser.add_argument("--config", required=True, metavar="PATH")
    run_parser.add_argument("--no-notify", action="store_true",
                            help="do not tell the notification channels (a run by hand whose "
                                 "playbook tells them)")

    _add_rotate_parsers(sub, common)

    watched = sub.add_parser("watch", parents=[common], help="the dead-man check of the schedules (cron)",
                             description="tell the team (and the status file) about a schedule "
                                         "with no success for longer than its period plus the margin")
    watched.add_argument("--config", required=True, metavar="PATH")

    checked = sub.add_parser("check-config", parents=[common],
                             help="check a configuration before it is used",
                             description="exit 0 when the configuration is usable, 2 with one "
                                         "error line naming the setting")
    checked.add_argument("--config", required=True, metavar="PATH",
                         help="the configuration file, or - to read it from stdin")

    verify_parser = sub.add_parser("verify", parents=[common],
                                   help="checksum, decrypt, decompress, load into a scratch "
                                        "database")
    target = verify_parser.add_mutually_exclusive_group(required=True)
    target.add_argument("file", metavar="FILE", nargs="?")
    target.add_argument("--newest", action="store_true", help="the newest backup")
    verify_parser.add_argument("--config", metavar="PATH")
    verify_parser.add_argument("--pg-image", metavar="IMAGE", help="image of the scratch database")
    verify_parser.add_argument("--db-user", metavar="USER", help="role of the scratch database")
    verify_parser.add_argument("--db-name", metavar="DB", help="name of the scratch database")
    verify_parser.add_argument("--status-file", metavar="PATH")
    verify_parser.add_argument("--allow-partial", action="store_true",
                               help="encrypted and no key: check checksum and header only")
    verify_parser.add_argument("--schedule", metavar="NAME",
                               help="with --newest: the newest backup of this schedule's folder")
    verify_parser.add_argument("--compare", action="store_true",
                               help="compare the rows per table with the live database (--config)")
    verify_parser.add_argument("--tolerance", type=float, default=10.0, metavar="PERCENT",
                               help="with --compare: a count may differ this much (default 10)")
    verify_parser.add_argument("--no-notify", action="store_true",
                               help="do not tell the notification channels (its playbook does)")
    _add_identity_options(verify_parser)

    check_parser = sub.add_parser("check", parents=[common],
                                  help="checksum, decrypt and decompress a backup (no database)")
    check_parser.add_argument("file", metavar="FILE")
    _add_identity_options(check_parser)

    restore_parser = sub.add_parser("restore", parents=[common],
                                    help="load a backup into a new database and swap it in")
    source = restore_parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", metavar="FILE", nargs="?")
    source.add_argument("--name", metavar="NAME", help="a backup name, found like locate does")
    restore_parser.add_argument("--config", metavar="PATH")
    _add_db_options(restore_parser, required=False)
    restore_parser.add_argument("--keep-old", action="store_true",
                                help="keep the replaced database as <db>__before_<time>")
    restore_parser.add_argument("--lock-file", metavar="PATH")
    restore_parser.add_argument("--lock-timeout", type=float, metavar="SECONDS")
    restore_parser.add_argument("--status-file", metavar="PATH")
    _add_identity_options(restore_parser)
    _add_run_options(restore_parser)

    loc = sub.add_parser("locate", parents=[common],
                         help="find a backup by name (fetching it from the cloud)")
    loc.add_argument("name", metavar="NAME")
    loc.add_argument("--config", required=True, metavar="PATH")
    loc.add_argument("--no-fetch", action="store_true", help="do not download from the cloud")

    lst = sub.add_parser("list", parents=[common], help="list the backups")
    lst.add_argument("--config", required=True, metavar="PATH")
    lst.add_argument("--no-checksum", action="store_true", help="do not read the files")
    lst.add_argument("--cloud", action="store_true", help="list the cloud copies too")

    checksum = sub.add_parser("verify-checksum", parents=[common],
                              help="check a backup against its .sha256 sidecar")
    checksum.add_argument("file", metavar="FILE")
    checksum.add_argument("--sidecar", metavar="PATH", help="default FILE.sha256")
    return parser


def _check_dump_args(parser, args) -> None:
    if args.db_container:
        for option, value in (("--db-port", args.db_port), ("--pg-image", args.pg_image),
                              ("--network", args.network)):
            if value is not None:
                parser.error(f"{option} only goes with --db-host")
    else:
        if not args.pg_image:
            parser.error("--db-host needs --pg-image (an image with pg_dump)")
        if args.db_port is None:
            args.db_port = 5432
    if args.compress == "none":
        if args.level is not None:
            parser.error("--level has no meaning with --compress none")
    else:
        if args.level is None:
            args.level = DEFAULT_LEVELS[args.compress]
        low, high = LEVEL_RANGES[args.compress]
        if not low <= args.level <= high:
            parser.error(f"--level for {args.compress} must be {low}..{high}")
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.lock_timeout < 0:
        parser.error("--lock-timeout must be >= 0")
    if (args.recipient or args.recipients_file) and args.encrypt == "none":
        parser.error("--recipient/--recipients-file need --encrypt age")
    if (args.rotate_keep is None) != (args.rotate_max_age is None):
        parser.error("--rotate-keep and --rotate-max-age go together")
    if args.rotate_keep is not None and args.name:
        parser.error("rotation needs --name-format (the folder's naming pattern), not --name")
    if not args.name and not args.name_format:
        args.name_format = DEFAULT_NAME_STEM + COMPRESS_SUFFIXES[args.compress]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "restore" and args.db_host and not args.pg_image and not args.config:
        parser.error("--db-host needs --pg-image (an image with psql)")
    if args.command == "dump":
        _check_dump_args(parser, args)
    return args


# --------------------------------------------------------------------------
# main


def _status_file_of(args) -> str | None:
    """Where a failure of this command is recorded as last_failure."""
    if args.command == "dump":
        return args.status_file
    if args.command == "run":
        return config_value(args.config, "status_file")
    return None


def _log_file_of(args) -> str | None:
    """--log-file, else the configuration's (not check-config's: that
    configuration may not be this machine's)."""
    if args.log_file is not None or args.command == "check-config":
        return args.log_file
    return config_value(getattr(args, "config", None), "log_file")


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)
    # cron's PATH is short: the tools live in the usual places.
    path = os.environ.get("PATH", "")
    extra = [d for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                         "/sbin", "/bin") if d not in path.split(os.pathsep)]
    if extra:
        os.environ["PATH"] = os.pathsep.join([p for p in [path, *extra] if p])
    args = parse_args(argv)
    log_file = _log_file_of(args)
    try:
        setup_logging(log_file, quiet=args.quiet)
    except OSError as exc:
        print(f"{PROG}: ERROR: cannot open log file {log_file}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_FAILED
    install_signal_handlers()
    try:
        summary = COMMANDS[args.command](args)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported
        disarm_signals()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise
        if args.command == "dump":
            ping(args.ping_url, False, f"backup failed: {exc}")
        return _fail(exc, _status_file_of(args))
    if args.json:
        print(json.dumps(summary))
    if pending_signal() is not None:
        log.warning("%s arrived after the work was complete",
                    signal.Signals(pending_signal()).name)
    return EXIT_OK


def _fail(exc: BaseException, status_file: str | None) -> int:
    """Report ``exc``: a log line (file only), status, one stderr line."""
    if isinstance(exc, BackupError):
        message, code = str(exc), exc.exit_code
    elif isinstance(exc, OSError):
        message, code = f"{exc.strerror or exc}" + (
            f": {exc.filename}" if exc.filename else ""), EXIT_FAILED
    else:
        message, code = f"unexpected {type(exc).__name__}: {exc}", EXIT_FAILED
    message = " | ".join(message.splitlines())
    log.error("%s", message, extra={"file_only": True})
    if status_file:
        try:
            update_status(status_file, "last_failure",
                          {"time": now_text(), "error": message})
        except (OSError, BackupError) as status_exc:
            log.warning("could not update status file %s: %s", status_file, status_exc)
    print(f"{PROG}: ERROR: {message}", file=sys.stderr, flush=True)
    return code
