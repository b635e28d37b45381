# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Execution of a pipeline: processes (``Stage``s) chained stdout -> stdin.

``run_pipeline`` publishes the output as a file (hashed, fsynced, renamed
only when every stage exited 0 and every check passed, with its sidecar);
``run_stream`` reads the output and throws it away (reading a backup back,
loading it into a database). On any failure, a signal included, every stage
still running is killed and its ``on_abort`` hook runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .checksum import write_sidecar
from .errors import BackupError, StageFailed, one_line
from .files import CHUNK_SIZE, fsync_dir, fsync_file, partial_path_for, unlink_quiet, write_all
from .names import SIDECAR_SUFFIX
from .signals import signals_deferred

log = logging.getLogger(__name__)

STDERR_TAIL_BYTES = 8192
OUTPUT_TAIL_BYTES = 1024
KILL_GRACE_SECONDS = 5.0


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

    def __init__(self, name: str, src, dst_fd: int, progress=None):
        super().__init__(daemon=True, name=f"{name}-tap")
        self.src = src
        self.dst_fd = dst_fd
        self.progress = progress
        self.tail = _Tail(OUTPUT_TAIL_BYTES)
        self.bytes = 0
        self.error: OSError | None = None

    def run(self) -> None:
        src_fd = self.src.fileno()
        try:
            while chunk := os.read(src_fd, CHUNK_SIZE):
                self.bytes += len(chunk)
                self.tail.add(chunk)
                if self.progress is not None:
                    self.progress.add(len(chunk))
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


def _start_stages(stages: Sequence[Stage], running: list[_Running], progress=None) -> bool:
    """Start every stage, chained stdout -> stdin; append each to ``running``.

    The first tap counts its bytes in ``progress`` (a ``progress.Progress``):
    returns whether one did.
    """
    upstream = None  # file object or fd the next stage reads
    counted = False
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
            current.tap = _Tap(stage.name, proc.stdout, write_fd, None if counted else progress)
            current.tap.start()
            upstream = read_fd
            counted = counted or progress is not None
    return counted


def _copy_to_file(src, fd: int, path: str, tail: _Tail, progress=None) -> tuple[int, str]:
    """Read the pipeline's output, hash it and write it to ``fd``."""
    digest = hashlib.sha256()
    total = 0
    src_fd = src.fileno()
    while chunk := os.read(src_fd, CHUNK_SIZE):
        digest.update(chunk)
        tail.add(chunk)
        write_all(fd, chunk, path)
        total += len(chunk)
        if progress is not None:
            progress.add(len(chunk))
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
                 sidecar: bool = True, replace: bool = False, progress=None) -> PipelineResult:
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
    sidecar. The bytes written are counted in ``progress`` when given.
    A failure before the rename leaves the old file AND its
    sidecar as they were; a crash between the two renames leaves the staged
    sidecar, which the next run (under the lock, in ``lock.clean_stale_files``)
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
            nbytes, digest = _copy_to_file(running[-1].proc.stdout, fd, partial, last_tail,
                                           progress)
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


def run_stream(stages: Sequence[Stage], progress=None) -> tuple[int, bytes, dict[str, int]]:
    """Run ``stages``; read and discard the last one's output.

    Returns (bytes read, their tail, bytes through each tapped stage). The
    bytes through the first tapped stage (the SQL a restore loads), or else
    the bytes read, are counted in ``progress`` when given. On any
    failure the stages are killed (and their on_abort hooks run) and the
    exception re-raised.
    """
    running: list[_Running] = []
    tail = _Tail(OUTPUT_TAIL_BYTES)
    total = 0
    try:
        with signals_deferred():
            if _start_stages(stages, running, progress):
                progress = None
        src_fd = running[-1].proc.stdout.fileno()
        while chunk := os.read(src_fd, CHUNK_SIZE):
            total += len(chunk)
            tail.add(chunk)
            if progress is not None:
                progress.add(len(chunk))
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
