# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``locate NAME --config PATH [--no-fetch]``: find a backup by the name a person gives.

The name must be a bare backup file name as playbooks/list_backups.yml shows
it (``names.check_request_name``: no '/', no '..', not a sidecar), refused
before anything is looked at. Looked for in the local folders in order
(daily, weekly, monthly, then ``other_dirs``: deploy, safety, then the
restore folder), then in the cloud copy, from where it is fetched with its
sidecar into ``restore_dir`` (unless ``--no-fetch``). restore ``--name`` and
playbooks/download_backup.yml find backups this way.
"""

from __future__ import annotations

import logging
import os

from ..cloud import fetch, remote_dir, remote_files
from ..configuration import known_dirs, load_config
from ..errors import BackupError
from ..files import ensure_dir
from ..names import SIDECAR_SUFFIX, check_request_name

log = logging.getLogger(__name__)


def locate(config: dict, name: str, fetch_it: bool = True) -> dict:
    """Find a backup by name in the local folders, else in the cloud (and fetch it)."""
    check_request_name(name)
    for key, directory in known_dirs(config):
        path = os.path.join(directory, name)
        if os.path.isfile(path) and not os.path.islink(path):
            return {"name": name, "path": path, "folder": key, "source": "local"}
    cloud = config.get("cloud") or {}
    if cloud.get("remote"):
        for folder in (config.get("folders") or {}):
            names = {item["Name"] for item in remote_files(cloud, folder)}
            if name not in names:
                continue
            if name + SIDECAR_SUFFIX not in names:
                raise BackupError(f"{name} is in the cloud ({folder}) without its checksum sidecar")
            result = {"name": name, "folder": folder, "source": "cloud",
                      "remote": f"{remote_dir(cloud, folder)}/{name}"}
            if fetch_it:
                restore_dir = config.get("restore_dir")
                if not restore_dir:
                    raise BackupError("no restore_dir in the configuration to fetch into")
                ensure_dir(restore_dir)
                path = os.path.join(restore_dir, name)
                fetch(cloud, result["remote"], path)
                result["path"] = path
                log.info("fetched %s from %s", name, result["remote"])
            return result
    raise BackupError(f"no backup named {name!r} on this server"
                      + (" or in the cloud" if cloud.get("remote") else "")
                      + ": see playbooks/list_backups.yml")


def run(args) -> dict:
    check_request_name(args.name)  # before anything, even the configuration
    return locate(load_config(args.config), args.name, fetch_it=not args.no_fetch)
