# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Names of backups: rendered from a strftime format, checked before a write,
and the ONE definition of a name a person may ask for (restore, download)."""

from __future__ import annotations

import re
import time

from .errors import BackupError

SIDECAR_SUFFIX = ".sha256"     # <name>.sha256: the checksum of <name>
PARTIAL_SUFFIX = ".partial"    # .<name>.partial: a file being written
ENCRYPTED_SUFFIX = ".age"      # added to the name of an encrypted backup
DEFAULT_NAME_STEM = "backup_%Y%m%d_%H%M%S"  # dump's default, + the compression's suffix

# A backup someone asks for by name: a bare file name (no folder), as
# playbooks/list_backups.yml shows it. The playbooks ask the program
# (``fs-backup locate``) rather than repeat this.
REQUEST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,250}$"
_REQUEST_NAME_RE = re.compile(REQUEST_NAME_PATTERN)


def render_name(name_format: str, when: float, utc: bool = False) -> str:
    return time.strftime(name_format, time.gmtime(when) if utc else time.localtime(when))


def check_name(name: str) -> None:
    """A backup name is a plain, visible file name that is not ours."""
    if (not name or "/" in name or "\0" in name or name in (".", "..")
            or name.startswith(".") or name.endswith(SIDECAR_SUFFIX)):
        raise BackupError(f"invalid backup name {name!r}: a file name that does not "
                          f"start with '.' or end with {SIDECAR_SUFFIX!r}")


def _shown(name) -> str:
    """The name as the message shows it, on one line."""
    if not isinstance(name, str):
        return repr(name)
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in name)


def check_request_name(name) -> None:
    """Refuse a name a person asks for unless it is a bare backup file name:
    letters, digits, '.', '_', '+', '-' (first a letter or digit), no '/',
    no '..', not a checksum sidecar and not a partial file."""
    if (not isinstance(name, str) or not _REQUEST_NAME_RE.fullmatch(name) or ".." in name
            or name.endswith(SIDECAR_SUFFIX) or name.endswith(PARTIAL_SUFFIX)):
        raise BackupError(f"Refusing backup name '{_shown(name)}': give the bare file name of a "
                          "backup as playbooks/list_backups.yml shows it (no '/', no '..', not a "
                          ".sha256 sidecar)")
