# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``rotate``: the rotation rules applied to the configured folders, now.

    fs-backup rotate --config PATH [--schedule NAME ...] [--cloud] [--dry-run]
                     [--now YYYY-MM-DDTHH:MM:SS] [--json]

The functions below are THE application of the rules (``rotation``) to a
folder: the folder scan, the clock, the deletion of a backup with its
``.sha256`` sidecar. ``run`` calls them after every scheduled backup (under
the lock it holds for the dump); this command calls them on demand, for
every folder of the configuration or the ``--schedule``s named, under the
same server-wide lock (``lock_file``, waiting up to ``lock_timeout``; none
with ``--dry-run``, which reads only and deletes nothing). With ``--cloud``
the cloud copies are rotated too, by the cloud's own retention, under the
lock of the uploads (``<lock_file>.upload``).

``--now`` is the time to rotate at, on the clock of the names (local time,
or UTC when the configuration's ``utc`` is true): what would a rotation do
at another time. The result (``--json``)::

    {"now": "2025-10-10T02:01:00", "dry_run": false,
     "folders": {"daily": {"path": "/opt/backups/daily", "keep": [...],
                           "delete": [...], "ignored": [...], "reason": null}, ...},
     "cloud": {"daily": {"path": "s3:bucket/prefix/daily", ...}, ...}}

``delete`` is what was deleted (in a dry run: what would be), newest first;
``reason`` why nothing was deleted although something could be (a backup
dated after now). ``cloud`` only with ``--cloud``.
"""

from __future__ import annotations

import datetime
import logging
import os

from .. import rotation
from ..cloud import delete_remote, remote_dir, remote_files
from ..configuration import folder_settings, load_config
from ..errors import BackupError
from ..files import unlink_quiet
from ..lock import config_lock
from ..names import SIDECAR_SUFFIX

log = logging.getLogger(__name__)


def clock_now(utc: bool) -> datetime.datetime:
    """Now, naive, on the clock of the names (local time or UTC)."""
    if utc:
        return datetime.datetime.now(datetime.timezone.utc).replace(  # noqa: UP017 - Python 3.8+
            tzinfo=None, microsecond=0)
    return datetime.datetime.now().replace(microsecond=0)


def plan_deletions(names: list[str], name_format: str, keep: int, max_age: str,
                   now: datetime.datetime, dry_run: bool, kind: str, where: str):
    """The rules' plan for the backups ``names`` of one folder (local or
    remote), logged as ``<kind> of <where>``: why nothing may go, and in a
    dry run what would. Returns the plan and the names to delete now (none
    in a dry run)."""
    try:
        plan = rotation.plan_rotation(names, name_format, keep, max_age, now)
    except rotation.RotationError as exc:
        raise BackupError(f"{kind} settings of {where}: {exc}") from exc
    if plan.reason:
        log.warning("%s of %s: %s", kind, where, plan.reason)
    if dry_run:
        for name in plan.delete:
            log.info("%s of %s would delete %s", kind, where, name)
        return plan, []
    return plan, list(plan.delete)


def rotate_folder(directory: str, name_format: str, keep: int, max_age: str, utc: bool,
                  dry_run: bool = False, now: datetime.datetime | None = None) -> rotation.Plan:
    """Rotate one local folder by the rules; return the plan.

    A folder that does not exist has nothing to rotate. Call it holding the
    backup lock unless ``dry_run``.
    """
    try:
        names = [entry.name for entry in os.scandir(directory)
                 if entry.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        names = []
    plan, deletions = plan_deletions(names, name_format, keep, max_age,
                                     now or clock_now(utc), dry_run, "rotation", directory)
    for name in deletions:
        for victim in [name, *rotation.companions(name)]:
            unlink_quiet(os.path.join(directory, victim))
        log.info("rotation: deleted %s/%s (not among the %d newest, older than %s)",
                 directory, name, keep, max_age)
    return plan


def cloud_retention(config: dict, key: str) -> tuple[int, str]:
    """(keep, max_age) of the cloud copies of schedule ``key``: the cloud's
    own retention, else the folder's."""
    _dir, _format, keep, max_age = folder_settings(config, key)
    retention = ((config.get("cloud") or {}).get("retention") or {}).get(key) or {}
    try:
        return int(retention.get("keep", keep)), str(retention.get("max_age", max_age))
    except (TypeError, ValueError) as exc:
        raise BackupError(f"the cloud retention of {key!r}: keep {retention.get('keep')!r} "
                          "is not a whole number") from exc


