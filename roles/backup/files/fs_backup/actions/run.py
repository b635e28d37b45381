# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``run SCHEDULE --config PATH``: one scheduled backup, what cron runs.

Dump into the schedule's folder under its name format (a weekly or monthly
name is taken once per period: a second run replaces that period's backup
once the new one is complete), rotate the folder, then copy the backup to
the cloud and rotate the cloud folder by its own retention (when configured).
Every outcome goes to the status file (per schedule too), the ping URL and
the team's notification channels.
Exit 4 when the backup was written but its cloud copy failed.
"""

from __future__ import annotations

import logging

from ..cloud import upload
from ..configuration import dump_namespace, folder_settings, load_config
from ..errors import BackupError, UploadFailed
from ..files import now_text
from ..lock import config_lock
from ..monitoring import ping, tell
from ..status import record
from . import dump
from .rotate import cloud_retention, rotate_remote

log = logging.getLogger(__name__)


def run(args) -> dict:
    """One scheduled backup (cron): dump, rotate, copy to the cloud, rotate there."""
    config = load_config(args.config)
    folders = config.get("folders") or {}
    if args.schedule not in folders:
        raise BackupError(f"no schedule {args.schedule!r} in {args.config} "
                          f"(have: {', '.join(sorted(folders)) or 'none'})")
    directory, name_format, keep, max_age = folder_settings(config, args.schedule)
    dump_args = dump_namespace(config, directory, name_format, replace=True,
                               rotate_keep=keep, rotate_max_age=max_age, ping_url=None)
    status, ping_url = config.get("status_file"), config.get("ping_url")
    if getattr(args, "no_notify", False):
        config = dict(config, notify={})
    try:
        summary = dump.run(dump_args)
    except BaseException as exc:
        message = str(exc) if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        record(status, "last_failure", {"time": now_text(), "error": message}, args.schedule)
        ping(ping_url, False, f"{args.schedule} backup failed: {message}")
        tell(config, "backup_failure", f"{args.schedule} backup failed: {message}")
        raise
    record(status, "last_success", {"time": now_text(), "file": summary["path"],
                                    "bytes": summary["bytes"], "sha256": summary["sha256"]},
           args.schedule)
    cloud = config.get("cloud") or {}
    if cloud.get("remote"):
        try:
            with config_lock(config, f"upload {summary['name']}", suffix=".upload"):
                summary["remote"] = upload(cloud, args.schedule, summary["path"])
                log.info("copied %s to %s", summary["name"], summary["remote"])
                remote_keep, remote_max_age = cloud_retention(config, args.schedule)
                plan = rotate_remote(cloud, args.schedule, name_format, remote_keep,
                                     remote_max_age, bool(config.get("utc", False)))
                summary["remote_rotation"] = plan.as_dict()
        except BackupError as exc:
            message = f"backup {summary['name']} is on the server, but its cloud copy failed: {exc}"
            record(status, "last_upload_failure", {"time": now_text(), "error": str(exc)},
                   args.schedule)
            ping(ping_url, False, message)
            tell(config, "backup_failure", message, file=summary["name"])
            raise UploadFailed(message) from exc
        record(status, "last_upload", {"time": now_text(), "remote": summary["remote"]},
               args.schedule)
    ping(ping_url, True, f"{args.schedule} backup {summary['name']} written "
                         f"({summary['bytes']} bytes)")
    tell(config, "backup_success", f"{args.schedule} backup {summary['name']} written "
                                   f"({summary['bytes']} bytes)", file=summary["name"])
    return summary
