# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``cloud-rotate --config PATH [--dry-run] [--now TIME]``: the cloud copies only.

Kept as an alias of the cloud part of ``rotate --cloud`` (same functions,
same lock of the uploads unless ``--dry-run``). The result keeps its old
shape, ``{"now": ..., "dry_run": ..., "folders": {<schedule>: <plan>}}``,
where the plans are what ``rotate`` reports under ``cloud``.
"""

from __future__ import annotations

from ..configuration import load_config
from ..errors import BackupError
from .rotate import check_settings, clock_now, rotate_cloud, selected


def run(args) -> dict:
    config = load_config(args.config, require_db=False)
    if not (config.get("cloud") or {}).get("remote"):
        raise BackupError("no cloud copy is configured (cloud.remote)")
    keys = selected(config, None)
    check_settings(config, keys, cloud=True)
    now = args.now or clock_now(bool(config.get("utc", False)))
    return {"now": now.isoformat(), "dry_run": args.dry_run,
            "folders": rotate_cloud(config, keys, now, args.dry_run)}
