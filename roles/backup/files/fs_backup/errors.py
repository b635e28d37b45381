# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exit codes and the errors reported as one ``fs_backup: ERROR: <message>`` line."""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3
EXIT_UPLOAD_FAILED = 4


class BackupError(Exception):
    """A failure reported as one ``fs_backup: ERROR: <message>`` line."""

    exit_code = EXIT_FAILED


class ConfigError(BackupError):
    """A setting that cannot be used (check-config): exit 2."""

    exit_code = EXIT_USAGE


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


class UploadFailed(BackupError):
    """run: the backup was written, but its cloud copy failed."""

    exit_code = EXIT_UPLOAD_FAILED


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
