# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``check-config --config PATH|-``: is this configuration usable, before it is used?

The configuration is the JSON roles/backup writes from the ``backup_*``
variables (roles/backup/vars/main.yml); ``-`` reads it from stdin, so the
role can check it before anything reaches the server. Checked: the database
settings, compression, each folder's rotation settings through the rotation
rules themselves (name format, keep, age limit) and that its names tell
their compression, the age recipients when encryption is on (public keys
only: anything that looks like ``AGE-SECRET-KEY`` is refused, encryption on
or off), the cloud copy (a remote ``<name>:<bucket>/<prefix>``, encryption
unless ``require_encryption`` is false, its retention through the rules),
lock, status, log and ping settings.

Exit 0 (``{"ok": true, ...}`` with --json) or exit 2 with ONE error line
that names the setting by its Ansible variable (the configuration key in
brackets), e.g. ``backup_weekly_name_format (folders.weekly.name_format):
name format '...': an ISO week needs both %V and %G ...``.
"""

from __future__ import annotations

import logging
import os
import re

from .. import notify, rotation
from ..compression import COMPRESS_SUFFIXES, LEVEL_RANGES
from ..configuration import read_config
from ..encryption import is_private_key, is_public_key
from ..errors import BackupError, ConfigError
from ..names import ENCRYPTED_SUFFIX

log = logging.getLogger(__name__)

SCHEDULES = ("daily", "weekly", "monthly")  # backup_<schedule>_* in roles/backup
CLOUD_REMOTE_RE = re.compile(r"^[A-Za-z0-9_.-]+:\S.*$")

ENCRYPTION_ADVICE = (
    "backup_encrypt is true but backup_age_recipients is empty or holds something that is not an "
    "age public key (age1...). Make a key pair with age-keygen, put the PUBLIC key in "
    "backup_age_recipients and the private key in Vault (backup_age_identity). With encryption "
    "on and no key, no backup would be written.")
PRIVATE_KEY_ADVICE = (
    "backup_age_recipients holds a PRIVATE key (AGE-SECRET-KEY-1...). The server must hold only "
    "the public key (age1...); keep the private key in Vault as backup_age_identity.")
CLOUD_ADVICE = (
    'backup_cloud_enabled needs backup_cloud_remote ("<rclone remote>:<bucket>/<prefix>") and, '
    "while backup_cloud_require_encryption is true, backup_encrypt (backups never leave the "
    "server unencrypted).")


def _refuse(variable: str, key: str, problem: str):
    raise ConfigError(f"{variable} ({key}): {problem}")


def _variable(key: str, field: str) -> str:
    """The Ansible variable behind ``folders.<key>.<field>``."""
    return f"backup_{key}_{field}" if key in SCHEDULES else f"folders.{key}.{field}"


def _whole(value, minimum: int | None = None):
    """``value`` as an int (a string of digits too, as the program reads it), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or (minimum is not None and value < minimum):
        return None
    return value


def _absolute(value, variable: str, key: str, required: bool = False) -> None:
    if value in (None, "") and not required:
        return
    if not isinstance(value, str) or not os.path.isabs(value):
        _refuse(variable, key, f"must be an absolute path, got {value!r}")


def check_db(config: dict) -> None:
    db = config.get("db")
    if not isinstance(db, dict):
        raise ConfigError("the configuration has no 'db' section (from app_db_* and backup_db_name)")
    if not db.get("user"):
        _refuse("app_db_user", "db.user", "is empty: the role the backups connect as")
    if not db.get("name"):
        _refuse("backup_db_name", "db.name", "is empty: the database to back up")
    if not db.get("container") and not (db.get("host") and db.get("pg_image")):
        raise ConfigError("app_db_container (db.container), or app_db_host and backup_pg_image "
                          "(db.host, db.pg_image): nothing says where the database is (a managed "
                          "database's container, or an external host and an image with pg_dump)")
    if db.get("host") and not db.get("container") and db.get("port") not in (None, ""):
        port = _whole(db.get("port"), 1)
        if port is None or port > 65535:
            _refuse("app_db_port", "db.port", f"must be a port number, got {db.get('port')!r}")


def check_compression(config: dict) -> str:
    compress = config.get("compress", "gzip")
    if not isinstance(compress, str) or compress not in COMPRESS_SUFFIXES:
        _refuse("backup_compress", "compress", f"must be gzip, zstd or none, got {compress!r}")
    level = config.get("level")
    if compress != "none" and level not in (None, "", 0):
        low, high = LEVEL_RANGES[compress]
        number = _whole(level)
        if number is None or not low <= number <= high:
            _refuse("backup_level", "level", f"must be {low}..{high} for {compress}, got {level!r}")
    if _whole(config.get("threads") or 0, 0) is None:
        _refuse("backup_threads", "threads", "must be a whole number >= 0 (0: all the CPUs), "
                f"got {config.get('threads')!r}")
    return compress


