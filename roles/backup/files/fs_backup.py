#!/usr/bin/env python3
"""fs_backup: server-side PostgreSQL backups for the field-service deploy.

Python standard library only (3.8 or newer): Ansible copies this single file
onto the server (roles/backup) and runs it with the system python3, from the
deploy playbook (the pre-deploy backup) and from cron (scheduled backups).
Runs with umask 077: every file it creates is 0600, every folder 0700.

Usage
-----
  fs_backup.py dump --db-user USER --db-name DB --dest-dir DIR
                    (--db-container NAME | --db-host HOST --pg-image IMAGE
                     [--db-port PORT] [--network NET]) [options]
  fs_backup.py run {daily|weekly|monthly} --config PATH     (what cron runs)
  fs_backup.py verify [FILE | --newest] [--config PATH] [--allow-partial]
  fs_backup.py check FILE [--identity-stdin | --identity-file PATH]
  fs_backup.py restore [FILE | --name NAME] [--config PATH] [--keep-old]
  fs_backup.py locate NAME --config PATH [--no-fetch]
  fs_backup.py list --config PATH [--no-checksum] [--cloud]
  fs_backup.py cloud-rotate --config PATH [--dry-run]
  fs_backup.py verify-checksum FILE [--sidecar PATH]
(``fs_backup.py <command> --help`` has every option of each.)

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
                        line of stdin with --db-password-stdin; when set and
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
  --level N             compression level [gzip 6 (1-9), zstd 3 (1-19)].
  --threads N           pigz/zstd threads [half the CPUs, at least 1].
  --lock-file PATH      [/opt/backups/.fs_backup.lock] one lock for EVERY
                        backup of the server (the role passes
                        <app_backup_root>/.fs_backup.lock).
  --lock-timeout SECS   [600] how long to wait for a running backup.
  --status-file PATH    JSON with last_success / last_failure [none].
  --log-file PATH       append log lines here too [stderr only].
  --json                print the result as JSON on stdout.

Exit codes
----------
  0  success (dump: backup published; verify-checksum: checksum matches)
  1  failure (a stage failed, disk full, I/O error, checksum mismatch, ...)
  2  usage error
  3  dump: another backup held the lock for longer than --lock-timeout
  4  run: the backup was written, but its cloud copy failed
  128+N  dump: stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP)

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

Encryption and rotation
-----------------------
The pipeline is a list of ``Stage``s (see ``build_stages``): age encryption
to public keys is one more Stage after the compressor (``.age`` is added to
the name), and the run fails closed when it is asked for and the key or the
tool is missing. After a successful scheduled backup, while the lock is
still held, the folder is rotated with ``fs_rotation`` (the one rotation
implementation, installed next to this file and shared with the
fs_backup_rotate Ansible module).
"""

from __future__ import annotations

import argparse
import datetime
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PROG = "fs_backup"

DEFAULT_LOCK_FILE = "/opt/backups/.fs_backup.lock"
DEFAULT_LOCK_TIMEOUT = 600.0
DEFAULT_NAME_STEM = "backup_%Y%m%d_%H%M%S"
# Name suffix of each compression; the default name is stem + suffix.
COMPRESS_SUFFIXES = {"gzip": ".sql.gz", "zstd": ".sql.zst", "none": ".sql"}
DEFAULT_NAME_FORMAT = DEFAULT_NAME_STEM + COMPRESS_SUFFIXES["gzip"]
DEFAULT_LEVELS = {"gzip": 6, "zstd": 3}
LEVEL_RANGES = {"gzip": (1, 9), "zstd": (1, 19)}

PARTIAL_SUFFIX = ".partial"
SIDECAR_SUFFIX = ".sha256"
CHUNK_SIZE = 1 << 20
STDERR_TAIL_BYTES = 8192
OUTPUT_TAIL_BYTES = 1024
KILL_GRACE_SECONDS = 5.0
HOOK_TIMEOUT_SECONDS = 20.0
LOCK_POLL_SECONDS = 0.2

# Plain SQL that restores into a fresh database owned by the restoring role.
PG_DUMP_OPTIONS = ("--no-owner", "--no-privileges", "--encoding=UTF8")
PG_DUMP_TRAILER = b"-- PostgreSQL database dump complete"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3

log = logging.getLogger(PROG)


# --------------------------------------------------------------------------
# Errors


class BackupError(Exception):
    """A failure reported as one ``fs_backup: ERROR: <message>`` line."""

    exit_code = EXIT_FAILED


class StageFailed(BackupError):
    """One or more pipeline stages exited non-zero.

    ``failures`` is a list of (stage name, return code, stderr tail) in
    pipeline order; the message names every one, e.g.
    ``pg_dump exited 1: pg_dump: error: ... database "x" does not exist``.
    """

    def __init__(self, failures: list[tuple[str, int, str]]):
        self.failures = failures
        parts = []
        for name, returncode, tail in failures:
            part = f"{name} {describe_returncode(returncode)}"
            parts.append(f"{part}: {tail}" if tail else part)
        super().__init__("; ".join(parts))


class LockTimeout(BackupError):
    exit_code = EXIT_LOCKED


class Interrupted(BackupError):
    """Raised in the main thread by the SIGTERM/SIGINT/SIGHUP handler."""

    def __init__(self, signum: int):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def describe_returncode(returncode: int) -> str:
    """``exited N`` or ``was killed by SIGNAME`` (Popen's negative codes)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited {returncode}"


def one_line(text: str, limit: int = 600) -> str:
    """Collapse a (stderr) text to one line: its last lines joined by ' | '."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined = " | ".join(lines)
    if len(joined) > limit:
        joined = "..." + joined[-(limit - 3):]
    return joined


# --------------------------------------------------------------------------
# Signals: turn SIGTERM/SIGINT/SIGHUP into an exception in the main thread,
# but only while "armed": during cleanup a second signal must not interrupt
# the cleanup itself.


class _SignalState:
    armed = False
    pending: int | None = None  # a signal that arrived while not armed


def _on_signal(signum, _frame):
    if _SignalState.armed:
        _SignalState.armed = False
        raise Interrupted(signum)
    if _SignalState.pending is None:
        _SignalState.pending = signum


def install_signal_handlers() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    _SignalState.armed = True
    _SignalState.pending = None


def disarm_signals() -> None:
    """From now on signals are only recorded (e.g. once the backup is out)."""
    _SignalState.armed = False


class signals_deferred:
    """Context manager: a signal inside it is held back, not raised.

    Used around cleanup (which must finish) and around starting processes
    (so that none is started without being tracked). On leaving, a held-back
    signal is raised if signals were armed on entry.
    """

    def __enter__(self):
        self._was_armed = _SignalState.armed
        _SignalState.armed = False
        return self

    def __exit__(self, exc_type, *_exc):
        _SignalState.armed = self._was_armed
        if self._was_armed and exc_type is None and _SignalState.pending is not None:
            signum, _SignalState.pending = _SignalState.pending, None
            _SignalState.armed = False
            raise Interrupted(signum)
        return False


# --------------------------------------------------------------------------
# Small file helpers


def ensure_dir(path: str) -> None:
    """Create ``path`` (and parents) mode 0700 if missing; keep existing modes."""
    if not os.path.isdir(path):
        os.makedirs(path, mode=0o700, exist_ok=True)


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _raise_write_error(exc: OSError, path: str, what: str = "write") -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise BackupError(f"disk full: cannot {what} {path} ({exc.strerror})") from exc
    raise BackupError(f"cannot {what} {path}: {exc.strerror or exc}") from exc


