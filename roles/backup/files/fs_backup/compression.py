# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compression: pigz/gzip or zstd stages, and a backup's kind told from its name.

gzip runs ``pigz -p N`` when pigz is installed, else ``gzip``; both write
plain gzip (``gunzip -c`` reads it). The compressor uses every CPU by default
but runs at a low priority (``nice``), so the bots and the database come
first and the backup takes the CPU time they leave (``bench/backup.py``: on 2
CPUs pigz -5 on both takes 1.5 x pg_dump's own time, on one 2.5 x).
"""

from __future__ import annotations

import os
import shutil

from .errors import BackupError
from .execute import Stage
from .names import ENCRYPTED_SUFFIX

# Name suffix of each compression; the default name is stem + suffix.
COMPRESS_SUFFIXES = {"gzip": ".sql.gz", "zstd": ".sql.zst", "none": ".sql"}
# gzip 5: the best-compressing level within 2 x pg_dump's time on bench/backup.py
# (1.04 x the bytes of gzip -6); zstd 3 is zstd's own default.
DEFAULT_LEVELS = {"gzip": 5, "zstd": 3}
LEVEL_RANGES = {"gzip": (1, 9), "zstd": (1, 19)}
# The compressor's niceness: below the bots, the proxy and PostgreSQL.
NICENESS = 10


def default_threads() -> int:
    """The CPUs this process may run on (the compressor runs niced), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus)


def _niced(argv: list[str]) -> list[str]:
    nice = shutil.which("nice")
    return [nice, "-n", str(NICENESS), *argv] if nice else argv


def compressor_stage(kind: str, level: int, threads: int) -> Stage | None:
    """pigz/gzip or zstd reading stdin, writing stdout; None for 'none'."""
    if kind == "none":
        return None
    if kind == "gzip":
        pigz = shutil.which("pigz")
        if pigz:
            return Stage("pigz", _niced([pigz, f"-{level}", "-p", str(threads), "-c"]))
        return Stage("gzip", _niced([shutil.which("gzip") or "gzip", f"-{level}", "-c"]))
    if kind == "zstd":
        return Stage("zstd", _niced([shutil.which("zstd") or "zstd", "-q", f"-{level}",
                                     f"-T{threads}", "-c"]))
    raise ValueError(f"unknown compression {kind!r}")


def decompressor_argv(kind: str, path: str | None) -> tuple[str, list[str]] | None:
    """(name, argv) of the decompressor of ``kind`` reading ``path`` (or stdin)."""
    files = [path] if path else []
    if kind == "gzip":
        pigz = shutil.which("pigz")
        if pigz:
            return "pigz", [pigz, "-dc", *files]
        return "gzip", [shutil.which("gzip") or "gzip", "-dc", *files]
    if kind == "zstd":
        return "zstd", [shutil.which("zstd") or "zstd", "-dcq", *files]
    return None


def backup_kind(name: str) -> tuple[str, bool]:
    """(compression, encrypted) of a backup, from its name."""
    encrypted = name.endswith(ENCRYPTED_SUFFIX)
    base = name[:-len(ENCRYPTED_SUFFIX)] if encrypted else name
    for kind, suffix in (("gzip", ".gz"), ("zstd", ".zst"), ("none", ".sql")):
        if base.endswith(suffix):
            return kind, encrypted
    raise BackupError(f"{name}: cannot tell its compression from the name (expected .sql.gz, "
                      ".sql.zst or .sql, each maybe followed by .age)")