def check_encryption(config: dict) -> bool:
    encrypt = config.get("encrypt") or "none"
    if encrypt not in ("none", "age"):
        _refuse("backup_encrypt", "encrypt", f"must be none or age, got {encrypt!r}")
    recipients = config.get("recipients") or []
    files = config.get("recipients_files") or []
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        _refuse("backup_age_recipients", "recipients", "must be a list of age public keys")
    if any(is_private_key(r) for r in recipients):
        raise ConfigError(PRIVATE_KEY_ADVICE)
    if encrypt != "age":
        return False
    keys = [r.strip() for r in recipients if r.strip()]
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                keys += [line.strip() for line in handle
                         if line.strip() and not line.lstrip().startswith("#")]
        except OSError as exc:
            _refuse("backup_age_recipients", "recipients_files",
                    f"the recipients file {path} cannot be read ({exc.strerror})")
    if any(is_private_key(key) for key in keys):
        raise ConfigError(PRIVATE_KEY_ADVICE)
    if not keys or not all(is_public_key(key) for key in keys):
        raise ConfigError(ENCRYPTION_ADVICE)
    return True


def _rules(variables: tuple[str, str, str], keys: tuple[str, str, str],
           name_format, keep, max_age) -> None:
    """The rotation rules' own checks of (name_format, keep, max_age), each
    failure naming its setting."""
    try:
        rotation.NameFormat(name_format)
    except rotation.RotationError as exc:
        _refuse(variables[0], keys[0], str(exc))
    try:
        rotation.MaxAge.parse(max_age)
    except rotation.RotationError as exc:
        _refuse(variables[2], keys[2], str(exc))
    number = _whole(keep)
    try:  # the format and the age limit passed: what is left is the count
        rotation.check_settings(name_format, keep if number is None else number, max_age)
    except rotation.RotationError as exc:
        _refuse(variables[1], keys[1], str(exc))