def write_all(fd: int, data: bytes, path: str) -> None:
    """os.write until everything is written; ENOSPC becomes 'disk full'."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except OSError as exc:
            _raise_write_error(exc, path)
        view = view[written:]


def fsync_file(fd: int, path: str) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        _raise_write_error(exc, path, "fsync")


def unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not delete %s: %s", path, exc)


def partial_path_for(path: str) -> str:
    """``/dir/name`` -> ``/dir/.name.partial`` (never a backup name)."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}{PARTIAL_SUFFIX}")


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600) via a fsynced temp file + rename."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = partial_path_for(path)
    unlink_quiet(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            write_all(fd, data, tmp)
            fsync_file(fd, tmp)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise
    fsync_dir(directory)


def sha256_file(path: str, chunk_size: int = CHUNK_SIZE) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def now_text() -> str:
    """Local time with UTC offset, for status files and lock holder info."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# --------------------------------------------------------------------------
# Pipeline


@dataclass
class Stage:
    """One process of the pipeline; its stdout feeds the next stage.

    name:         how errors and logs call it (``pg_dump``, ``pigz``, ...).
    argv:         the command (never put secrets here: use the environment).
    env:          environment for the process [this process's environment].
    check_output: called with the last bytes of this stage's stdout once all
                  stages exited 0; returns an error message or None. A stage
                  with a check gets a Python tap between it and the next.
    on_abort:     called after the process was killed on failure, for what
                  killing the local process does not stop (the pg_dump in a
                  container, a one-off container).
    pass_fds:     file descriptors the process inherits (a pipe that holds
                  a decryption key, read by the process as /dev/fd/N).
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    check_output: Callable[[bytes], str | None] | None = None
    on_abort: Callable[[], None] | None = None
    pass_fds: tuple[int, ...] = ()

    def describe(self) -> str:
        return shlex.join(self.argv)


@dataclass
class PipelineResult:
    path: str
    bytes: int
    sha256: str
    seconds: float
    # Bytes that went through each tapped stage's stdout (e.g. SQL size).
    tapped_bytes: dict[str, int] = field(default_factory=dict)


class _Tail:
    """The last ``size`` bytes of a stream."""

    def __init__(self, size: int):
        self.size = size
        self.data = b""

    def add(self, chunk: bytes) -> None:
        if len(chunk) >= self.size:
            self.data = bytes(chunk[-self.size:])
        else:
            self.data = (self.data + chunk)[-self.size:]


class _Running:
    """A started stage: its process, a thread draining stderr, maybe a tap."""

    def __init__(self, stage: Stage, proc: subprocess.Popen):
        self.stage = stage
        self.proc = proc
        self.stderr = _Tail(STDERR_TAIL_BYTES)
        self.tap: _Tap | None = None
        self._thread = threading.Thread(target=self._drain, daemon=True,
                                        name=f"{stage.name}-stderr")
        self._thread.start()

    def _drain(self) -> None:
        fd = self.proc.stderr.fileno()
        try:
            while chunk := os.read(fd, 4096):
                self.stderr.add(chunk)
        except OSError:
            pass

    def stderr_text(self) -> str:
        self._thread.join(timeout=5)
        return one_line(self.stderr.data.decode("utf-8", "replace"))

    def close(self) -> None:
        """Release our pipe ends once the process has exited."""
        if self.proc.returncode is None:
            return
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.proc.stderr.close()
        if self.tap is None and self.proc.stdout is not None:
            self.proc.stdout.close()


class _Tap(threading.Thread):
    """Copies a stage's stdout into the next stage's stdin, keeping its tail."""

    def __init__(self, name: str, src, dst_fd: int):
        super().__init__(daemon=True, name=f"{name}-tap")
        self.src = src
        self.dst_fd = dst_fd
        self.tail = _Tail(OUTPUT_TAIL_BYTES)
        self.bytes = 0
        self.error: OSError | None = None

    def run(self) -> None:
        src_fd = self.src.fileno()
        try:
            while chunk := os.read(src_fd, CHUNK_SIZE):
                self.bytes += len(chunk)
                self.tail.add(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(self.dst_fd, view):]
        except BrokenPipeError:
            pass  # the next stage died: its exit status tells why
        except OSError as exc:
            self.error = exc
        finally:
            os.close(self.dst_fd)
            self.src.close()


def _start_stages(stages: Sequence[Stage], running: list[_Running]) -> None:
    """Start every stage, chained stdout -> stdin; append each to ``running``."""
    upstream = None  # file object or fd the next stage reads
    for stage in stages:
        stdin = upstream if upstream is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(
                stage.argv, stdin=stdin, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=stage.env, close_fds=True,
                pass_fds=stage.pass_fds)
        except OSError as exc:
            raise BackupError(f"cannot start {stage.name} ({stage.argv[0]}): "
                              f"{exc.strerror or exc}") from exc
        finally:
            # The child has its copy; ours must go or EOF/SIGPIPE never come.
            if isinstance(upstream, int):
                os.close(upstream)
            elif upstream is not None:
                upstream.close()
        current = _Running(stage, proc)
        running.append(current)
        upstream = proc.stdout
        if stage.check_output is not None and stage is not stages[-1]:
            read_fd, write_fd = os.pipe()  # both close-on-exec (PEP 446)
            current.tap = _Tap(stage.name, proc.stdout, write_fd)
            current.tap.start()
            upstream = read_fd


def _copy_to_file(src, fd: int, path: str, tail: _Tail) -> tuple[int, str]:
    """Read the pipeline's output, hash it and write it to ``fd``."""
    digest = hashlib.sha256()
    total = 0
    src_fd = src.fileno()
    while chunk := os.read(src_fd, CHUNK_SIZE):
        digest.update(chunk)
        tail.add(chunk)
        write_all(fd, chunk, path)
        total += len(chunk)
    return total, digest.hexdigest()


def _wait_and_check(running: list[_Running], last_tail: _Tail) -> None:
    """Wait for every stage; raise unless all exited 0 with valid output."""
    for item in running:
        item.proc.wait()
        if item.tap is not None:
            item.tap.join()
    failures = [(item.stage.name, item.proc.returncode, item.stderr_text())
                for item in running if item.proc.returncode != 0]
    if failures:
        raise StageFailed(failures)
    for item in running:
        if item.tap is not None and item.tap.error is not None:
            raise BackupError(f"reading the output of {item.stage.name}: "
                              f"{item.tap.error}")
    for item in running:
        if item.stage.check_output is None:
            continue
        tail = item.tap.tail.data if item.tap is not None else last_tail.data
        problem = item.stage.check_output(tail)
        if problem:
            raise BackupError(f"{item.stage.name}: {problem}")
    for item in running:
        text = item.stderr_text()
        if text:
            log.warning("%s said: %s", item.stage.name, text)


def _abort(running: list[_Running]) -> None:
    """Stop every stage still running, then run their on_abort hooks."""
    alive = [item for item in running if item.proc.poll() is None]
    for item in alive:
        try:
            item.proc.terminate()
        except OSError:
            pass
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    for item in alive:
        try:
            item.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            item.proc.kill()
            item.proc.wait()
    for item in running:
        if item.tap is not None:
            item.tap.join(timeout=5)
    for item in alive:
        if item.stage.on_abort is not None:
            try:
                item.stage.on_abort()
            except Exception as exc:  # cleanup is best effort
                log.warning("cleanup after %s failed: %s", item.stage.name, exc)


def run_pipeline(stages: Sequence[Stage], out_path: str, *,
                 sidecar: bool = True, replace: bool = False) -> PipelineResult:
    """Run ``stages`` as a pipeline and publish their output as ``out_path``.

    The output is hashed and written to ``.<name>.partial`` (0600) next to
    ``out_path``; only when it is fsynced, every stage exited 0 and every
    ``check_output`` passed, the sidecar ``<out_path>.sha256`` is written
    (when ``sidecar``) and the partial file renamed to ``out_path``.
    On any failure, including an ``Interrupted`` from a signal, the stages
    are killed, the partial file is deleted and the exception re-raised.
    Refuses to overwrite an existing ``out_path`` unless ``replace``: then
    the new sidecar is staged as ``.<name>.sha256.partial``, the new file
    renamed over the old one and the staged sidecar renamed over the old
    sidecar. A failure before the rename leaves the old file AND its
    sidecar as they were; a crash between the two renames leaves the staged
    sidecar, which the next run (under the lock, in ``clean_stale_files``)
    puts in place when it matches the file.
    """
    if not stages:
        raise ValueError("run_pipeline needs at least one stage")
    out_path = os.path.abspath(out_path)
    directory, name = os.path.split(out_path)
    partial = partial_path_for(out_path)
    sidecar_path = out_path + SIDECAR_SUFFIX
    if os.path.lexists(out_path) and not replace:
        raise BackupError(f"refusing to overwrite existing {out_path}")

    started = time.monotonic()
    pending_sidecar = partial_path_for(sidecar_path)
    running: list[_Running] = []
    published = False
    wrote_sidecar = False
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError as exc:
        raise BackupError(f"{partial} exists: is another backup writing "
                          f"{name}?") from exc
    try:
        last_tail = _Tail(OUTPUT_TAIL_BYTES)
        try:
            with signals_deferred():
                _start_stages(stages, running)
            nbytes, digest = _copy_to_file(running[-1].proc.stdout, fd, partial, last_tail)
            _wait_and_check(running, last_tail)
            fsync_file(fd, partial)
        finally:
            os.close(fd)
        if sidecar and not replace:
            write_sidecar(sidecar_path, name, digest)
            wrote_sidecar = True
        elif sidecar:
            write_sidecar(pending_sidecar, name, digest)
        os.rename(partial, out_path)
        published = True
        if sidecar and replace:
            os.rename(pending_sidecar, sidecar_path)
        fsync_dir(directory)
    except BaseException:
        with signals_deferred():
            _abort(running)
            unlink_quiet(partial)
            # Only what this run wrote goes: a replaced period's old
            # sidecar stays with its old (intact) backup.
            if wrote_sidecar and not published:
                unlink_quiet(sidecar_path)
            if not published:
                unlink_quiet(pending_sidecar)
        raise
    finally:
        for item in running:
            item.close()
    return PipelineResult(
        path=out_path, bytes=nbytes, sha256=digest,
        seconds=time.monotonic() - started,
        tapped_bytes={item.stage.name: item.tap.bytes
                      for item in running if item.tap is not None})


# --------------------------------------------------------------------------
# Checksums


def write_sidecar(sidecar_path: str, name: str, digest: str) -> None:
    """``<hex>  <name>\\n``, as ``sha256sum`` writes and ``sha256sum -c`` reads."""
    atomic_write(sidecar_path, f"{digest}  {name}\n".encode())


def read_sidecar(sidecar_path: str) -> tuple[str, str]:
    """Return (hex digest, file name) from a one-line sha256sum file."""
    with open(sidecar_path, encoding="utf-8") as handle:
        line = handle.readline().rstrip("\n")
    digest, sep, name = line.partition(" ")
    if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest.lower()):
        raise BackupError(f"{sidecar_path} is not a sha256sum line")
    # sha256sum writes "<hex>  <name>" (text) or "<hex> *<name>" (binary).
    if name[:1] in (" ", "*"):
        name = name[1:]
    return digest.lower(), name


def verify_checksum(path: str, sidecar_path: str | None = None) -> tuple[str, str]:
    """Check ``path`` against its sidecar; return (expected, actual) digests.

    Raises BackupError when the sidecar is missing or malformed, names
    another file, or the digests differ.
    """
    sidecar_path = sidecar_path or path + SIDECAR_SUFFIX
    if not os.path.isfile(path):
        raise BackupError(f"no such file: {path}")
    if not os.path.isfile(sidecar_path):
        raise BackupError(f"no checksum sidecar {sidecar_path} for {path}")
    expected, name = read_sidecar(sidecar_path)
    if name != os.path.basename(path):
        raise BackupError(f"{sidecar_path} is the checksum of {name!r}, "
                          f"not of {os.path.basename(path)!r}")
    actual = sha256_file(path)
    if actual != expected:
        raise BackupError(f"checksum mismatch for {path}: sidecar says "
                          f"{expected}, file has {actual}")
    return expected, actual


# --------------------------------------------------------------------------
# The server-wide lock


class BackupLock:
    """fcntl.flock on one file shared by every backup of the server.

    The holder writes ``{"pid", "since", "host", "what"}`` into the file, so
    a run that waits or gives up can say who holds it. The fd is
    close-on-exec: stages never inherit (and keep) the lock.
    """

    def __init__(self, path: str, timeout: float, what: str = ""):
        self.path = os.path.abspath(path)
        self.timeout = timeout
        self.what = what
        self.fd: int | None = None
        self.acquired_at: float | None = None  # time.time() when taken

    def holder(self) -> str:
        """``pid N since TIME`` from the lock file, as well as it can tell."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                info = json.loads(handle.read() or "{}")
            return f"pid {info.get('pid', '?')} since {info.get('since', '?')}"
        except (OSError, ValueError, AttributeError):
            return "pid unknown"

    def acquire(self) -> None:
        ensure_dir(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        started = time.monotonic()
        announced = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                waited = time.monotonic() - started
                if waited >= self.timeout:
                    raise LockTimeout(f"another backup is running ({self.holder()}); "
                                      f"waited {round(waited)}s")
                if not announced:
                    log.info("another backup is running (%s); waiting up to %ss "
                             "for %s", self.holder(), f"{self.timeout:g}", self.path)
                    announced = True
                time.sleep(min(LOCK_POLL_SECONDS, self.timeout - waited))
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.acquired_at = time.time()
        info = {"pid": os.getpid(), "since": now_text(),
                "host": socket.gethostname(), "what": self.what}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        if announced:
            log.info("got the lock after %.0fs", time.monotonic() - started)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass
        os.close(self.fd)  # closing drops the flock
        self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def _promote_staged_sidecar(entry: os.DirEntry) -> bool:
    """``.<name>.sha256.partial`` staged by a replacing run that was cut
    between its two renames: put it in place when it matches ``<name>``."""
    if not entry.name.endswith(SIDECAR_SUFFIX + PARTIAL_SUFFIX):
        return False
    sidecar = os.path.join(os.path.dirname(entry.path), entry.name[1:-len(PARTIAL_SUFFIX)])
    backup = sidecar[:-len(SIDECAR_SUFFIX)]
    try:
        staged, name = read_sidecar(entry.path)
        if name != os.path.basename(backup) or sha256_file(backup) != staged:
            return False
        os.rename(entry.path, sidecar)
    except (OSError, BackupError):
        return False
    log.warning("put in place the checksum %s staged by an interrupted run", sidecar)
    return True


def clean_stale_files(dest_dir: str, older_than: float) -> None:
    """Delete what interrupted runs left in ``dest_dir``.

    Call it only while holding the lock: ``.<name>.partial`` files (and
    sidecars whose backup is missing) last modified before ``older_than``
    cannot belong to a running backup. Backups themselves are never touched.
    """
    for entry in os.scandir(dest_dir):
        if not entry.is_file(follow_symlinks=False):
            continue
        stale_partial = entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX)
        orphan_sidecar = (not entry.name.startswith(".")
                          and entry.name.endswith(SIDECAR_SUFFIX)
                          and not os.path.lexists(entry.path[:-len(SIDECAR_SUFFIX)]))
        if not (stale_partial or orphan_sidecar):
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if mtime < older_than and stale_partial and _promote_staged_sidecar(entry):
            continue
        if mtime < older_than:
            what = "partial file" if stale_partial else "sidecar without backup"
            log.warning("deleting stale %s %s (from %s) left by an interrupted run",
                        what, entry.path, time.strftime("%Y-%m-%d %H:%M:%S",
                                                        time.localtime(mtime)))
            unlink_quiet(entry.path)


# --------------------------------------------------------------------------
# Status file


def update_status(path: str, key: str, record: dict, section: str | None = None) -> None:
    """Set ``key`` (last_success / last_failure / ...) in the JSON status file.

    With ``section`` the key is set in ``data["schedules"][section]`` (the
    record of one schedule: daily, weekly, monthly).

    Read-modify-write under a flock on the status file's directory (runs that
    gave up waiting for the backup lock write here too), then an atomic
    replace, so readers never see a half-written file.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    ensure_dir(directory)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        data: dict = {}
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            if isinstance(loaded, dict):
                data = loaded
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("replacing unreadable status file %s: %s", path, exc)
        if section is None:
            data[key] = record
        else:
            schedules = data.setdefault("schedules", {})
            if not isinstance(schedules, dict):
                schedules = data["schedules"] = {}
            entry = schedules.setdefault(section, {})
            if not isinstance(entry, dict):
                entry = schedules[section] = {}
            entry[key] = record
        atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------
