# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``list --config PATH [--no-checksum] [--cloud]``: every backup of every folder.

Name, folder, size, time and age (from the file's mtime), encryption and the
checksum state: ``ok``, ``mismatch``, ``missing`` (no sidecar), ``present``
(with --no-checksum, the file is not read) or ``bad: <why>``; with
``--cloud`` also the cloud copies. playbooks/list_backups.yml prints it.
"""

from __future__ import annotations

import datetime
import os
import time

from ..checksum import verify_checksum
from ..cloud import remote_files
from ..configuration import known_dirs, load_config
from ..errors import BackupError
from ..names import ENCRYPTED_SUFFIX, SIDECAR_SUFFIX


def _checksum_state(path: str, read: bool) -> str:
    if not os.path.exists(path + SIDECAR_SUFFIX):
        return "missing"
    if not read:
        return "present"
    try:
        verify_checksum(path)
    except BackupError as exc:
        return "mismatch" if "mismatch" in str(exc) else f"bad: {exc}"
    return "ok"


def run(args) -> dict:
    """Every backup of the known folders: name, folder, size, age, checksum state."""
    config = load_config(args.config)
    now = time.time()
    backups = []
    for key, directory in known_dirs(config):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except FileNotFoundError:
            continue
        for entry in entries:
            if (entry.name.startswith(".") or entry.name.endswith(SIDECAR_SUFFIX)
                    or not entry.is_file(follow_symlinks=False)):
                continue
            info = entry.stat(follow_symlinks=False)
            backups.append({
                "name": entry.name, "folder": key, "path": entry.path, "bytes": info.st_size,
                "mtime": datetime.datetime.fromtimestamp(info.st_mtime).astimezone()
                .isoformat(timespec="seconds"),
                "age_s": round(now - info.st_mtime),
                "checksum": _checksum_state(entry.path, read=not args.no_checksum),
                "encrypted": entry.name.endswith(ENCRYPTED_SUFFIX)})
    result = {"backups": backups}
    cloud = config.get("cloud") or {}
    if args.cloud and cloud.get("remote"):
        remote = []
        for folder in (config.get("folders") or {}):
            for item in remote_files(cloud, folder):
                if item["Name"].endswith(SIDECAR_SUFFIX):
                    continue
                remote.append({"name": item["Name"], "folder": f"cloud:{folder}",
                               "bytes": item.get("Size"), "mtime": item.get("ModTime")})
        result["cloud"] = remote
    return result
