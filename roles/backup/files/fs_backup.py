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
  fs_backup.py verify-checksum FILE [--sidecar PATH]

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
  PGPASSWORD            (environment, never argv) the password; when set and
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
``docker run`` container is removed with ``docker rm -f``.

pg_dump options
---------------
Plain SQL with ``--no-owner --no-privileges --encoding=UTF8``, no --clean
and no --create: the dump is meant for ``psql -v ON_ERROR_STOP=1`` into a
fresh, empty database. Whatever role runs the restore (normally the app's
own user, which owns the new database) becomes the owner of every object;
GRANTs to other roles are not kept (the app uses a single role). Recent
pg_dump releases put ``\\restrict``/``\\unrestrict`` lines around the dump:
restore with a psql of the same or a newer minor release.

Extending
---------
The pipeline is a list of ``Stage``s (see ``build_stages``): encryption (age
or gpg) is one more Stage appended after the compressor, and its name suffix
goes into the default name. Rotation can be imported from a sibling module
and called in ``cmd_dump`` while the lock is still held.
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
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
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
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    check_output: Callable[[bytes], str | None] | None = None
    on_abort: Callable[[], None] | None = None

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
                stderr=subprocess.PIPE, env=stage.env, close_fds=True)
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
                 sidecar: bool = True) -> PipelineResult:
    """Run ``stages`` as a pipeline and publish their output as ``out_path``.

    The output is hashed and written to ``.<name>.partial`` (0600) next to
    ``out_path``; only when it is fsynced, every stage exited 0 and every
    ``check_output`` passed, the sidecar ``<out_path>.sha256`` is written
    (when ``sidecar``) and the partial file renamed to ``out_path``.
    On any failure, including an ``Interrupted`` from a signal, the stages
    are killed, the partial file is deleted and the exception re-raised.
    Refuses to overwrite an existing ``out_path``.
    """
    if not stages:
        raise ValueError("run_pipeline needs at least one stage")
    out_path = os.path.abspath(out_path)
    directory, name = os.path.split(out_path)
    partial = partial_path_for(out_path)
    sidecar_path = out_path + SIDECAR_SUFFIX
    if os.path.lexists(out_path):
        raise BackupError(f"refusing to overwrite existing {out_path}")

    started = time.monotonic()
    running: list[_Running] = []
    published = False
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
        if sidecar:
            write_sidecar(sidecar_path, name, digest)
        os.rename(partial, out_path)
        published = True
        fsync_dir(directory)
    except BaseException:
        with signals_deferred():
            _abort(running)
            unlink_quiet(partial)
            if sidecar and not published:
                unlink_quiet(sidecar_path)
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
        if mtime < older_than:
            what = "partial file" if stale_partial else "sidecar without backup"
            log.warning("deleting stale %s %s (from %s) left by an interrupted run",
                        what, entry.path, time.strftime("%Y-%m-%d %H:%M:%S",
                                                        time.localtime(mtime)))
            unlink_quiet(entry.path)


# --------------------------------------------------------------------------
# Status file


