# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``verify-checksum FILE [--sidecar PATH]``: a backup against its ``.sha256`` sidecar.

Exit 0 when the checksum matches (``FILE: OK (sha256 ...)`` on stdout), 1
when it does not or the sidecar is missing or names another file.
"""

from __future__ import annotations

import logging

from ..checksum import verify_checksum

log = logging.getLogger(__name__)


def run(args) -> dict:
    expected, _sidecar = verify_checksum(args.file, args.sidecar)
    log.info("checksum OK: %s (sha256 %s)", args.file, expected)
    print(f"{args.file}: OK (sha256 {expected})")
    return {"file": args.file, "sha256": expected}