# Building the dump pipeline


def pg_dump_complete(tail: bytes) -> str | None:
    """check_output of pg_dump: a complete plain dump ends with its trailer.

    (Recent releases add a ``\\unrestrict <key>`` line after it.)
    """
    if PG_DUMP_TRAILER in tail:
        return None
    return ("output is incomplete (no 'dump complete' trailer): pg_dump or "
            "its docker client was stopped before the end")


def sql_complete(tail: bytes) -> str | None:
    """check_output of a restore's SQL stream: it must end like a whole dump."""
    if PG_DUMP_TRAILER in tail:
        return None
    return ("the SQL does not end with pg_dump's 'dump complete' trailer: the backup is "
            "truncated or not a pg_dump plain dump")


def _pg_dump_args(args) -> list[str]:
    return ["-U", args.db_user, "-d", args.db_name, *PG_DUMP_OPTIONS]


def _run_hook(argv: list[str]) -> None:
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=HOOK_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise BackupError(f"{shlex.join(argv[:3])}... exited {result.returncode}: "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'))}")


def pg_dump_stage(args) -> Stage:
    """pg_dump in the database container (docker exec) or a one-off container."""
    # A unique application_name (and container name) lets cleanup find the
    # pg_dump that outlives its killed docker client.
    tag = f"{PROG}_{os.getpid()}_{secrets.token_hex(4)}"
    password = ["-e", "PGPASSWORD"] if os.environ.get("PGPASSWORD") else []
    if args.db_container:
        argv = ["docker", "exec", "-i", *password, "-e", f"PGAPPNAME={tag}",
                args.db_container, "pg_dump", *_pg_dump_args(args)]
        query = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 f"WHERE application_name = '{tag}' AND pid <> pg_backend_pid()")

        def on_abort() -> None:
            _run_hook(["docker", "exec", *password, args.db_container, "psql", "-X",
                       "-q", "-At", "-U", args.db_user, "-d", args.db_name, "-c", query])
            log.info("ended the pg_dump session %s in %s", tag, args.db_container)
    else:
        network = ["--network", args.network] if args.network else []
        # --log-driver none: the one-off container's stdout (the dump) must
        # not also land uncompressed in Docker's container log.
        argv = ["docker", "run", "--rm", "-i", "--name", tag, *network,
                "--log-driver", "none", *password, "-e", f"PGAPPNAME={tag}",
                "--entrypoint", "pg_dump", args.pg_image,
                "-h", args.db_host, "-p", str(args.db_port), *_pg_dump_args(args)]

        def on_abort() -> None:
            result = subprocess.run(["docker", "rm", "-f", "-v", tag], stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=HOOK_TIMEOUT_SECONDS,
                                    check=False)
            if result.returncode == 0:
                log.info("removed the pg_dump container %s", tag)
    return Stage("pg_dump", argv, check_output=pg_dump_complete, on_abort=on_abort)


