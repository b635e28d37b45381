# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status file: last_success / last_failure / last_verify / ... as JSON.

``playbooks/health.yml`` shows it; the scheduled runs keep one record per
schedule too (``schedules.<daily|weekly|monthly>``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os

from .errors import BackupError
from .files import atomic_write, ensure_dir

log = logging.getLogger(__name__)


def read_status(path: str) -> dict:
    """The status file's content; {} when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            loaded = json.load(handle)
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def update_status(path: str, key: str, record: dict | None, section: str | None = None) -> None:
    """Set ``key`` (last_success / last_failure / ...) in the JSON status file.

    With ``section`` the key is set in ``data["schedules"][section]`` (the
    record of one schedule: daily, weekly, monthly).

    Read-modify-write under a flock on the status file's directory (runs that
    gave up waiting for the backup lock write here too), then an atomic
    replace, so readers never see a half-written file.
    """
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    ensure_dir(directory)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        data: dict = {}
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            if isinstance(loaded, dict):
                data = loaded
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as exc:
            log.warning("replacing unreadable status file %s: %s", path, exc)
        if section is None:
            data[key] = record
        else:
            schedules = data.setdefault("schedules", {})
            if not isinstance(schedules, dict):
                schedules = data["schedules"] = {}
            entry = schedules.setdefault(section, {})
            if not isinstance(entry, dict):
                entry = schedules[section] = {}
            entry[key] = record
        atomic_write(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    finally:
        os.close(dir_fd)


def record(status_file: str | None, key: str, entry: dict, section: str | None = None) -> None:
    """``update_status`` when there is a status file; a failure is only a warning."""
    if not status_file:
        return
    try:
        update_status(status_file, key, entry, section)
    except (OSError, BackupError) as exc:
        log.warning("could not update status file %s: %s", status_file, exc)
