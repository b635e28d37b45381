# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The configuration: the JSON file roles/backup writes (``backup_config_file``,
built in roles/backup/vars/main.yml from the ``backup_*`` variables), read by
``run`` (cron), ``rotate`` and friends; ``check-config`` validates it."""

from __future__ import annotations

import argparse
import json
import os
import sys

from .compression import COMPRESS_SUFFIXES, DEFAULT_LEVELS, default_threads
from .errors import BackupError
from .lock import DEFAULT_LOCK_FILE, DEFAULT_LOCK_TIMEOUT

STDIN = "-"


def read_config(path: str) -> object:
    """The parsed JSON of ``path`` (``-``: standard input), whatever it holds."""
    where = "on stdin" if path == STDIN else path
    try:
        if path == STDIN:
            return json.load(sys.stdin)
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise BackupError(f"cannot read the configuration {where}: {exc.strerror}") from exc
    except ValueError as exc:
        raise BackupError(f"the configuration {where} is not JSON: {exc}") from exc


def config_value(path: str | None, key: str):
    """One top-level value of the configuration file, or None (never raises)."""
    if not path or path == STDIN:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def load_config(path: str, require_db: bool = True) -> dict:
    """The configuration, with the database settings the commands that reach
    the database need (``require_db``; rotate does not).

    A password in it (external database) goes to PGPASSWORD, from where the
    clients get it by name.
    """
    config = read_config(path)
    if not isinstance(config, dict):
        raise BackupError(f"the configuration {path} is not a JSON object")
    if not require_db:
        return config
    if not isinstance(config.get("db"), dict):
        raise BackupError(f"the configuration {path} has no 'db' section")
    for key in ("user", "name"):
        if not config["db"].get(key):
            raise BackupError(f"the configuration {path} has no db.{key}")
    if not config["db"].get("container") and not (config["db"].get("host")
                                                  and config["db"].get("pg_image")):
        raise BackupError(f"the configuration {path} needs db.container, or db.host and "
                          "db.pg_image")
    if config["db"].get("password") and not os.environ.get("PGPASSWORD"):
        os.environ["PGPASSWORD"] = str(config["db"]["password"])
    return config


def db_namespace(config: dict, **extra) -> argparse.Namespace:
    """The database options of the command line, from the configuration."""
    db = config["db"]
    container = db.get("container") or None
    values = {
        "db_container": container,
        "db_host": None if container else db.get("host"),
        "db_port": None if container else int(db.get("port") or 5432),
        "pg_image": None if container else db.get("pg_image"),
        "network": None if container else (db.get("network") or None),
        "db_user": db["user"],
        "db_name": db["name"],
        "lock_file": config.get("lock_file", DEFAULT_LOCK_FILE),
        "lock_timeout": float(config.get("lock_timeout", DEFAULT_LOCK_TIMEOUT)),
        "status_file": config.get("status_file"),
        "utc": bool(config.get("utc", False)),
    }
    values.update(extra)
    return argparse.Namespace(**values)


def dump_namespace(config: dict, dest_dir: str, name_format: str, **extra) -> argparse.Namespace:
    """The options of ``dump`` into ``dest_dir``, from the configuration."""
    compress = config.get("compress", "gzip")
    if compress not in COMPRESS_SUFFIXES:
        raise BackupError(f"unknown compression {compress!r} in the configuration")
    level = config.get("level")
    if compress != "none":
        level = int(level) if level else DEFAULT_LEVELS[compress]
    encrypt = config.get("encrypt") or "none"
    if encrypt not in ("none", "age"):
        raise BackupError(f"unknown encryption {encrypt!r} in the configuration (none or age)")
    values = {"dest_dir": dest_dir, "name": None, "name_format": name_format,
              "compress": compress, "level": level,
              "threads": int(config.get("threads") or 0) or default_threads(),
              "encrypt": encrypt, "recipient": list(config.get("recipients") or []),
              "recipients_file": list(config.get("recipients_files") or []),
              "replace": False, "rotate_keep": None, "rotate_max_age": None, "ping_url": None}
    values.update(extra)
    return db_namespace(config, **values)


def folder_settings(config: dict, key: str) -> tuple[str, str, int, str]:
    """(dir, name_format, keep, max_age) of the schedule ``key``'s folder."""
    folders = config.get("folders") or {}
    if key not in folders:
        raise BackupError(f"no schedule {key!r} in the configuration "
                          f"(have: {', '.join(sorted(folders)) or 'none'})")
    folder = folders[key]
    missing = [name for name in ("dir", "name_format", "keep", "max_age")
               if not isinstance(folder, dict) or folder.get(name) in (None, "")]
    if missing:
        raise BackupError(f"the folder {key!r} of the configuration has no {', '.join(missing)}")
    try:
        keep = int(folder["keep"])
    except (TypeError, ValueError) as exc:
        raise BackupError(f"the folder {key!r} of the configuration: keep {folder['keep']!r} "
                          "is not a whole number") from exc
    return str(folder["dir"]), str(folder["name_format"]), keep, str(folder["max_age"])


def known_dirs(config: dict) -> list[tuple[str, str]]:
    """(folder name, path) of every local folder that holds backups, in search order."""
    dirs = [(key, folder["dir"]) for key, folder in (config.get("folders") or {}).items()]
    for path in config.get("other_dirs") or []:
        dirs.append((os.path.basename(path.rstrip("/")), path))
    if config.get("restore_dir"):
        dirs.append(("restore", config["restore_dir"]))
    seen, result = set(), []
    for key, path in dirs:
        if path not in seen:
            seen.add(path)
            result.append((key, path))
    return result
