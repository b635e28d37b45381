# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server-wide backup lock, and the clean-up of what interrupted runs left.

Every backup of the server (cron, pre-deploy, safety), every restore and
every rotation that deletes takes the same lock file (the configuration's
``lock_file``). Only while holding it may a run delete stale partial files:
with the lock held nothing else can be writing them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time

from .checksum import read_sidecar
from .errors import BackupError, LockTimeout
from .files import ensure_dir, now_text, sha256_file, unlink_quiet
from .names import PARTIAL_SUFFIX, SIDECAR_SUFFIX

log = logging.getLogger(__name__)

DEFAULT_LOCK_FILE = "/opt/backups/.fs_backup.lock"
DEFAULT_LOCK_TIMEOUT = 600.0
LOCK_POLL_SECONDS = 0.2


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


def config_lock(config: dict, what: str, suffix: str = "") -> BackupLock:
    """The lock of a configuration (``lock_file`` + ``suffix``, ``lock_timeout``)."""
    return BackupLock(str(config.get("lock_file") or DEFAULT_LOCK_FILE) + suffix,
                      float(config.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)), what=what)


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