def update_status(path: str, key: str, record: dict) -> None:
    """Set ``key`` (last_success / last_failure) in the JSON status file.

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
        data[key] = record
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
            result = subprocess.run(["docker", "rm", "-f", tag], stdin=subprocess.DEVNULL,
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


def build_stages(args) -> list[Stage]:
    """The dump pipeline, in order. Encryption will be appended here."""
    stages = [pg_dump_stage(args)]
    compressor = compressor_stage(args.compress, args.level, args.threads)
    if compressor is not None:
        stages.append(compressor)
    return stages


def render_name(name_format: str, when: float, utc: bool = False) -> str:
    return time.strftime(name_format, time.gmtime(when) if utc else time.localtime(when))


def check_name(name: str) -> None:
    """A backup name is a plain, visible file name that is not ours."""
    if (not name or "/" in name or "\0" in name or name in (".", "..")
            or name.startswith(".") or name.endswith(SIDECAR_SUFFIX)):
        raise BackupError(f"invalid backup name {name!r}: a file name that does not "
                          f"start with '.' or end with {SIDECAR_SUFFIX!r}")


def default_threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


# --------------------------------------------------------------------------
# Commands


def cmd_dump(args) -> dict:
    """Take one backup; return the result dict (printed with --json)."""
    dest_dir = os.path.abspath(args.dest_dir)
    ensure_dir(dest_dir)
    where = (f"container {args.db_container}" if args.db_container
             else f"{args.db_host}:{args.db_port}")
    lock = BackupLock(args.lock_file, args.lock_timeout,
                      what=f"dump {args.db_name} to {dest_dir}")
    with lock:
        clean_stale_files(dest_dir, lock.acquired_at)
        name = args.name or render_name(args.name_format, time.time(), args.utc)
        check_name(name)
        path = os.path.join(dest_dir, name)
        stages = build_stages(args)
        log.info("dumping database %s (%s) to %s", args.db_name, where, path)
        log.info("pipeline: %s", " | ".join(stage.describe() for stage in stages))
        result = run_pipeline(stages, path)
        # The backup is out: a late signal no longer changes the outcome.
        disarm_signals()
        # Rotation goes here, while the lock is still held.
    sql = result.tapped_bytes.get("pg_dump")
    log.info("wrote %s (%d bytes%s, sha256 %s) in %.1fs", path, result.bytes,
             f" from {sql} bytes of SQL" if sql is not None else "",
             result.sha256, result.seconds)
    summary = {"path": path, "name": name, "bytes": result.bytes,
               "sha256": result.sha256, "seconds": round(result.seconds, 3),
               "db": args.db_name, "compress": args.compress}
    if args.status_file:
        try:
            update_status(args.status_file, "last_success", {
                "time": now_text(), "file": path, "bytes": result.bytes,
                "seconds": round(result.seconds, 3), "sha256": result.sha256})
        except (OSError, BackupError) as exc:
            log.warning("could not update status file %s: %s", args.status_file, exc)
    return summary


def cmd_verify_checksum(args) -> None:
    expected, _ = verify_checksum(args.file, args.sidecar)
    log.info("checksum OK: %s (sha256 %s)", args.file, expected)
    print(f"{args.file}: OK (sha256 {expected})")


# --------------------------------------------------------------------------
# Command line


class _OneLineFormatter(logging.Formatter):
    def format(self, record):
        return " | ".join(super().format(record).splitlines())


class _NotFileOnly(logging.Filter):
    def filter(self, record):
        return not getattr(record, "file_only", False)


def setup_logging(log_file: str | None) -> None:
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
    log.addHandler(stderr)
    if log_file:
        ensure_dir(os.path.dirname(os.path.abspath(log_file)))
        fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        handler.setFormatter(formatter)
        log.addHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-file", metavar="PATH",
                        help="also append log lines to this file (0600)")
    parser = argparse.ArgumentParser(
        prog="fs_backup.py", description="PostgreSQL backups for field-service.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dump = sub.add_parser("dump", parents=[common], help="dump the database",
                          description="pg_dump | compressor -> <dest-dir>/<name> "
                                      "+ <name>.sha256")
    where = dump.add_mutually_exclusive_group(required=True)
    where.add_argument("--db-container", metavar="NAME",
                       help="container the database runs in (docker exec)")
    where.add_argument("--db-host", metavar="HOST",
                       help="external database host (pg_dump in a docker run container)")
    dump.add_argument("--db-port", type=int, metavar="PORT",
                      help="port of --db-host (default 5432)")
    dump.add_argument("--pg-image", metavar="IMAGE",
                      help="image with pg_dump, required with --db-host")
    dump.add_argument("--network", metavar="NET",
                      help="Docker network for --db-host (default: Docker's default)")
    dump.add_argument("--db-user", required=True, metavar="USER")
    dump.add_argument("--db-name", required=True, metavar="DB")
    dump.add_argument("--dest-dir", required=True, metavar="DIR",
                      help="folder of the backups (created 0700)")
    naming = dump.add_mutually_exclusive_group()
    naming.add_argument("--name", metavar="NAME", help="file name of the backup")
    naming.add_argument("--name-format", metavar="FMT",
                        help="strftime name (default " + DEFAULT_NAME_FORMAT.replace("%", "%%")
                             + "; .sql.zst for zstd, .sql for none)")
    dump.add_argument("--utc", action="store_true", help="format the name in UTC")
    dump.add_argument("--compress", choices=sorted(COMPRESS_SUFFIXES), default="gzip",
                      help="default gzip (pigz when installed)")
    dump.add_argument("--level", type=int, metavar="N",
                      help="compression level (default gzip 6, zstd 3)")
    dump.add_argument("--threads", type=int, metavar="N", default=default_threads(),
                      help="pigz/zstd threads (default half the CPUs)")
    dump.add_argument("--lock-file", metavar="PATH", default=DEFAULT_LOCK_FILE,
                      help=f"lock shared by every backup (default {DEFAULT_LOCK_FILE})")
    dump.add_argument("--lock-timeout", type=float, metavar="SECONDS",
                      default=DEFAULT_LOCK_TIMEOUT,
                      help="wait this long for another backup (default 600)")
    dump.add_argument("--status-file", metavar="PATH",
                      help="JSON file with last_success / last_failure")
    dump.add_argument("--json", action="store_true", help="print the result as JSON")

    verify = sub.add_parser("verify-checksum", parents=[common],
                            help="check a backup against its .sha256 sidecar")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument("--sidecar", metavar="PATH", help="default FILE.sha256")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
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
    if not args.name and not args.name_format:
        args.name_format = DEFAULT_NAME_STEM + COMPRESS_SUFFIXES[args.compress]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    os.umask(0o077)
    args = parse_args(argv)
    try:
        setup_logging(args.log_file)
    except OSError as exc:
        print(f"{PROG}: ERROR: cannot open log file {args.log_file}: {exc.strerror}",
              file=sys.stderr)
        return EXIT_FAILED
    if args.command == "verify-checksum":
        try:
            cmd_verify_checksum(args)
        except (BackupError, OSError) as exc:
            return _fail(exc, None)
        return EXIT_OK

    install_signal_handlers()
    try:
        summary = cmd_dump(args)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported
        disarm_signals()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            raise
        return _fail(exc, args.status_file)
    if args.json:
        print(json.dumps(summary))
    if _SignalState.pending is not None:
        log.warning("%s arrived after the backup was complete",
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