def compressor_stage(kind: str, level: int, threads: int) -> Stage | None:
    """pigz/gzip or zstd reading stdin, writing stdout; None for 'none'."""
    if kind == "none":
        return None
    if kind == "gzip":
        pigz = shutil.which("pigz")
        if pigz:
            return Stage("pigz", [pigz, f"-{level}", "-p", str(threads), "-c"])
        return Stage("gzip", [shutil.which("gzip") or "gzip", f"-{level}", "-c"])
    if kind == "zstd":
        return Stage("zstd", [shutil.which("zstd") or "zstd", "-q", f"-{level}",
                              f"-T{threads}", "-c"])
    raise ValueError(f"unknown compression {kind!r}")


# -- encryption (age) --------------------------------------------------------

ENCRYPTED_SUFFIX = ".age"
AGE_HEADER = b"age-encryption.org/v1\n"
_RECIPIENT_RE = re.compile(r"^(age1[0-9a-z]{20,}|ssh-(ed25519|rsa) [A-Za-z0-9+/=]+( .*)?)$")


def load_recipients(recipients: Sequence[str], files: Sequence[str]) -> list[str]:
    """The age recipients (public keys) from the command line and files.

    Fails closed: no recipient, an unreadable file, or anything that is not
    a public key (a private key above all) is an error before any dump.
    """
    found = [r.strip() for r in recipients if r and r.strip()]
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                found += [line.strip() for line in handle
                          if line.strip() and not line.lstrip().startswith("#")]
        except OSError as exc:
            raise BackupError(f"encryption is on but the recipients file {path} cannot be "
                              f"read ({exc.strerror}): no backup written") from exc
    if not found:
        raise BackupError("encryption is on but no recipient (age public key) is configured: "
                          "no backup written")
    for recipient in found:
        if recipient.upper().startswith("AGE-SECRET-KEY-"):
            raise BackupError("an age PRIVATE key was given as recipient: the server must hold "
                              "only the public key (age1...); no backup written")
        if not _RECIPIENT_RE.match(recipient):
            raise BackupError(f"encryption recipient {recipient[:24]!r}... is not an age public "
                              "key (age1...) or an SSH public key: no backup written")
    return found


def age_binary() -> str:
    age = shutil.which("age")
    if not age:
        raise BackupError("encryption is on (age) but the age tool is not installed on this "
                          "server: no backup written")
    return age


def encryption_stage(args) -> Stage | None:
    """``age -r <recipient>...`` after the compressor, or None without encryption.

    The recipients are tried on an empty input first, so a key that age
    rejects stops the run before pg_dump starts.
    """
    if getattr(args, "encrypt", "none") == "none":
        return None
    recipients = load_recipients(args.recipient or [], args.recipients_file or [])
    argv = [age_binary()]
    for recipient in recipients:
        argv += ["-r", recipient]
    probe = subprocess.run(argv, input=b"", capture_output=True, timeout=HOOK_TIMEOUT_SECONDS,
                           check=False)
    if probe.returncode != 0:
        raise BackupError(f"age refuses the recipients: "
                          f"{one_line(probe.stderr.decode('utf-8', 'replace'))}; no backup written")
    return Stage("age", argv)


def build_stages(args) -> list[Stage]:
    """The dump pipeline, in order: pg_dump | compressor | age."""
    encryption = encryption_stage(args)  # first: fail closed before pg_dump runs
    stages = [pg_dump_stage(args)]
    compressor = compressor_stage(args.compress, args.level, args.threads)
    if compressor is not None:
        stages.append(compressor)
    if encryption is not None:
        stages.append(encryption)
    return stages


# -- reading a backup back ----------------------------------------------------


def backup_kind(name: str) -> tuple[str, bool]:
    """(compression, encrypted) of a backup, from its name."""
    encrypted = name.endswith(ENCRYPTED_SUFFIX)
    base = name[:-len(ENCRYPTED_SUFFIX)] if encrypted else name
    for kind, suffix in (("gzip", ".gz"), ("zstd", ".zst"), ("none", ".sql")):
        if base.endswith(suffix):
            return kind, encrypted
    raise BackupError(f"{name}: cannot tell its compression from the name (expected .sql.gz, "
                      ".sql.zst or .sql, each maybe followed by .age)")


def read_identity(args) -> bytes | None:
    """The age identity (private key) from stdin or a file, if one was given."""
    data = None
    if getattr(args, "identity_stdin", False):
        data = sys.stdin.buffer.read()
    elif getattr(args, "identity_file", None):
        try:
            with open(args.identity_file, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise BackupError(f"cannot read the identity file {args.identity_file}: "
                              f"{exc.strerror}") from exc
    if data is None:
        return None
    if b"AGE-SECRET-KEY-1" not in data.upper():
        raise BackupError("the identity given is not an age private key (AGE-SECRET-KEY-1...)")
    return data


class KeyPipes:
    """Pipes that hold a key for a child to read as /dev/fd/N; closed on exit."""

    def __init__(self):
        self.fds: list[int] = []

    def make(self, data: bytes) -> int:
        if len(data) > 60000:
            raise BackupError("the identity is too large")
        read_fd, write_fd = os.pipe()
        try:
            write_all(write_fd, data if data.endswith(b"\n") else data + b"\n", "key pipe")
        finally:
            os.close(write_fd)
        self.fds.append(read_fd)
        return read_fd

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
        return False


def decompressor_argv(kind: str, path: str | None) -> tuple[str, list[str]] | None:
    files = [path] if path else []
    if kind == "gzip":
        pigz = shutil.which("pigz")
        if pigz:
            return "pigz", [pigz, "-dc", *files]
        return "gzip", [shutil.which("gzip") or "gzip", "-dc", *files]
    if kind == "zstd":
        return "zstd", [shutil.which("zstd") or "zstd", "-dcq", *files]
    return None


def source_stages(path: str, identity: bytes | None, keys: KeyPipes) -> list[Stage]:
    """Stages that turn a backup file back into SQL: [age -d] | decompressor.

    The last one checks that the SQL ends with pg_dump's trailer.
    """
    name = os.path.basename(path)
    kind, encrypted = backup_kind(name)
    stages: list[Stage] = []
    if encrypted:
        if identity is None:
            raise BackupError(f"{name} is encrypted: the age private key is needed to read it "
                              "(from Vault: give it on stdin with --identity-stdin)")
        fd = keys.make(identity)
        stages.append(Stage("age", [age_binary(), "-d", "-i", f"/dev/fd/{fd}", path],
                            pass_fds=(fd,)))
    decompress = decompressor_argv(kind, None if encrypted else path)
    if decompress is not None:
        stages.append(Stage(decompress[0], decompress[1]))
    elif not encrypted:
        stages.append(Stage("cat", ["cat", path]))
    stages[-1].check_output = sql_complete
    return stages


def run_stream(stages: Sequence[Stage]) -> tuple[int, bytes, dict[str, int]]:
    """Run ``stages``; read and discard the last one's output.

    Returns (bytes read, their tail, bytes through each tapped stage). On any
    failure the stages are killed (and their on_abort hooks run) and the
    exception re-raised.
    """
    running: list[_Running] = []
    tail = _Tail(OUTPUT_TAIL_BYTES)
    total = 0
    try:
        with signals_deferred():
            _start_stages(stages, running)
        src_fd = running[-1].proc.stdout.fileno()
        while chunk := os.read(src_fd, CHUNK_SIZE):
            total += len(chunk)
            tail.add(chunk)
        _wait_and_check(running, tail)
    except BaseException:
        with signals_deferred():
            _abort(running)
        raise
    finally:
        for item in running:
            item.close()
    return total, tail.data, {item.stage.name: item.tap.bytes
                              for item in running if item.tap is not None}


# -- psql -------------------------------------------------------------------


def _password_env() -> list[str]:
    return ["-e", "PGPASSWORD"] if os.environ.get("PGPASSWORD") else []


def psql_argv(args, db: str, *extra: str, stdin: bool = False,
              container: str | None = None) -> list[str]:
    """psql with errors fatal, in the database container, ``container`` or a one-off one."""
    interactive = ["-i"] if stdin else []
    options = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", args.db_user, "-d", db, *extra]
    if container or args.db_container:
        return ["docker", "exec", *interactive, *_password_env(),
                container or args.db_container, "psql", *options]
    network = ["--network", args.network] if args.network else []
    return ["docker", "run", "--rm", *interactive, *network, "--log-driver", "none",
            *_password_env(), "--entrypoint", "psql", args.pg_image,
            "-h", args.db_host, "-p", str(args.db_port), *options]


def psql(args, db: str, sql: str, container: str | None = None, timeout: float = 120) -> str:
    """Run one SQL text; return its unaligned output; BackupError on failure."""
    argv = psql_argv(args, db, "-At", "-c", sql, container=container)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"psql did not answer in {timeout:g}s: {sql[:80]}") from exc
    if result.returncode != 0:
        raise BackupError(f"psql failed ({sql[:60]}...): "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'))}")
    return result.stdout.decode("utf-8", "replace").strip()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_stage(args, db: str, container: str | None = None) -> Stage:
    return Stage("psql", psql_argv(args, db, stdin=True, container=container))


# --------------------------------------------------------------------------
# Names


def render_name(name_format: str, when: float, utc: bool = False) -> str:
    return time.strftime(name_format, time.gmtime(when) if utc else time.localtime(when))


def check_name(name: str) -> None:
    """A backup name is a plain, visible file name that is not ours."""
    if (not name or "/" in name or "\0" in name or name in (".", "..")
            or name.startswith(".") or name.endswith(SIDECAR_SUFFIX)):
        raise BackupError(f"invalid backup name {name!r}: a file name that does not "
                          f"start with '.' or end with {SIDECAR_SUFFIX!r}")


_REQUEST_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,250}$")


