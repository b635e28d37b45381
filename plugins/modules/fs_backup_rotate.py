#!/usr/bin/python
"""Ansible module: rotate the backups of one folder by the project's rotation rules."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fs_backup_rotate
short_description: Delete old backups of one folder, keeping the N newest and all younger than a limit
description:
  - Applies the backup rotation rules to one folder of backups. The same code
    (C(module_utils/fs_rotation.py)) is run by the backup program after every scheduled backup;
    this module is the cleanup command (C(playbooks/cleanup_backups.yml)).
  - "B(The rules.)"
  - "1. Only files whose whole name matches O(name_format) (strftime), optionally followed by one
    of O(suffixes) (the encryption suffix C(.age)), are backups. Any other file in the folder is
    never touched."
  - "2. A backup's time is read from its name: the second of a daily name, Monday 00:00 of an
    ISO week (C(%V) with the ISO year C(%G)), the 1st 00:00 of a month. File modification times
    are never used (they lie after a copy or a restore)."
  - "3. A backup is deleted only when it is B(both) not among the O(keep) newest backups of the
    folder B(and) older than O(max_age), that is dated before now minus O(max_age) (months and
    years on the calendar). Backups that stopped for a while therefore never wipe out the
    history: the O(keep) newest stay whatever their age."
  - "4. The newest backup of a folder is never deleted (O(keep) is at least 1)."
  - "5. When any backup is dated after now (the clock jumped back), nothing is deleted."
  - "6. The backup program rotates a folder only after a new backup of it succeeded. With a
    deleted backup goes its checksum sidecar C(<name>.sha256)."
  - The seed's schedules are C(daily) keep 7 / C(7d), C(weekly) keep 4 / C(4w), C(monthly)
    keep 12 / C(12m).
  - In check mode nothing is deleted and RV(deleted) lists what would be.
version_added: "0.1.0"
author: field-service-deploy
options:
  path:
    description: The folder of backups. A folder that does not exist has nothing to rotate.
    type: path
    required: true
  name_format:
    description:
      - strftime format of the backups' names, e.g. C(field_service_%Y%m%d_%H%M%S.sql.gz),
        C(field_service_week_%V_%G.sql.gz), C(field_service_%Y_%m.sql.gz).
      - Allowed directives C(%Y %y %m %d %j %H %M %S %G %V %u %%); an ISO week needs C(%V) and C(%G).
    type: str
    required: true
  keep:
    description: How many of the newest backups are always kept (at least 1).
    type: int
    required: true
  max_age:
    description:
      - Age limit, a number and a unit, C(h) hours, C(d) days, C(w) weeks, C(m) calendar months,
        C(y) years, e.g. C(7d), C(4w), C(12m). Only older backups may be deleted.
    type: str
    required: true
  suffixes:
    description: Suffixes that may follow a name (what an encryption stage appends).
    type: list
    elements: str
    default: ['.age']
  utc:
    description: The names were written in UTC (the backup program's C(--utc)); default local time.
    type: bool
    default: false
  now:
    description:
      - The time to rotate at, C(YYYY-MM-DDTHH:MM:SS) on the clock of the names (local time, or
        UTC with O(utc)). Default the current time. Useful to ask what a rotation would do later.
    type: str
  lock_file:
    description:
      - A lock file shared with the backup program (C(<app_backup_root>/.fs_backup.lock)); when
        given, the rotation waits for a running backup and holds the lock while it deletes.
    type: path
  lock_timeout:
    description: Seconds to wait for O(lock_file).
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    description: Lists in RV(deleted) what would be deleted and deletes nothing.
  diff_mode:
    support: full
    description: The folder's backups before and after, one name per line.
  idempotent:
    support: full
    description: A second run right after the first deletes nothing.
"""

EXAMPLES = r"""
- name: Rotate the daily backups (keep 7, and everything younger than 7 days)
  fs_backup_rotate:
    path: /opt/backups/daily
    name_format: field_service_%Y%m%d_%H%M%S.sql.gz
    keep: 7
    max_age: 7d
    lock_file: /opt/backups/.fs_backup.lock

- name: What would a rotation of the weekly backups delete (run with --check)
  fs_backup_rotate:
    path: /opt/backups/weekly
    name_format: field_service_week_%V_%G.sql.gz
    keep: 4
    max_age: 4w
  check_mode: true
  register: weekly

- name: Rotate the monthly backups as they would be rotated at the next new year
  fs_backup_rotate:
    path: /opt/backups/monthly
    name_format: field_service_%Y_%m.sql.gz
    keep: 12
    max_age: 12m
    now: "2026-01-01T04:00:00"
  check_mode: true
"""

