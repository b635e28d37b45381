# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release ids from the source content, and the deterministic source archive.

The id of a release is derived from what is shipped, never from when or from where:
deploying the same code twice finds the same release. What counts, for each file kept
(sorted by relative path): the relative path, the executable bit (the owner's, as git
does), and the content (or the target of a symlink). Modification times, other mode
bits, owners and empty directories do not count.

The archive of the same content is byte-for-byte the same: sorted entries, mtime 0,
uid/gid 0, no user or group names, modes 0644/0755 (symlinks 0777), gzip header
without name nor time.

Plain stdlib so that it runs without Ansible and is unit tested as is.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import os
import stat
import tarfile
import tempfile

DEFAULT_EXCLUDE = (
    ".git",
    ".hg",
    "__pycache__",
    "*.pyc",
    "*.pyo",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".venv",
    "venv",
    ".tox",
    "node_modules",
    "deployment_logs",
    ".DS_Store",
)

_CHUNK = 1024 * 1024


class SourceError(Exception):
    """The source tree cannot be digested or archived, with the reason."""


def _rel(root: str, path: str) -> str:
    rel = os.path.relpath(path, root)
    return rel.replace(os.sep, "/")


def is_excluded(relpath: str, exclude) -> bool:
    """True when a pattern matches the relative path or one of its components."""
    parts = relpath.split("/")
    for pattern in exclude:
        if fnmatch.fnmatchcase(relpath, pattern):
            return True
        for part in parts:
            if fnmatch.fnmatchcase(part, pattern):
                return True
    return False


def _check_link(root_real: str, root: str, relpath: str, abspath: str) -> str:
    """Return the target of a symlink that stays inside the tree, else raise."""
    target = os.readlink(abspath)
    if os.path.isabs(target):
        raise SourceError(
            f"symlink {relpath!r} -> {target!r} is absolute: only relative links inside "
            f"{root!r} can be shipped (make it relative or exclude it)"
        )
    lexical = os.path.normpath(os.path.join(os.path.dirname(relpath), target)).replace(os.sep, "/")
    escapes = lexical == ".." or lexical.startswith("../")
    if not escapes and os.path.lexists(os.path.join(os.path.dirname(abspath), target)):
        real = os.path.realpath(abspath)
        escapes = real != root_real and not real.startswith(root_real.rstrip(os.sep) + os.sep)
    if escapes:
        raise SourceError(
            f"symlink {relpath!r} -> {target!r} points outside the source tree {root!r} "
            f"(copy the file in or exclude the link)"
        )
    return target


def walk_source(root: str, exclude=DEFAULT_EXCLUDE, follow: bool = False) -> list[tuple[str, str]]:
    """The files kept under ``root``: sorted ``(relpath, abspath)``, relpath with ``/``.

    Regular files and symlinks (not followed) are kept; with ``follow`` a
    symlink to a regular file (anywhere) is kept as that file, its abspath the
    link's target, and a link to anything else is refused. A directory, its name or
    relative path matched by a pattern of ``exclude`` (fnmatch, case-sensitive), is
    skipped with all it holds, and so is a matched file. Raises ``SourceError`` for a
    missing root, a symlink leading out of the tree, or a special file (fifo, socket,
    device).
    """
    exclude = tuple(exclude or ())
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise SourceError(f"source path {root!r} is not a directory")
        raise SourceError(f"source path {root!r} does not exist")
    root_real = os.path.realpath(root)
    found: list[tuple[str, str]] = []

    def onerror(err: OSError) -> None:
        raise SourceError(f"cannot read {err.filename!r}: {err.strerror}") from err

    for dirpath, dirnames, filenames in os.walk(root, topdown=True, onerror=onerror, followlinks=False):
        keep_dirs = []
        for name in sorted(dirnames) + sorted(filenames):
            abspath = os.path.join(dirpath, name)
            relpath = _rel(root, abspath)
            if is_excluded(relpath, exclude):
                continue
            try:
                st = os.lstat(abspath)
            except OSError as err:
                raise SourceError(f"cannot read {relpath!r}: {err.strerror}") from err
            if stat.S_ISLNK(st.st_mode) and follow:
                target = os.path.realpath(abspath)
                if not os.path.isfile(target):
                    raise SourceError(f"symlink {relpath!r} does not lead to a regular file")
                found.append((relpath, target))
            elif stat.S_ISLNK(st.st_mode):
                _check_link(root_real, root, relpath, abspath)
                found.append((relpath, abspath))
            elif stat.S_ISDIR(st.st_mode):
                keep_dirs.append(name)
            elif stat.S_ISREG(st.st_mode):
                found.append((relpath, abspath))
            else:
                raise SourceError(f"{relpath!r} is not a regular file, directory or symlink (exclude it)")
        dirnames[:] = keep_dirs
    found.sort(key=lambda item: item[0])
    return found


