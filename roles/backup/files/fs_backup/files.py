# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small file helpers: folders 0700, files 0600, atomic writes, fsync, hashing."""

from __future__ import annotations

import datetime
import errno
import hashlib
import logging
import os

from .errors import BackupError
from .names import PARTIAL_SUFFIX

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20


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