def check_request_name(name: str) -> None:
    """A name a person asks for (restore, download): a bare backup file name."""
    if (not isinstance(name, str) or not _REQUEST_NAME_RE.match(name) or ".." in name
            or name.endswith(SIDECAR_SUFFIX) or name.endswith(PARTIAL_SUFFIX)):
        raise BackupError(f"refusing backup name {name!r}: give the bare file name of a backup "
                          "as list_backups shows it (letters, digits, '.', '_', '-'; no '/', "
                          "no '..', not a .sha256 sidecar)")


def default_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


# --------------------------------------------------------------------------
# Rotation (the rules live in fs_rotation.py, shared with the Ansible module)


def rotation_module():
    """Import fs_rotation from beside this file (as installed) or the repository."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (here, os.path.join(here, "..", "..", "..", "plugins", "module_utils")):
        if os.path.isfile(os.path.join(path, "fs_rotation.py")) and path not in sys.path:
            sys.path.insert(0, path)
    try:
        import fs_rotation
    except ImportError as exc:
        raise BackupError(f"fs_rotation.py is not installed next to {__file__}: {exc}") from exc
    return fs_rotation


def clock_now(utc: bool) -> datetime.datetime:
    if utc:
        return datetime.datetime.now(datetime.timezone.utc).replace(  # noqa: UP017 - Python 3.8+
            tzinfo=None, microsecond=0)
    return datetime.datetime.now().replace(microsecond=0)


def plan_deletions(rotation, names: list[str], name_format: str, keep: int, max_age: str, utc: bool,
                   dry_run: bool, kind: str, where: str):
    """The shared rules' plan for the backups ``names`` of one folder (local
    or remote), logged as ``<kind> of <where>``: why nothing may go, and in
    a dry run what would. Returns the plan and the names to delete now
    (none in a dry run)."""
    try:
        plan = rotation.plan_rotation(names, name_format, keep, max_age, clock_now(utc))
    except rotation.RotationError as exc:
        raise BackupError(f"{kind} settings of {where}: {exc}") from exc
    if plan.reason:
        log.warning("%s of %s: %s", kind, where, plan.reason)
    if dry_run:
        for name in plan.delete:
            log.info("%s of %s would delete %s", kind, where, name)
        return plan, []
    return plan, list(plan.delete)


def rotate_folder(directory: str, name_format: str, keep: int, max_age: str, utc: bool,
                  dry_run: bool = False):
    """Rotate one local folder by the shared rules; return the plan."""
    rotation = rotation_module()
    try:
        names = [entry.name for entry in os.scandir(directory)
                 if entry.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        names = []
    plan, deletions = plan_deletions(rotation, names, name_format, keep, max_age, utc, dry_run,
                                     "rotation", directory)
    for name in deletions:
        for victim in [name, *rotation.companions(name)]:
            unlink_quiet(os.path.join(directory, victim))
        log.info("rotation: deleted %s/%s (not among the %d newest, older than %s)",
                 directory, name, keep, max_age)
    return plan


# --------------------------------------------------------------------------
# Cloud copies (rclone)


def rclone_argv(cloud: dict, *args: str) -> list[str]:
    binary = cloud.get("rclone") or shutil.which("rclone") or "rclone"
    config = ["--config", cloud["rclone_config"]] if cloud.get("rclone_config") else []
    return [binary, *config, "--retries", str(cloud.get("retries", 3)),
            "--low-level-retries", str(cloud.get("low_level_retries", 10)), *args]


def run_rclone(cloud: dict, *args: str, timeout: float | None = None) -> str:
    argv = rclone_argv(cloud, *args)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=timeout or float(cloud.get("timeout", 3600)), check=False)
    except FileNotFoundError as exc:
        raise BackupError(f"rclone is not installed ({argv[0]})") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"rclone {args[0]} did not finish in time") from exc
    if result.returncode != 0:
        raise BackupError(f"rclone {args[0]} failed ({describe_returncode(result.returncode)}): "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'), 400)}")
    return result.stdout.decode("utf-8", "replace")


def remote_dir(cloud: dict, folder: str) -> str:
    return f"{cloud['remote'].rstrip('/')}/{folder}"


def upload(cloud: dict, folder: str, path: str) -> str:
    """Copy a backup and its sidecar to <remote>/<folder>/; return the remote path."""
    name = os.path.basename(path)
    if cloud.get("require_encryption", True) and not name.endswith(ENCRYPTED_SUFFIX):
        raise BackupError(f"refusing to upload {name}: it is not encrypted and the cloud copy "
                          "requires encryption (cloud.require_encryption)")
    target = f"{remote_dir(cloud, folder)}/{name}"
    run_rclone(cloud, "copyto", path, target)
    run_rclone(cloud, "copyto", path + SIDECAR_SUFFIX, target + SIDECAR_SUFFIX)
    return target


def remote_files(cloud: dict, folder: str) -> list[dict]:
    out = run_rclone(cloud, "lsjson", "--files-only", "--no-mimetype", remote_dir(cloud, folder),
                     timeout=300)
    try:
        items = json.loads(out or "[]")
    except ValueError as exc:
        raise BackupError(f"rclone lsjson gave no JSON: {exc}") from exc
    return [item for item in items if isinstance(item, dict) and not item.get("IsDir")]


def rotate_remote(cloud: dict, folder: str, name_format: str, keep: int, max_age: str,
                  utc: bool, dry_run: bool = False):
    """The same rules on the remote folder, with the remote's own retention."""
    rotation = rotation_module()
    names = [item["Name"] for item in remote_files(cloud, folder)]
    plan, deletions = plan_deletions(rotation, names, name_format, keep, max_age, utc, dry_run,
                                     "cloud rotation", folder)
    for name in deletions:
        run_rclone(cloud, "deletefile", f"{remote_dir(cloud, folder)}/{name}", timeout=300)
        if name + SIDECAR_SUFFIX in names:
            run_rclone(cloud, "deletefile", f"{remote_dir(cloud, folder)}/{name}{SIDECAR_SUFFIX}",
                       timeout=300)
        log.info("cloud rotation: deleted %s/%s", remote_dir(cloud, folder), name)
    return plan


# --------------------------------------------------------------------------
# Ping (healthchecks.io style)


def ping(url: str | None, ok: bool, message: str) -> None:
    """POST ``message`` to ``url`` (success) or ``url/fail``; never raises."""
    if not url:
        return
    target = url if ok else url.rstrip("/") + "/fail"
    host = urllib.parse.urlsplit(url).netloc or "?"
    try:
        request = urllib.request.Request(target, data=message.encode("utf-8")[:10000],
                                         method="POST",
                                         headers={"Content-Type": "text/plain; charset=utf-8",
                                                  "User-Agent": PROG})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read(1024)
    except Exception as exc:  # noqa: BLE001 - a ping never fails a backup
        log.warning("ping to %s failed: %s", host, exc)


# --------------------------------------------------------------------------
# Configuration (written by roles/backup, read by cron's ``run`` and friends)


def load_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except OSError as exc:
        raise BackupError(f"cannot read the configuration {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise BackupError(f"the configuration {path} is not JSON: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("db"), dict):
        raise BackupError(f"the configuration {path} has no 'db' section")
    for key in ("user", "name"):
        if not config["db"].get(key):
            raise BackupError(f"the configuration {path} has no db.{key}")
    if not config["db"].get("container") and not (config["db"].get("host")
                                                  and config["db"].get("pg_image")):
        raise BackupError(f"the configuration {path} needs db.container, or db.host and "
                          "db.pg_image")
    if config["db"].get("password") and not os.environ.get("PGPASSWORD"):
        os.environ["PGPASSWORD"] = str(config["db"]["password"])
    return config