def _is_executable(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_IXUSR)


def file_sha256(path: str) -> tuple[str, int]:
    """Hex sha256 and size of a file's content."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while True:
            chunk = fh.read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def digest_files(root: str, files) -> dict:
    """Digest of a list from ``walk_source``: ``{"digest", "files", "bytes"}``.

    ``bytes`` is the total size of the regular files.
    """
    total = hashlib.sha256()
    total.update(b"fs_release digest v1\n")
    size = 0
    for relpath, abspath in files:
        try:
            st = os.lstat(abspath)
            if stat.S_ISLNK(st.st_mode):
                kind, xbit = b"l", b"-"
                payload = hashlib.sha256(os.fsencode(os.readlink(abspath))).hexdigest()
            else:
                kind, xbit = b"f", (b"x" if _is_executable(st) else b"-")
                payload, fsize = file_sha256(abspath)
                size += fsize
        except OSError as err:
            raise SourceError(f"cannot read {relpath!r}: {err.strerror}") from err
        total.update(os.fsencode(relpath) + b"\0" + kind + xbit + b"\0" + payload.encode("ascii") + b"\n")
    return {"digest": total.hexdigest(), "files": len(files), "bytes": size}


def digest_source(root: str, exclude=DEFAULT_EXCLUDE) -> str:
    """Hex sha256 of the content of the tree at ``root`` (see the module docstring)."""
    return digest_files(root, walk_source(root, exclude))["digest"]


def release_id(digest: str) -> str:
    """The release id: the first 12 hex characters of the digest."""
    if len(digest) < 12 or any(c not in "0123456789abcdef" for c in digest[:12]):
        raise ValueError(f"not a hex digest: {digest!r}")
    return digest[:12]


def _tarinfo(relpath: str, st: os.stat_result, abspath: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(relpath)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(abspath)
        info.mode = 0o777
        info.size = 0
    else:
        info.type = tarfile.REGTYPE
        info.mode = 0o755 if _is_executable(st) else 0o644
        info.size = st.st_size
    return info


def _write_tar_gz(root: str, files, fileobj) -> None:
    with gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, mtime=0, compresslevel=6) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
            for relpath, abspath in sorted(files, key=lambda item: item[0]):
                try:
                    st = os.lstat(abspath)
                    info = _tarinfo(relpath, st, abspath)
                    if info.type == tarfile.SYMTYPE:
                        tar.addfile(info)
                        continue
                    with open(abspath, "rb") as fh:
                        # Size from the open file, so that a file growing meanwhile
                        # cannot produce a corrupt member.
                        info.size = os.fstat(fh.fileno()).st_size
                        tar.addfile(info, fh)
                except OSError as err:
                    raise SourceError(f"cannot archive {relpath!r}: {err.strerror or err}") from err


class _HashWriter(io.RawIOBase):
    def __init__(self) -> None:
        self.sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        return len(data)


def archive_sha256(root: str, files) -> str:
    """sha256 of the archive ``write_archive`` would write, without writing anything."""
    sink = _HashWriter()
    _write_tar_gz(root, files, sink)
    return sink.sha.hexdigest()


def write_archive(root: str, files, dest) -> str:
    """Write the deterministic ``.tar.gz`` of ``files`` (from ``walk_source``) to ``dest``.

    ``dest`` is a path (written atomically, temp file then rename, mode 0600) or a
    writable binary file object. Returns the path (or ``""`` for a file object).
    """
    if not isinstance(dest, (str, bytes, os.PathLike)):
        _write_tar_gz(root, files, dest)
        return ""
    dest = os.fspath(dest)
    tmp = _write_temp(root, files, dest)
    os.replace(tmp, dest)
    return dest


def _write_temp(root: str, files, dest: str) -> str:
    parent = os.path.dirname(os.path.abspath(dest))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise SourceError(f"cannot create the archive directory {parent!r}: {err.strerror}") from err
    fd, tmp = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(dest) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_tar_gz(root, files, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return tmp


def _same_content(a: str, b: str) -> bool:
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        return file_sha256(a)[0] == file_sha256(b)[0]
    except OSError:
        return False


def update_archive(root: str, files, dest: str, check_mode: bool = False) -> bool:
    """Make ``dest`` the archive of ``files``; True when it was (or would be) rewritten.

    An existing archive with the same bytes is left alone. In check mode nothing is
    written: the archive is computed into a hash only.
    """
    dest = os.fspath(dest)
    if os.path.isdir(dest):
        raise SourceError(f"archive path {dest!r} is a directory")
    if check_mode:
        if not os.path.isfile(dest):
            return True
        return file_sha256(dest)[0] != archive_sha256(root, files)
    tmp = _write_temp(root, files, dest)
    try:
        if os.path.isfile(dest) and not os.path.islink(dest) and _same_content(tmp, dest):
            os.unlink(tmp)
            return False
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True