def _seconds(value, minimum: float, strict: bool) -> bool:
    """A number of seconds (an int, a float or a string of digits) above ``minimum``."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d*)?\s*", value):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value > minimum if strict else value >= minimum


def check_folders(config: dict, compress: str) -> list[str]:
    folders = config.get("folders") or {}
    if not isinstance(folders, dict):
        raise ConfigError("folders: must map each schedule to its dir, name_format, keep and "
                          "max_age")
    suffix = COMPRESS_SUFFIXES[compress]
    for key, folder in folders.items():
        if not isinstance(folder, dict):
            _refuse(f"backup_{key}_*", f"folders.{key}", "must hold dir, name_format, keep, "
                    "max_age")
        fields = ("name_format", "keep", "max_age")
        for field in ("dir", *fields):
            if folder.get(field) in (None, ""):
                _refuse(_variable(key, field), f"folders.{key}.{field}", "is not set")
        _absolute(folder["dir"], _variable(key, "dir"), f"folders.{key}.dir", required=True)
        _rules(tuple(_variable(key, f) for f in fields),
               tuple(f"folders.{key}.{f}" for f in fields),
               folder["name_format"], folder["keep"], folder["max_age"])
        name_format = folder["name_format"]
        if name_format.endswith(ENCRYPTED_SUFFIX) or not name_format.endswith(suffix):
            _refuse(_variable(key, "name_format"), f"folders.{key}.name_format",
                    f"{name_format!r} must end with {suffix!r}, the suffix of backup_compress "
                    f"{compress} (.age is added when encrypted): verify and restore tell a "
                    "backup's compression from its name")
    return list(folders)


def check_cloud(config: dict, encrypted: bool) -> bool:
    cloud = config.get("cloud") or {}
    if not isinstance(cloud, dict):
        raise ConfigError(f"cloud: must be the cloud copy's settings, got {cloud!r}")
    if not cloud:
        return False
    remote = cloud.get("remote")
    if not isinstance(remote, str) or not CLOUD_REMOTE_RE.match(remote):
        _refuse("backup_cloud_remote", "cloud.remote",
                f"{remote!r} is not '<rclone remote>:<bucket>/<prefix>' (e.g. "
                f"s3:field-backups/prod). {CLOUD_ADVICE}")
    require = cloud.get("require_encryption", True)
    if not isinstance(require, bool):
        _refuse("backup_cloud_require_encryption", "cloud.require_encryption",
                f"must be true or false, got {require!r}")
    if require and not encrypted:
        _refuse("backup_cloud_require_encryption", "cloud.require_encryption",
                "is true but backup_encrypt is false: turn backup_encrypt on (with "
                "backup_age_recipients) or set backup_cloud_require_encryption: false. "
                + CLOUD_ADVICE)
    if not _seconds(cloud.get("timeout", 3600), 0, strict=True):
        _refuse("backup_cloud_timeout", "cloud.timeout",
                f"must be a number of seconds > 0, got {cloud.get('timeout')!r}")
    retention = cloud.get("retention") or {}
    if not isinstance(retention, dict):
        _refuse("backup_cloud_retention", "cloud.retention",
                "must map a schedule to its keep and max_age")
    folders = config.get("folders") or {}
    for key, own in retention.items():
        variable = f"backup_cloud_retention.{key}"
        if key not in folders:
            _refuse(variable, f"cloud.retention.{key}", f"there is no schedule {key!r} "
                    f"(have: {', '.join(folders) or 'none'})")
        if not isinstance(own, dict):
            _refuse(variable, f"cloud.retention.{key}", "must hold keep and max_age")
        folder = folders[key]
        _rules((_variable(key, "name_format"), f"{variable}.keep", f"{variable}.max_age"),
               (f"folders.{key}.name_format", f"cloud.retention.{key}.keep",
                f"cloud.retention.{key}.max_age"),
               folder["name_format"], own.get("keep", folder["keep"]),
               own.get("max_age", folder["max_age"]))
    return True


def check_rest(config: dict) -> None:
    if not isinstance(config.get("utc", False), bool):
        _refuse("backup_utc", "utc", f"must be true or false, got {config.get('utc')!r}")
    _absolute(config.get("lock_file"), "backup_lock_file", "lock_file")
    if not _seconds(config.get("lock_timeout", 600), 0, strict=False):
        _refuse("backup_lock_timeout", "lock_timeout",
                f"must be a number of seconds >= 0, got {config.get('lock_timeout')!r}")
    _absolute(config.get("status_file"), "backup_status_file", "status_file")
    _absolute(config.get("log_file"), "backup_log_file", "log_file")
    _absolute(config.get("restore_dir"), "backup_restore_dir", "restore_dir")
    other = config.get("other_dirs") or []
    if not isinstance(other, list) or not all(isinstance(p, str) and os.path.isabs(p)
                                              for p in other):
        _refuse("backup_search_dirs", "other_dirs", f"must be a list of absolute paths, got {other!r}")
    url = config.get("ping_url") or ""
    if not isinstance(url, str) or (url and not re.match(r"^https?://[^/\s]+", url)):
        _refuse("backup_ping_url", "ping_url", f"must be empty or an http(s):// URL, got {url!r}")
    check_notify(config)


def check_notify(config: dict) -> None:
    settings = config.get("notify") or {}
    try:
        notify.check_channels(settings.get("channels") or [], "backup_notify_channels")
        if settings.get("events") is not None:
            notify.check_events(settings["events"], "backup_notify_events")
    except notify.ConfigError as exc:
        raise ConfigError(f"{exc} (notify)") from exc
    watch = config.get("watch") or {}
    if not _seconds(watch.get("margin_s", 0), 0, strict=False):
        _refuse("backup_watch_margin_hours", "watch.margin_s",
                f"must be a number >= 0, got {watch.get('margin_s')!r}")
    periods = watch.get("periods") or {}
    if not isinstance(periods, dict) or not all(_seconds(v, 0, strict=True) for v in periods.values()):
        _refuse("backup_watch_enabled", "watch.periods",
                f"must map schedules to seconds > 0, got {periods!r}")


def check(config) -> dict:
    """Raise ConfigError naming the first unusable setting; else a summary."""
    if not isinstance(config, dict):
        raise ConfigError("the configuration is not a JSON object")
    check_db(config)
    compress = check_compression(config)
    encrypted = check_encryption(config)
    schedules = check_folders(config, compress)
    cloud = check_cloud(config, encrypted)
    check_rest(config)
    return {"ok": True, "schedules": schedules, "compress": compress,
            "encrypted": encrypted, "cloud": cloud}


def run(args) -> dict:
    try:
        config = read_config(args.config)
    except BackupError as exc:  # an unreadable file or not JSON: a usage error too
        raise ConfigError(str(exc)) from exc
    result = check(config)
    log.info("the configuration %s is usable: schedules %s, %s, %s, %s",
             "on stdin" if args.config == "-" else args.config,
             ", ".join(result["schedules"]) or "none", result["compress"],
             "encrypted" if result["encrypted"] else "not encrypted",
             "cloud copy" if result["cloud"] else "no cloud copy")
    return result