def rotate_remote(cloud: dict, folder: str, name_format: str, keep: int, max_age: str,
                  utc: bool, dry_run: bool = False,
                  now: datetime.datetime | None = None) -> rotation.Plan:
    """The same rules on the remote folder, with the remote's own retention."""
    names = [item["Name"] for item in remote_files(cloud, folder)]
    plan, deletions = plan_deletions(names, name_format, keep, max_age, now or clock_now(utc),
                                     dry_run, "cloud rotation", folder)
    for name in deletions:
        delete_remote(cloud, folder, name)
        if name + SIDECAR_SUFFIX in names:
            delete_remote(cloud, folder, name + SIDECAR_SUFFIX)
        log.info("cloud rotation: deleted %s/%s", remote_dir(cloud, folder), name)
    return plan


def selected(config: dict, schedules: list[str] | None) -> list[str]:
    """The schedules to rotate, in the configuration's order; all by default."""
    folders = list((config.get("folders") or {}).keys())
    unknown = [name for name in schedules or [] if name not in folders]
    if unknown:
        raise BackupError(f"no schedule {unknown[0]!r} in the configuration "
                          f"(have: {', '.join(folders) or 'none'})")
    return [key for key in folders if not schedules or key in schedules]


def check_settings(config: dict, keys: list[str], cloud: bool) -> None:
    """Every folder's settings before anything is deleted in any folder."""
    for key in keys:
        directory, name_format, keep, max_age = folder_settings(config, key)
        try:
            rotation.check_settings(name_format, keep, max_age)
        except rotation.RotationError as exc:
            raise BackupError(f"rotation settings of {directory}: {exc}") from exc
        if cloud:
            try:
                rotation.check_settings(name_format, *cloud_retention(config, key))
            except rotation.RotationError as exc:
                raise BackupError(f"cloud rotation settings of {key}: {exc}") from exc


def _report(path: str, plan: rotation.Plan) -> dict:
    return {"path": path, **plan.as_dict()}


def rotate_local(config: dict, keys: list[str], now: datetime.datetime, dry_run: bool) -> dict:
    """Rotate the folders of ``keys``; hold the backup lock unless ``dry_run``."""
    result = {}
    for key in keys:
        directory, name_format, keep, max_age = folder_settings(config, key)
        plan = rotate_folder(directory, name_format, keep, max_age,
                             bool(config.get("utc", False)), dry_run=dry_run, now=now)
        log.info("rotation of %s: %d kept, %d %s", directory, len(plan.keep), len(plan.delete),
                 "would be deleted" if dry_run else "deleted")
        result[key] = _report(directory, plan)
    return result


def rotate_cloud(config: dict, keys: list[str], now: datetime.datetime, dry_run: bool) -> dict:
    """Rotate the cloud copies of ``keys``, under the uploads' lock unless ``dry_run``."""
    cloud = config.get("cloud") or {}
    if not cloud.get("remote"):
        raise BackupError("no cloud copy is configured (cloud.remote)")

    def rotate_all() -> dict:
        result = {}
        for key in keys:
            name_format = folder_settings(config, key)[1]
            keep, max_age = cloud_retention(config, key)
            plan = rotate_remote(cloud, key, name_format, keep, max_age,
                                 bool(config.get("utc", False)), dry_run=dry_run, now=now)
            result[key] = _report(remote_dir(cloud, key), plan)
        return result

    if dry_run:
        return rotate_all()
    with config_lock(config, "rotate the cloud copies", suffix=".upload"):
        return rotate_all()


def run(args) -> dict:
    config = load_config(args.config, require_db=False)
    keys = selected(config, args.schedule)
    if args.cloud and not (config.get("cloud") or {}).get("remote"):
        raise BackupError("no cloud copy is configured (cloud.remote): nothing to rotate "
                          "with --cloud")
    check_settings(config, keys, cloud=args.cloud)
    utc = bool(config.get("utc", False))
    if args.dry_run:
        now = args.now or clock_now(utc)
        folders = rotate_local(config, keys, now, dry_run=True)
    else:
        with config_lock(config, f"rotate {', '.join(keys) or 'nothing'}"):
            now = args.now or clock_now(utc)  # after the wait for the lock
            folders = rotate_local(config, keys, now, dry_run=False)
    result = {"now": now.isoformat(), "dry_run": args.dry_run, "folders": folders}
    if args.cloud:
        result["cloud"] = rotate_cloud(config, keys, now, args.dry_run)
    return result
