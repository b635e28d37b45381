# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugins of the backup side: the helper playbooks' reports, as lines
to print (each takes what a module or the backup program returned and gives
a list of lines: a debug task prints one per line), and the program's folder
configuration. Documented in the .yml files beside this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.formatters import bytes_to_human


def _row(name, folder, size, age, checksum) -> str:
    return f"{name:<52} {folder:<8} {size:>10} {age:>10}  {checksum}"


def _size(value) -> str:
    try:
        return bytes_to_human(int(value or 0))
    except (TypeError, ValueError):
        return "?"


def _age(seconds) -> str:
    age = int(seconds or 0)
    if age >= 86400:
        return f"{age // 86400}d {age % 86400 // 3600:02d}h"
    return f"{age // 3600}h {age % 3600 // 60:02d}m"


def rotation_report(result: dict, check_mode: bool = False) -> list[str]:
    """One line per folder of a fieldservice.deploy.backup_rotate result:
    ``daily: deleted a, b; kept 7`` (``would delete`` in check mode), and
    ``cloud daily: ...`` for the cloud copies."""
    if not isinstance(result, dict) or not isinstance(result.get("folders"), dict):
        raise AnsibleFilterError("rotation_report expects the result of fieldservice.deploy.backup_rotate")
    verb = "would delete" if check_mode else "deleted"
    lines = []
    for name, plan in result["folders"].items():
        deleted = ", ".join(plan.get("delete") or []) or "nothing"
        reason = f" ({plan['reason']})" if plan.get("reason") else ""
        lines.append(f"{name}: {verb} {deleted}; kept {len(plan.get('keep') or [])}{reason}")
    for name, plan in (result.get("cloud") or {}).items():
        deleted = ", ".join(plan.get("delete") or []) or "nothing"
        lines.append(f"cloud {name}: {verb} {deleted}")
    return lines


def backup_table(listing: dict) -> list[str]:
    """The backup program's ``list --json`` as a table: name, folder, size, age,
    checksum state; then the cloud copies."""
    if not isinstance(listing, dict) or "backups" not in listing:
        raise AnsibleFilterError("backup_table expects the output of the backup program's list command")
    lines = [_row("NAME", "FOLDER", "SIZE", "AGE", "CHECKSUM")]
    for b in listing["backups"]:
        lines.append(_row(b["name"], b["folder"], _size(b.get("bytes")), _age(b.get("age_s")), b["checksum"]))
    for c in listing.get("cloud") or []:
        lines.append(_row(c["name"], c["folder"], _size(c.get("bytes")), "", "cloud copy"))
    return lines


def backup_summary(listing: dict) -> str:
    """``7 backup(s) on the server, 1 without a matching checksum, 3 in the
    cloud``; when the checksums were not read (``present``), it says so
    instead of counting them as not matching."""
    if not isinstance(listing, dict) or "backups" not in listing:
        raise AnsibleFilterError("backup_summary expects the output of the backup program's list command")
    backups = listing["backups"]
    states = [b.get("checksum") for b in backups]
    text = f"{len(backups)} backup(s) on the server"
    unread = states.count("present")
    if unread:
        missing = states.count("missing")
        text += (f", checksums not read ({unread} with a checksum file"
                 + (f", {missing} without one" if missing else "") + ")")
        bad = [s for s in states if s not in ("present", "missing")]
        if bad:
            text += f", {len(bad)} without a matching checksum"
    else:
        text += f", {sum(1 for s in states if s != 'ok')} without a matching checksum"
    if "cloud" in listing:
        text += f", {len(listing['cloud'])} in the cloud"
    return text


def db_size_table(rows: list) -> list[str]:
    """The db_size playbook's query rows (``DATABASE|name|pretty|bytes|`` and
    ``TABLE|schema.table|pretty|bytes|rows``) as a table."""
    lines = []
    for row in (str(r).split("|") for r in rows):
        if row[0] == "DATABASE":
            lines.append(f"Database {row[1]}: {row[2]}")
            lines.append(f"{'TABLE':<48} {'SIZE':>12} {'ROWS (est.)':>14}")
        elif row[0] == "TABLE" and len(row) >= 5:
            lines.append(f"{row[1]:<48} {row[2]:>12} {row[4]:>14}")
    return lines


def backup_folders(schedules) -> dict:
    """The backup program's ``folders`` configuration from the backup role's
    schedules: ``{name: {dir, name_format, keep, max_age}}``."""
    if not isinstance(schedules, list) or not all(isinstance(s, dict) and s.get("name") for s in schedules):
        raise AnsibleFilterError("backup_folders expects the backup role's list of schedules")
    return {s["name"]: {k: s[k] for k in ("dir", "name_format", "keep", "max_age") if k in s}
            for s in schedules}


class FilterModule:
    def filters(self):
        return {
            "rotation_report": rotation_report,
            "backup_table": backup_table,
            "backup_summary": backup_summary,
            "db_size_table": db_size_table,
            "backup_folders": backup_folders,
        }
