# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cloud copy, through rclone: upload, list, delete and fetch.

``cloud`` is the configuration's ``cloud`` section: ``remote``
(``<rclone remote>:<bucket>/<prefix>``), ``rclone`` (the binary),
``rclone_config``, ``require_encryption``, ``timeout``, ``retries``,
``low_level_retries`` and ``retention`` (per schedule: keep, max_age).
A schedule's copies live in ``<remote>/<schedule>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from .errors import BackupError, describe_returncode, one_line
from .files import partial_path_for, unlink_quiet
from .names import ENCRYPTED_SUFFIX, SIDECAR_SUFFIX


def rclone_argv(cloud: dict, *args: str) -> list[str]:
    binary = cloud.get("rclone") or shutil.which("rclone") or "rclone"
    config = ["--config", cloud["rclone_config"]] if cloud.get("rclone_config") else []
    return [binary, *config, "--retries", str(cloud.get("retries", 3)),
            "--low-level-retries", str(cloud.get("low_level_retries", 10)), *args]


# rclone's exit code for "directory not found" (a remote folder nothing was
# uploaded to yet, on a backend with real folders: local, sftp, ...).
RCLONE_DIRECTORY_NOT_FOUND = 3


def run_rclone(cloud: dict, *args: str, timeout: float | None = None,
               empty_if: tuple[int, ...] = ()) -> str:
    """rclone's stdout; "" when it exits with one of ``empty_if``."""
    argv = rclone_argv(cloud, *args)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=timeout or float(cloud.get("timeout", 3600)), check=False)
    except FileNotFoundError as exc:
        raise BackupError(f"rclone is not installed ({argv[0]})") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"rclone {args[0]} did not finish in time") from exc
    if result.returncode in empty_if:
        return ""
    if result.returncode != 0:
        raise BackupError(f"rclone {args[0]} failed ({describe_returncode(result.returncode)}): "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'), 400)}")
    return result.stdout.decode("utf-8", "replace")


def remote_dir(cloud: dict, folder: str) -> str:
    return f"{cloud['remote'].rstrip('/')}/{folder}"


def upload(cloud: dict, folder: str, path: str) -> str:
    """Copy a backup and its sidecar to <remote>/<folder>/; return the remote path."""
    name = os.path.basename(path)
    if cloud.get("require_encryption", True) and not name.endswith(ENCRYPTED_SUFFIX):
        raise BackupError(f"refusing to upload {name}: it is not encrypted and the cloud copy "
                          "requires encryption (cloud.require_encryption)")
    target = f"{remote_dir(cloud, folder)}/{name}"
    run_rclone(cloud, "copyto", path, target)
    run_rclone(cloud, "copyto", path + SIDECAR_SUFFIX, target + SIDECAR_SUFFIX)
    return target


def remote_files(cloud: dict, folder: str) -> list[dict]:
    """rclone lsjson of <remote>/<folder>/: the files (Name, Size, ModTime, ...)."""
    out = run_rclone(cloud, "lsjson", "--files-only", "--no-mimetype", remote_dir(cloud, folder),
                     timeout=300, empty_if=(RCLONE_DIRECTORY_NOT_FOUND,))
    try:
        items = json.loads(out or "[]")
    except ValueError as exc:
        raise BackupError(f"rclone lsjson gave no JSON: {exc}") from exc
    return [item for item in items if isinstance(item, dict) and not item.get("IsDir")]


def delete_remote(cloud: dict, folder: str, name: str) -> None:
    run_rclone(cloud, "deletefile", f"{remote_dir(cloud, folder)}/{name}", timeout=300)


def fetch(cloud: dict, remote: str, path: str) -> None:
    """Copy ``remote`` and its sidecar to ``path`` (0600), the file under a
    partial name until it is complete."""
    partial = partial_path_for(path)
    try:
        run_rclone(cloud, "copyto", remote + SIDECAR_SUFFIX, path + SIDECAR_SUFFIX)
        run_rclone(cloud, "copyto", remote, partial)
        os.chmod(partial, 0o600)
        os.chmod(path + SIDECAR_SUFFIX, 0o600)
        os.rename(partial, path)
    except BaseException:
        unlink_quiet(partial)
        raise
