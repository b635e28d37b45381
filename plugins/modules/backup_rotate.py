#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: rotate the backup folders of a server with the installed backup program."""

DOCUMENTATION = r"""
---
module: backup_rotate
short_description: Delete old backups, keeping the N newest and all younger than a limit
description:
  - Rotates the backup folders of the server (and, with O(cloud=true), their cloud copies) by
    running the installed backup program's C(rotate) action (C(fs-backup rotate --json)). The
    rules are applied by that action, which is the same code cron runs after every scheduled
    backup, under the same server-wide backup lock, with the same clock and folder scan; this
    module only drives it and reports what it did. It is the cleanup command
    (C(playbooks/cleanup_backups.yml)).
  - Each folder's settings come from the program's configuration O(config), which the backup
    role writes from C(backup_<schedule>_dir), C(backup_<schedule>_name_format),
    C(backup_<schedule>_keep), C(backup_<schedule>_max_age) and C(backup_utc), and the cloud
    copy's from C(backup_cloud_remote) and C(backup_cloud_retention).
  - "B(The rules.)"
  - "1. Only files whose whole name matches the folder's name format (strftime), optionally
    followed by the encryption suffix C(.age), are backups. Any other file in the folder is
    never touched."
  - "2. A backup's time is read from its name: the second of a daily name, Monday 00:00 of an
    ISO week (C(%V) with the ISO year C(%G)), the 1st 00:00 of a month. File modification times
    are never used (they lie after a copy or a restore)."
  - "3. A backup is deleted only when it is B(both) not among the C(keep) newest backups of the
    folder B(and) older than its age limit C(max_age), that is dated before now minus
    C(max_age) (months and years on the calendar). Backups that stopped for a while therefore
    never wipe out the history: the C(keep) newest stay whatever their age."
  - "4. The newest backup of a folder is never deleted (C(keep) is at least 1)."
  - "5. When any backup is dated after now (the clock jumped back), nothing is deleted."
  - "6. The backup program rotates a folder after every scheduled backup, and only after a new
    backup of it succeeded; this module rotates when a person asks for it. With a deleted
    backup goes its checksum sidecar C(<name>.sha256)."
  - The seed's schedules are C(daily) keep 7 / C(7d), C(weekly) keep 4 / C(4w), C(monthly)
    keep 12 / C(12m).
  - In check mode the program runs with C(--dry-run), takes no lock and deletes nothing;
    RV(deleted) lists what would be deleted.
version_added: "0.3.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  config:
    description:
      - The backup program's configuration file on the server (the role's C(backup_config_file),
        C(<app_root>/backup/config.json)). It names the folders, their rotation settings, the
        lock file and its timeout, and the cloud copy.
    type: path
    required: true
  program:
    description:
      - The backup program's entry script, installed by the backup role next to its package in the
        current version's folder (C(<backup_install_dir>/current/fs-backup) and
        C(<backup_install_dir>/current/fs_backup/)).
    type: path
    default: /usr/local/lib/field-service-backup/current/fs-backup
  python:
    description: The Python 3 (3.8 or newer) that runs the program (the role's C(backup_python)).
    type: path
    default: /usr/bin/python3
  schedules:
    description:
      - The schedules (folders of the configuration) to rotate, e.g. C([daily]). Default all of
        them.
    type: list
    elements: str
  cloud:
    description: Rotate the cloud copies too, by the cloud's own retention (C(backup_cloud_retention)).
    type: bool
    default: false
  now:
    description:
      - The time to rotate at, C(YYYY-MM-DDTHH:MM:SS) on the clock of the names (local time, or
        UTC with C(backup_utc)). Default the current time. Useful to ask (in check mode) what a
        rotation would do later.
    type: str
attributes:
  check_mode:
    support: full
    description: Lists in RV(deleted) what would be deleted and deletes nothing.
  diff_mode:
    support: full
    description: Each folder with deletions, its backups before and after, one name per line.
  idempotent:
    support: full
    description: A second run right after the first deletes nothing.
"""

EXAMPLES = r"""
- name: Rotate every backup folder of the server
  fieldservice.deploy.backup_rotate:
    config: /opt/field-service/backup/config.json

- name: What would a rotation of the weekly backups delete (run with --check --diff)
  fieldservice.deploy.backup_rotate:
    config: /opt/field-service/backup/config.json
    schedules: [weekly]
  check_mode: true
  register: weekly

- name: Rotate the backups and their cloud copies
  fieldservice.deploy.backup_rotate:
    config: /opt/field-service/backup/config.json
    cloud: true

- name: What a rotation of the monthly backups would delete at the next new year
  fieldservice.deploy.backup_rotate:
    config: /opt/field-service/backup/config.json
    schedules: [monthly]
    now: "2026-01-01T04:00:00"
  check_mode: true
"""

