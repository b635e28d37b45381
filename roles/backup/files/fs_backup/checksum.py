# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checksums: the ``<name>.sha256`` sidecar of every backup, in ``sha256sum`` format."""

from __future__ import annotations

import os

from .errors import BackupError
from .files import atomic_write, sha256_file
from .names import SIDECAR_SUFFIX


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