def db_namespace(config: dict, **extra) -> argparse.Namespace:
    db = config["db"]
    container = db.get("container") or None
    values = {
        "db_container": container,
        "db_host": None if container else db.get("host"),
        "db_port": None if container else int(db.get("port") or 5432),
        "pg_image": None if container else db.get("pg_image"),
        "network": None if container else (db.get("network") or None),
        "db_user": db["user"],
        "db_name": db["name"],
        "lock_file": config.get("lock_file", DEFAULT_LOCK_FILE),
        "lock_timeout": float(config.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)),
        "status_file": config.get("status_file"),
        "utc": bool(config.get("utc", False)),
    }
    values.update(extra)
    return argparse.Namespace(**values)


def dump_namespace(config: dict, dest_dir: str, name_format: str, **extra) -> argparse.Namespace:
    compress = config.get("compress", "gzip")
    if compress not in COMPRESS_SUFFIXES:
        raise BackupError(f"unknown compression {compress!r} in the configuration")
    level = config.get("level")
    if compress != "none":
        level = int(level) if level else DEFAULT_LEVELS[compress]
    encrypt = config.get("encrypt") or "none"
    if encrypt not in ("none", "age"):
        raise BackupError(f"unknown encryption {encrypt!r} in the configuration (none or age)")
    values = {"dest_dir": dest_dir, "name": None, "name_format": name_format,
              "compress": compress, "level": level,
              "threads": int(config.get("threads") or 0) or default_threads(),
              "encrypt": encrypt, "recipient": list(config.get("recipients") or []),
              "recipients_file": list(config.get("recipients_files") or []),
              "replace": False, "rotate_keep": None, "rotate_max_age": None, "ping_url": None}
    values.update(extra)
    return db_namespace(config, **values)


def known_dirs(config: dict) -> list[tuple[str, str]]:
    """(folder name, path) of every local folder that holds backups, in search order."""
    dirs = [(key, folder["dir"]) for key, folder in (config.get("folders") or {}).items()]
    for path in config.get("other_dirs") or []:
        dirs.append((os.path.basename(path.rstrip("/")), path))
    if config.get("restore_dir"):
        dirs.append(("restore", config["restore_dir"]))
    seen, result = set(), []
    for key, path in dirs:
        if path not in seen:
            seen.add(path)
            result.append((key, path))
    return result


# --------------------------------------------------------------------------
# Commands


def cmd_dump(args) -> dict:
    """Take one backup; return the result dict (printed with --json)."""
    if getattr(args, "db_password_stdin", False):
        # Passed on to pg_dump by name (-e PGPASSWORD), never in an argv.
        os.environ["PGPASSWORD"] = sys.stdin.readline().rstrip("\n")
    dest_dir = os.path.abspath(args.dest_dir)
    where = (f"container {args.db_container}" if args.db_container
             else f"{args.db_host}:{args.db_port}")
    # Encryption problems (no tool, no key) stop the run before anything.
    stages = build_stages(args)
    ensure_dir(dest_dir)
    lock = BackupLock(args.lock_file, args.lock_timeout,
                      what=f"dump {args.db_name} to {dest_dir}")
    plan = None
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
        result = run_pipeline(stages, path, replace=bool(getattr(args, "replace", False)))
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
        if args.status_file:
            try:
                update_status(args.status_file, "last_success", {
                    "time": now_text(), "file": path, "bytes": result.bytes,
                    "seconds": round(result.seconds, 3), "sha256": result.sha256})
            except (OSError, BackupError) as exc:
                log.warning("could not update status file %s: %s", args.status_file, exc)
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


def cmd_run(args) -> dict:
    """One scheduled backup (cron): dump, rotate, copy to the cloud, rotate there."""
    config = load_config(args.config)
    folders = config.get("folders") or {}
    if args.schedule not in folders:
        raise BackupError(f"no schedule {args.schedule!r} in {args.config} "
                          f"(have: {', '.join(sorted(folders)) or 'none'})")
    folder = folders[args.schedule]
    dump_args = dump_namespace(
        config, folder["dir"], folder["name_format"], replace=True,
        rotate_keep=int(folder["keep"]), rotate_max_age=str(folder["max_age"]),
        ping_url=None)
    status, ping_url = config.get("status_file"), config.get("ping_url")
    try:
        summary = cmd_dump(dump_args)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        _record(status, "last_failure", {"time": now_text(), "error": message}, args.schedule)
        ping(ping_url, False, f"{args.schedule} backup failed: {message}")
        raise
    _record(status, "last_success", {"time": now_text(), "file": summary["path"],
                                     "bytes": summary["bytes"], "sha256": summary["sha256"]},
            args.schedule)
    cloud = config.get("cloud") or {}
    if cloud.get("remote"):
        retention = (cloud.get("retention") or {}).get(args.schedule) or {}
        try:
            with BackupLock(config.get("lock_file", DEFAULT_LOCK_FILE) + ".upload",
                            float(config.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)),
                            what=f"upload {summary['name']}"):
                summary["remote"] = upload(cloud, args.schedule, summary["path"])
                log.info("copied %s to %s", summary["name"], summary["remote"])
                plan = rotate_remote(cloud, args.schedule, folder["name_format"],
                                     int(retention.get("keep", folder["keep"])),
                                     str(retention.get("max_age", folder["max_age"])),
                                     bool(config.get("utc", False)))
                summary["remote_rotation"] = plan.as_dict()
        except BackupError as exc:
            message = f"backup {summary['name']} is on the server, but its cloud copy failed: {exc}"
            _record(status, "last_upload_failure", {"time": now_text(), "error": str(exc)},
                    args.schedule)
            ping(ping_url, False, message)
            raise UploadFailed(message) from exc
        _record(status, "last_upload", {"time": now_text(), "remote": summary["remote"]},
                args.schedule)
    ping(ping_url, True, f"{args.schedule} backup {summary['name']} written "
                         f"({summary['bytes']} bytes)")
    return summary


class UploadFailed(BackupError):
    exit_code = 4


def _record(status_file: str | None, key: str, record: dict, section: str | None = None) -> None:
    if not status_file:
        return
    try:
        update_status(status_file, key, record, section)
    except (OSError, BackupError) as exc:
        log.warning("could not update status file %s: %s", status_file, exc)


def cmd_verify_checksum(args) -> dict:
    expected, _ = verify_checksum(args.file, args.sidecar)
    log.info("checksum OK: %s (sha256 %s)", args.file, expected)
    print(f"{args.file}: OK (sha256 {expected})")
    return {"file": args.file, "sha256": expected}


def cmd_check(args) -> dict:
    """Checksum, then decrypt and decompress the whole file (nothing is loaded)."""
    path = os.path.abspath(args.file)
    digest, _ = verify_checksum(path)
    identity = read_identity(args)
    started = time.monotonic()
    with KeyPipes() as keys:
        stages = source_stages(path, identity, keys)
        sql_bytes, _, _ = run_stream(stages)
    log.info("%s: checksum OK, %s, %d bytes of SQL read back in %.1fs", path,
             "decrypted" if path.endswith(ENCRYPTED_SUFFIX) else "not encrypted",
             sql_bytes, time.monotonic() - started)
    return {"file": path, "name": os.path.basename(path), "sha256": digest,
            "encrypted": path.endswith(ENCRYPTED_SUFFIX), "sql_bytes": sql_bytes}


def newest_backup(config: dict) -> str:
    newest, newest_mtime = None, -1.0
    for _key, directory in known_dirs(config):
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
        raise BackupError("there is no backup to verify")
    return newest