RETURN = r"""
deleted:
  description: Backups deleted (in check mode, that would be deleted), newest first.
  returned: always
  type: list
  elements: str
  sample: [field_service_20251001_020000.sql.gz.age]
kept:
  description: Backups kept, newest first.
  returned: always
  type: list
  elements: str
ignored:
  description: Files of the folder that are not its backups (never touched); sidecars, hidden files left out.
  returned: always
  type: list
  elements: str
reason:
  description: Why nothing was deleted although old backups are there (a clock that went back), else null.
  returned: always
  type: str
now:
  description: The time the rotation ran at, on the clock of the names.
  returned: always
  type: str
  sample: "2025-10-10T02:00:41"
"""

import datetime
import errno
import fcntl
import os
import time

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils import fs_rotation as rotation
except ImportError:  # pragma: no cover - direct import in unit tests
    import fs_rotation as rotation

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "name_format": {"type": "str", "required": True},
    "keep": {"type": "int", "required": True},
    "max_age": {"type": "str", "required": True},
    "suffixes": {"type": "list", "elements": "str", "default": [".age"]},
    "utc": {"type": "bool", "default": False},
    "now": {"type": "str"},
    "lock_file": {"type": "path"},
    "lock_timeout": {"type": "int", "default": 600},
}


class LockTimeout(Exception):
    pass


def take_lock(path: str, timeout: float) -> int:
    """flock ``path`` (the backup program's lock); return the fd to close."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
        if time.monotonic() >= deadline:
            os.close(fd)
            raise LockTimeout(f"a backup held {path} for more than {timeout:g}s")
        time.sleep(0.2)


def current_time(utc: bool) -> datetime.datetime:
    if utc:
        return datetime.datetime.now(datetime.timezone.utc).replace(  # noqa: UP017 - Python 3.8+
            tzinfo=None, microsecond=0)
    return datetime.datetime.now().replace(microsecond=0)


def rotate(path: str, fmt: str, keep: int, max_age: str, now: datetime.datetime,
           suffixes, check_mode: bool) -> rotation.Plan:
    """Plan the folder and (unless check_mode) delete what the plan says."""
    if not os.path.isdir(path):
        return rotation.plan_rotation([], fmt, keep, max_age, now, suffixes)
    names = [entry.name for entry in os.scandir(path) if entry.is_file(follow_symlinks=False)]
    plan = rotation.plan_rotation(names, fmt, keep, max_age, now, suffixes)
    if not check_mode:
        for name in plan.delete:
            for victim in [name, *rotation.companions(name)]:
                try:
                    os.unlink(os.path.join(path, victim))
                except FileNotFoundError:
                    pass
    return plan


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    try:
        rotation.check_settings(p["name_format"], p["keep"], p["max_age"])
        now = (datetime.datetime.strptime(p["now"], "%Y-%m-%dT%H:%M:%S") if p["now"]
               else current_time(p["utc"]))
    except (rotation.RotationError, ValueError) as exc:
        module.fail_json(msg=f"invalid rotation settings: {exc}")
    fd = None
    try:
        if p["lock_file"] and os.path.isdir(os.path.dirname(p["lock_file"])) and not module.check_mode:
            fd = take_lock(p["lock_file"], p["lock_timeout"])
        plan = rotate(p["path"], p["name_format"], p["keep"], p["max_age"], now,
                             tuple(p["suffixes"]), module.check_mode)
    except (LockTimeout, OSError, rotation.RotationError) as exc:
        module.fail_json(msg=f"rotation of {p['path']} failed: {exc}")
    finally:
        if fd is not None:
            os.close(fd)
    result = {
        "changed": bool(plan.delete),
        "deleted": plan.delete,
        "kept": plan.keep,
        "ignored": plan.ignored,
        "reason": plan.reason,
        "now": now.isoformat(),
    }
    if plan.delete:
        backups = sorted(plan.keep + plan.delete)
        result["diff"] = {
            "before_header": p["path"],
            "after_header": p["path"],
            "before": "".join(f"{n}\n" for n in backups),
            "after": "".join(f"{n}\n" for n in backups if n not in plan.delete),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