RETURN = r"""
deleted:
  description:
    - Backups deleted from the server's folders (in check mode, that would be deleted), folder by
      folder, newest first. Their sidecars went with them. The cloud's are in RV(cloud).
  returned: always
  type: list
  elements: str
  sample: [field_service_20251001_020000.sql.gz.age]
folders:
  description: Each rotated folder (by schedule), as the program reports it.
  returned: always
  type: dict
  contains:
    path:
      description: The folder.
      type: str
      sample: /opt/backups/daily
    keep:
      description: Backups kept, newest first.
      type: list
      elements: str
    delete:
      description: Backups deleted (in check mode, that would be deleted), newest first.
      type: list
      elements: str
    ignored:
      description:
        - Files of the folder that are not its backups (never touched); sidecars and hidden files
          left out.
      type: list
      elements: str
    reason:
      description: Why nothing was deleted although old backups are there (a clock that went back), else null.
      type: str
  sample:
    daily:
      path: /opt/backups/daily
      keep: [field_service_20251010_020000.sql.gz.age]
      delete: [field_service_20251001_020000.sql.gz.age]
      ignored: []
      reason: null
cloud:
  description: The same for the cloud copies (C(path) is the remote folder).
  returned: when O(cloud=true)
  type: dict
now:
  description: The time the rotation ran at, on the clock of the names.
  returned: always
  type: str
  sample: "2025-10-10T02:00:41"
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

ERROR_PREFIX = "fs_backup: ERROR: "

ARGUMENT_SPEC = {
    "config": {"type": "path", "required": True},
    "program": {"type": "path", "default": "/usr/local/lib/field-service-backup/current/fs-backup"},
    "python": {"type": "path", "default": "/usr/bin/python3"},
    "schedules": {"type": "list", "elements": "str"},
    "cloud": {"type": "bool", "default": False},
    "now": {"type": "str"},
}


def command(params, check_mode):
    """The program's command line for these options."""
    argv = [params["python"], params["program"], "rotate", "--config", params["config"], "--json"]
    if check_mode:
        argv.append("--dry-run")
    for schedule in params["schedules"] or []:
        argv += ["--schedule", schedule]
    if params["cloud"]:
        argv.append("--cloud")
    if params["now"]:
        argv += ["--now", params["now"]]
    return argv


def error_message(rc, stdout, stderr):
    """The program's one ERROR line (without its prefix), else what it printed last."""
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR_PREFIX)]
    if lines:
        return lines[-1][len(ERROR_PREFIX):]
    tail = [line for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    return f"the backup program exited {rc}" + (f": {tail[-1].strip()}" if tail else "")


def diffs(result):
    """Each folder with deletions: its backups before and after, one per line."""
    out = []
    for section in ("folders", "cloud"):
        for plan in (result.get(section) or {}).values():
            if not plan["delete"]:
                continue
            backups = sorted(plan["keep"] + plan["delete"])
            out.append({
                "before_header": plan["path"],
                "after_header": plan["path"],
                "before": "".join(f"{name}\n" for name in backups),
                "after": "".join(f"{name}\n" for name in backups if name not in plan["delete"]),
            })
    return out


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    for option in ("python", "program"):
        if not os.path.isfile(params[option]):
            module.fail_json(msg=f"{option} {params[option]} does not exist: the backup role "
                                 "installs the program (and /usr/bin/python3 runs it)")
    argv = command(params, module.check_mode)
    rc, stdout, stderr = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=error_message(rc, stdout, stderr), rc=rc, cmd=argv,
                         stdout=stdout, stderr=stderr)
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        module.fail_json(msg="the backup program printed no JSON report", rc=rc, cmd=argv,
                         stdout=stdout, stderr=stderr)
    folders = report.get("folders") or {}
    deleted = [name for plan in folders.values() for name in plan["delete"]]
    cloud_deleted = [name for plan in (report.get("cloud") or {}).values()
                     for name in plan["delete"]]
    result = {
        "changed": bool(deleted or cloud_deleted),
        "deleted": deleted,
        "folders": folders,
        "now": report.get("now"),
    }
    if params["cloud"]:
        result["cloud"] = report.get("cloud") or {}
    changes = diffs(report)
    if changes:
        result["diff"] = changes
    module.exit_json(**result)


if __name__ == "__main__":
    main()