def start_scratch(image: str, user: str, db: str, timeout: float = 120) -> str:
    """A throw-away PostgreSQL container with no network; return its name."""
    name = f"{PROG}_verify_{os.getpid()}_{secrets.token_hex(4)}"
    argv = ["docker", "run", "-d", "--rm", "--name", name, "--network", "none",
            "--label", "fs.role=backup-verify", "--log-driver", "none",
            "-e", f"POSTGRES_USER={user}", "-e", f"POSTGRES_DB={db}",
            # no network at all; psql comes in through docker exec (local socket)
            "-e", f"POSTGRES_PASSWORD={secrets.token_hex(16)}", image, "postgres",
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                            check=False)
    if result.returncode != 0:
        raise BackupError(f"cannot start a scratch database ({image}): "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'))}")
    deadline = time.monotonic() + timeout
    while True:
        # TCP readiness: the entrypoint's temporary init server listens on no port.
        ready = subprocess.run(["docker", "exec", name, "pg_isready", "-q", "-h", "127.0.0.1",
                                "-U", user], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=30, check=False)
        if ready.returncode == 0:
            return name
        gone = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
        if gone.stdout.strip() != b"true":
            remove_container(name)
            raise BackupError(f"the scratch database ({image}) stopped while starting")
        if time.monotonic() > deadline:
            remove_container(name)
            raise BackupError(f"the scratch database did not start in {timeout:g}s")
        time.sleep(0.3)


def remove_container(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", "-v", name], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=120, check=False)


def cmd_verify(args) -> dict:
    """Checksum, decrypt, decompress and load into a scratch database, then drop it."""
    config = load_config(args.config) if args.config else None
    path = os.path.abspath(args.file) if args.file else newest_backup(config or {})
    conf, conf_db = config or {}, (config or {}).get("db") or {}
    status = args.status_file or conf.get("status_file")
    image = args.pg_image or conf.get("verify_image") or conf_db.get("pg_image")
    user = args.db_user or conf_db.get("user") or "postgres"
    db = args.db_name or conf_db.get("name") or "postgres"
    started = time.monotonic()
    record = {"time": now_text(), "file": path}
    try:
        digest, _ = verify_checksum(path)
        identity = read_identity(args)
        if path.endswith(ENCRYPTED_SUFFIX) and identity is None:
            if not args.allow_partial:
                raise BackupError(f"{os.path.basename(path)} is encrypted: the age private key is "
                                  "needed to verify it (from Vault, --identity-stdin)")
            with open(path, "rb") as handle:
                header = handle.read(len(AGE_HEADER))
            if header != AGE_HEADER:
                raise BackupError(f"{path} does not start with an age header")
            note = ("encrypted and this server holds no private key (by design): only the "
                    "checksum and the age header were checked; run playbooks/verify_backup.yml "
                    "for a full check with the key from Vault")
            # By design and asked for (--allow-partial): not a warning, so
            # that the weekly cron job does not mail every week.
            log.info("%s: %s", path, note)
            record.update({"result": "ok", "level": "checksum", "sha256": digest, "note": note})
            _record(status, "last_verify", record)
            return record
        if not image:
            raise BackupError("no image for the scratch database (--pg-image)")
        container = start_scratch(image, user, db)
        try:
            with KeyPipes() as keys:
                stages = source_stages(path, identity, keys)
                stages.append(load_stage(argparse.Namespace(db_user=user, db_container=container), db))
                run_stream(stages)
            scratch = argparse.Namespace(db_user=user, db_container=container)
            tables = int(psql(scratch, db, "SELECT count(*) FROM pg_catalog.pg_tables WHERE "
                                           "schemaname NOT IN ('pg_catalog', 'information_schema')"))
            rows = psql(scratch, db, "SELECT coalesce(sum((xpath('/row/c/text()', query_to_xml("
                                     "format('SELECT count(*) AS c FROM %I.%I', schemaname, "
                                     "tablename), false, true, '')))[1]::text::bigint), 0) FROM "
                                     "pg_catalog.pg_tables WHERE schemaname NOT IN "
                                     "('pg_catalog', 'information_schema')", timeout=3600)
        finally:
            remove_container(container)
        record.update({"result": "ok", "level": "full", "sha256": digest, "tables": tables,
                       "rows": int(rows or 0), "seconds": round(time.monotonic() - started, 1)})
        log.info("verified %s: checksum, %s, loaded into a scratch database with errors fatal "
                 "(%d tables, %s rows) in %.1fs", path,
                 "decrypted" if path.endswith(ENCRYPTED_SUFFIX) else "not encrypted",
                 tables, rows, time.monotonic() - started)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        record.update({"result": "failed", "error": message})
        _record(status, "last_verify", record)
        if config:
            ping(config.get("ping_url"), False, f"verify of {path} failed: {message}")
        raise
    _record(status, "last_verify", record)
    return record


def locate(config: dict, name: str, fetch: bool = True) -> dict:
    """Find a backup by name in the local folders, else in the cloud (and fetch it)."""
    check_request_name(name)
    for key, directory in known_dirs(config):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path):
            return {"name": name, "path": path, "folder": key, "source": "local"}
    cloud = config.get("cloud") or {}
    if cloud.get("remote"):
        for folder in (config.get("folders") or {}):
            names = {item["Name"] for item in remote_files(cloud, folder)}
            if name not in names:
                continue
            if name + SIDECAR_SUFFIX not in names:
                raise BackupError(f"{name} is in the cloud ({folder}) without its checksum sidecar")
            result = {"name": name, "folder": folder, "source": "cloud",
                      "remote": f"{remote_dir(cloud, folder)}/{name}"}
            if fetch:
                restore_dir = config.get("restore_dir")
                if not restore_dir:
                    raise BackupError("no restore_dir in the configuration to fetch into")
                ensure_dir(restore_dir)
                path = os.path.join(restore_dir, name)
                partial = partial_path_for(path)
                try:
                    run_rclone(cloud, "copyto", result["remote"] + SIDECAR_SUFFIX,
                               path + SIDECAR_SUFFIX)
                    run_rclone(cloud, "copyto", result["remote"], partial)
                    os.chmod(partial, 0o600)
                    os.chmod(path + SIDECAR_SUFFIX, 0o600)
                    os.rename(partial, path)
                except BaseException:
                    unlink_quiet(partial)
                    raise
                result["path"] = path
                log.info("fetched %s from %s", name, result["remote"])
            return result
    raise BackupError(f"no backup named {name!r} on this server"
                      + (" or in the cloud" if cloud.get("remote") else "")
                      + ": see playbooks/list_backups.yml")


def cmd_locate(args) -> dict:
    return locate(load_config(args.config), args.name, fetch=not args.no_fetch)


def cmd_list(args) -> dict:
    """Every backup of the known folders: name, folder, size, age, checksum state."""
    config = load_config(args.config)
    now = time.time()
    backups = []
    for key, directory in known_dirs(config):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            if (entry.name.startswith(".") or entry.name.endswith(SIDECAR_SUFFIX)
                    or not entry.is_file(follow_symlinks=False)):
                continue
            info = entry.stat(follow_symlinks=False)
            sidecar = entry.path + SIDECAR_SUFFIX
            if not os.path.exists(sidecar):
                state = "missing"
            elif args.no_checksum:
                state = "present"
            else:
                try:
                    verify_checksum(entry.path)
                    state = "ok"
                except BackupError as exc:
                    state = "mismatch" if "mismatch" in str(exc) else f"bad: {exc}"
            backups.append({
                "name": entry.name, "folder": key, "path": entry.path, "bytes": info.st_size,
                "mtime": datetime.datetime.fromtimestamp(info.st_mtime).astimezone()
                .isoformat(timespec="seconds"),
                "age_s": round(now - info.st_mtime), "checksum": state,
                "encrypted": entry.name.endswith(ENCRYPTED_SUFFIX)})
    result = {"backups": backups}
    cloud = config.get("cloud") or {}
    if args.cloud and cloud.get("remote"):
        remote = []
        for folder in (config.get("folders") or {}):
            for item in remote_files(cloud, folder):
                if item["Name"].endswith(SIDECAR_SUFFIX):
                    continue
                remote.append({"name": item["Name"], "folder": f"cloud:{folder}",
                               "bytes": item.get("Size"), "mtime": item.get("ModTime")})
        result["cloud"] = remote
    return result


def cmd_cloud_rotate(args) -> dict:
    config = load_config(args.config)
    cloud = config.get("cloud") or {}
    if not cloud.get("remote"):
        raise BackupError("no cloud copy is configured (cloud.remote)")
    plans = {}
    for key, folder in (config.get("folders") or {}).items():
        retention = (cloud.get("retention") or {}).get(key) or {}
        plans[key] = rotate_remote(cloud, key, folder["name_format"],
                                   int(retention.get("keep", folder["keep"])),
                                   str(retention.get("max_age", folder["max_age"])),
                                   bool(config.get("utc", False)), dry_run=args.dry_run).as_dict()
    return {"dry_run": args.dry_run, "folders": plans}


def _database_exists(args, name: str) -> bool:
    return psql(args, "postgres", "SELECT 1 FROM pg_database WHERE datname = "
                + quote_literal(name)) == "1"


def cmd_restore(args) -> dict:
    """Load a backup into a new database, then swap it for the live one.

    The live database is untouched until the new one loaded without an
    error; the swap is two renames in one transaction. The caller stops
    the writers first (playbooks/restore.yml does) and took a safety backup.
    """
    config = load_config(args.config) if args.config else None
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
    if args.name:
        if config is None:
            raise BackupError("--name needs --config (to know the folders)")
        path = locate(config, args.name)["path"]
    else:
        path = os.path.abspath(args.file)
    digest, _ = verify_checksum(path)
    identity = read_identity(args)
    stamp = time.strftime("%Y%m%d%H%M%S")
    live = args.db_name
    new = f"{live}__restore_{stamp}"[:63]
    old = f"{live}__before_{stamp}"[:63]
    started = time.monotonic()
    with BackupLock(args.lock_file or DEFAULT_LOCK_FILE, args.lock_timeout,
                    what=f"restore {os.path.basename(path)} into {live}"):
        exists = _database_exists(args, live)
        create = f"CREATE DATABASE {quote_ident(new)} TEMPLATE template0"
        if exists:
            info = psql(args, "postgres", "SELECT pg_encoding_to_char(encoding) || '|' || "
                                          "datcollate || '|' || datctype FROM pg_database "
                                          "WHERE datname = " + quote_literal(live))
            encoding, collate, ctype = info.split("|")
            create += (f" ENCODING {quote_literal(encoding)} LC_COLLATE {quote_literal(collate)}"
                       f" LC_CTYPE {quote_literal(ctype)}")
        psql(args, "postgres", create)
        swapped = False
        try:
            log.info("loading %s into the new database %s", path, new)
            with KeyPipes() as keys:
                stages = source_stages(path, identity, keys)
                stages.append(load_stage(args, new))
                _, _, tapped = run_stream(stages)
                sql_bytes = tapped.get(stages[-2].name, 0)
            loaded = time.monotonic() - started
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
    record = {"time": now_text(), "file": path, "sha256": digest, "db": live,
              "seconds": round(seconds, 1), "previous_db_kept_as": kept_old}
    _record(args.status_file, "last_restore", record)
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


# --------------------------------------------------------------------------
# Command line


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


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-file", metavar="PATH",
                        help="also append log lines to this file (0600)")
    common.add_argument("--quiet", action="store_true",
                        help="only warnings and errors on stderr (cron)")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    parser = argparse.ArgumentParser(
        prog="fs_backup.py", description="PostgreSQL backups for field-service.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dump = sub.add_parser("dump", parents=[common], help="dump the database",
                          description="pg_dump | compressor [| age] -> <dest-dir>/<name> "
                                      "+ <name>.sha256")
    _add_db_options(dump)
    dump.add_argument("--dest-dir", required=True, metavar="DIR",
                      help="folder of the backups (created 0700)")
    naming = dump.add_mutually_exclusive_group()
    naming.add_argument("--name", metavar="NAME", help="file name of the backup")
    naming.add_argument("--name-format", metavar="FMT",
                        help="strftime name (default " + DEFAULT_NAME_FORMAT.replace("%", "%%")
                             + "; .sql.zst for zstd, .sql for none; .age added when encrypted)")
    dump.add_argument("--utc", action="store_true", help="format the name in UTC")
    dump.add_argument("--compress", choices=sorted(COMPRESS_SUFFIXES), default="gzip",
                      help="default gzip (pigz when installed)")
    dump.add_argument("--level", type=int, metavar="N",
                      help="compression level (default gzip 6, zstd 3)")
    dump.add_argument("--threads", type=int, metavar="N", default=default_threads(),
                      help="pigz/zstd threads (default half the CPUs)")
    dump.add_argument("--encrypt", choices=["none", "age"], default="none",
                      help="encrypt to age recipients (public keys); fails closed")
    dump.add_argument("--recipient", action="append", metavar="AGE_PUBLIC_KEY",
                      help="age recipient (age1...), repeatable")
    dump.add_argument("--recipients-file", action="append", metavar="PATH",
                      help="file of age recipients, repeatable")
    dump.add_argument("--db-password-stdin", action="store_true",
                      help="read the database password from the first line of stdin "
                           "(never in argv or in the environment of a command line)")
    dump.add_argument("--replace", action="store_true",
                      help="replace a backup of the same name once the new one is complete")
    dump.add_argument("--rotate-keep", type=int, metavar="N",
                      help="after success, rotate --dest-dir: keep the N newest ...")
    dump.add_argument("--rotate-max-age", metavar="AGE",
                      help="... and everything younger than AGE (7d, 4w, 12m)")
    dump.add_argument("--lock-file", metavar="PATH", default=DEFAULT_LOCK_FILE,
                      help=f"lock shared by every backup (default {DEFAULT_LOCK_FILE})")
    dump.add_argument("--lock-timeout", type=float, metavar="SECONDS",
                      default=DEFAULT_LOCK_TIMEOUT,
                      help="wait this long for another backup (default 600)")
    dump.add_argument("--status-file", metavar="PATH",
                      help="JSON file with last_success / last_failure")
    dump.add_argument("--ping-url", metavar="URL",
                      help="POST here on success, to URL/fail on failure")

    run = sub.add_parser("run", parents=[common], help="a scheduled backup (cron)",
                         description="dump + rotate the schedule's folder, then copy to "
                                     "the cloud and rotate there (as configured)")
    run.add_argument("schedule", metavar="SCHEDULE", help="daily, weekly or monthly")
    run.add_argument("--config", required=True, metavar="PATH")

    verify = sub.add_parser("verify", parents=[common],
                            help="checksum, decrypt, decompress, load into a scratch database")
    target = verify.add_mutually_exclusive_group(required=True)
    target.add_argument("file", metavar="FILE", nargs="?")
    target.add_argument("--newest", action="store_true", help="the newest backup")
    verify.add_argument("--config", metavar="PATH")
    verify.add_argument("--pg-image", metavar="IMAGE", help="image of the scratch database")
    verify.add_argument("--db-user", metavar="USER", help="role of the scratch database")
    verify.add_argument("--db-name", metavar="DB", help="name of the scratch database")
    verify.add_argument("--status-file", metavar="PATH")
    verify.add_argument("--allow-partial", action="store_true",
                        help="encrypted and no key: check checksum and header only")
    _add_identity_options(verify)

    check = sub.add_parser("check", parents=[common],
                           help="checksum, decrypt and decompress a backup (no database)")
    check.add_argument("file", metavar="FILE")
    _add_identity_options(check)

    restore = sub.add_parser("restore", parents=[common],
                             help="load a backup into a new database and swap it in")
    source = restore.add_mutually_exclusive_group(required=True)
    source.add_argument("file", metavar="FILE", nargs="?")
    source.add_argument("--name", metavar="NAME", help="a backup name, found like locate does")
    restore.add_argument("--config", metavar="PATH")
    _add_db_options(restore, required=False)
    restore.add_argument("--keep-old", action="store_true",
                         help="keep the replaced database as <db>__before_<time>")
    restore.add_argument("--lock-file", metavar="PATH")
    restore.add_argument("--lock-timeout", type=float, metavar="SECONDS")
    restore.add_argument("--status-file", metavar="PATH")
    _add_identity_options(restore)

    loc = sub.add_parser("locate", parents=[common],
                         help="find a backup by name (fetching it from the cloud)")
    loc.add_argument("name", metavar="NAME")
    loc.add_argument("--config", required=True, metavar="PATH")
    loc.add_argument("--no-fetch", action="store_true", help="do not download from the cloud")

    lst = sub.add_parser("list", parents=[common], help="list the backups")
    lst.add_argument("--config", required=True, metavar="PATH")
    lst.add_argument("--no-checksum", action="store_true", help="do not read the files")
    lst.add_argument("--cloud", action="store_true", help="list the cloud copies too")

    cloud = sub.add_parser("cloud-rotate", parents=[common], help="rotate the cloud copies")
    cloud.add_argument("--config", required=True, metavar="PATH")
    cloud.add_argument("--dry-run", action="store_true", help="list, delete nothing")

    checksum = sub.add_parser("verify-checksum", parents=[common],
                              help="check a backup against its .sha256 sidecar")
    checksum.add_argument("file", metavar="FILE")
    checksum.add_argument("--sidecar", metavar="PATH", help="default FILE.sha256")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "restore" and args.db_host and not args.pg_image and not args.config:
        parser.error("--db-host needs --pg-image (an image with psql)")
    if args.command != "dump":
        return args
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
    return args


COMMANDS = {
    "dump": cmd_dump,
    "run": cmd_run,
    "verify": cmd_verify,
    "check": cmd_check,
    "restore": cmd_restore,
    "locate": cmd_locate,
    "list": cmd_list,
    "cloud-rotate": cmd_cloud_rotate,
    "verify-checksum": cmd_verify_checksum,
}


def _status_file_of(args) -> str | None:
    """Where a failure of this command is recorded as last_failure."""
    if args.command == "dump":
        return args.status_file
    if args.command == "run":
        try:
            with open(args.config, encoding="utf-8") as handle:
                return json.load(handle).get("status_file")
        except (OSError, ValueError, AttributeError):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)
    # cron's PATH is short: the tools live in the usual places.
    path = os.environ.get("PATH", "")
    extra = [d for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin",
                         "/sbin", "/bin") if d not in path.split(os.pathsep)]
    if extra:
        os.environ["PATH"] = os.pathsep.join([p for p in [path, *extra] if p])
    args = parse_args(argv)
    log_file = args.log_file
    if log_file is None and getattr(args, "config", None):
        try:
            with open(args.config, encoding="utf-8") as handle:
                log_file = json.load(handle).get("log_file")
        except (OSError, ValueError, AttributeError):
            log_file = None
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
    if _SignalState.pending is not None:
        log.warning("%s arrived after the work was complete",
                    signal.Signals(_SignalState.pending).name)
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


if __name__ == "__main__":
    sys.exit(main())
