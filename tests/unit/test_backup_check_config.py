"""``fs-backup check-config``: a configuration is refused, naming the Ansible variable.

The configuration is built like roles/backup/vars/main.yml builds it from the
``backup_*`` variables; every kind of bad setting gives exit 2 and ONE error
line naming the variable (the wording and advice of roles/backup/tasks/assert.yml
where an assert checked it before).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = os.path.join(ROOT, "roles", "backup", "files", "fs-backup")
PUBLIC_KEY = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
PRIVATE_KEY = "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN ops@laptop"

GOOD = {
    "app": "field_service",
    "db": {"container": "field_service_db", "host": "", "port": 5432, "pg_image": "postgres:15",
           "network": "", "user": "field_service", "name": "field_service", "password": ""},
    "compress": "gzip", "level": 6, "threads": 0, "utc": False, "encrypt": "age",
    "recipients": [PUBLIC_KEY, SSH_KEY], "lock_file": "/opt/backups/.fs_backup.lock",
    "lock_timeout": 600, "status_file": "/opt/backups/status.json",
    "log_file": "/opt/backups/backup.log", "ping_url": "",
    "folders": {
        "daily": {"dir": "/opt/backups/daily", "name_format": "field_service_%Y%m%d_%H%M%S.sql.gz",
                  "keep": 7, "max_age": "7d"},
        "weekly": {"dir": "/opt/backups/weekly", "name_format": "field_service_week_%V_%G.sql.gz",
                   "keep": 4, "max_age": "4w"},
        "monthly": {"dir": "/opt/backups/monthly", "name_format": "field_service_%Y_%m.sql.gz",
                    "keep": 12, "max_age": "12m"},
    },
    "other_dirs": ["/opt/backups/deploy", "/opt/backups/safety"],
    "restore_dir": "/opt/backups/restore", "verify_image": "postgres:15",
    "cloud": {"remote": "s3:field-backups/prod", "rclone": "/usr/bin/rclone",
              "rclone_config": "/opt/field-service/backup/rclone.conf", "require_encryption": True,
              "timeout": 3600, "retention": {"daily": {"keep": 7, "max_age": "7d"},
                                             "weekly": {"keep": 4, "max_age": "4w"},
                                             "monthly": {"keep": 12, "max_age": "12m"}}},
}

ENCRYPTION_ADVICE = (
    "backup_encrypt is true but backup_age_recipients is empty or holds something that is not an "
    "age public key (age1...). Make a key pair with age-keygen, put the PUBLIC key in "
    "backup_age_recipients and the private key in Vault (backup_age_identity). With encryption "
    "on and no key, no backup would be written.")
PRIVATE_KEY_ADVICE = (
    "backup_age_recipients holds a PRIVATE key (AGE-SECRET-KEY-1...). The server must hold only "
    "the public key (age1...); keep the private key in Vault as backup_age_identity.")
CLOUD_ADVICE = ('backup_cloud_enabled needs backup_cloud_remote ("<rclone remote>:<bucket>/<prefix>") '
                "and, while backup_cloud_require_encryption is true, backup_encrypt (backups never "
                "leave the server unencrypted).")


def check_config(config, *, stdin: bool = False, tmp_path=None) -> subprocess.CompletedProcess:
    text = config if isinstance(config, str) else json.dumps(config)
    if stdin:
        return subprocess.run([sys.executable, PROGRAM, "check-config", "--config", "-", "--json"],
                              input=text, capture_output=True, text=True, timeout=60)
    path = tmp_path / "config.json"
    path.write_text(text)
    return subprocess.run([sys.executable, PROGRAM, "check-config", "--config", str(path), "--json"],
                          capture_output=True, text=True, timeout=60)


def changed(**changes) -> dict:
    """GOOD with nested keys replaced (``folders__daily__keep=0``; None deletes the key)."""
    config = copy.deepcopy(GOOD)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = config
        for key in parents:
            target = target[key]
        if value is None:
            del target[last]
        else:
            target[last] = value
    return config


def the_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("fs_backup: ERROR: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0][len("fs_backup: ERROR: "):]


def test_a_good_configuration_passes_from_a_file_and_from_stdin(tmp_path):
    for result in (check_config(GOOD, tmp_path=tmp_path), check_config(GOOD, stdin=True)):
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report == {"ok": True, "schedules": ["daily", "weekly", "monthly"], "compress": "gzip",
                          "encrypted": True, "cloud": True}
    # check-config writes nothing where the configuration points (it may be another machine's)
    log_file = tmp_path / "elsewhere" / "backup.log"
    assert check_config(changed(log_file=str(log_file)), tmp_path=tmp_path).returncode == 0
    assert not log_file.parent.exists()


@pytest.mark.parametrize("config", [
    changed(encrypt="none", recipients=[], cloud={}),                       # the role's defaults
    changed(encrypt="none", recipients=[], cloud__require_encryption=False),  # an unencrypted copy
    changed(compress="zstd", level=3, **{f"folders__{k}__name_format": f"field_service_{k}_%Y%m%d.sql.zst"
                                         for k in ("daily", "weekly", "monthly")}),
    changed(db={"container": "", "host": "db.internal", "port": 5432, "pg_image": "postgres:15",
                "network": "app", "user": "field_service", "name": "field_service", "password": "x"}),
    changed(folders__daily__keep="7", level=0, lock_timeout=0),  # numbers as strings, defaults
], ids=["defaults", "unencrypted-cloud", "zstd", "external-db", "strings"])
def test_other_good_configurations_pass(config, tmp_path):
    result = check_config(config, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


BAD = [
    # rotation settings, through the rotation rules
    ("weekly-iso-year", changed(folders__weekly__name_format="field_service_week_%V_%Y.sql.gz"),
     ["backup_weekly_name_format (folders.weekly.name_format): ", "%G"]),
    ("month-name", changed(folders__monthly__name_format="field_service_%b_%Y.sql.gz"),
     ["backup_monthly_name_format", "%b cannot be read back into a time"]),
    ("keep-0", changed(folders__daily__keep=0),
     ["backup_daily_keep (folders.daily.keep): keep must be a whole number of at least 1"]),
    ("keep-word", changed(folders__daily__keep="seven"), ["backup_daily_keep", "'seven'"]),
    ("keep-bool", changed(folders__weekly__keep=True), ["backup_weekly_keep"]),
    ("max-age", changed(folders__monthly__max_age="12 months"),
     ["backup_monthly_max_age (folders.monthly.max_age): age limit '12 months': a number and a unit"]),
    ("no-max-age", changed(folders__daily__max_age=None), ["backup_daily_max_age", "is not set"]),
    ("suffix", changed(folders__daily__name_format="field_service_%Y%m%d_%H%M%S.sql.zst"),
     ["backup_daily_name_format", "must end with '.sql.gz', the suffix of backup_compress gzip"]),
    ("age-suffix", changed(folders__daily__name_format="field_service_%Y%m%d_%H%M%S.sql.gz.age"),
     ["backup_daily_name_format", "must end with '.sql.gz'"]),
    ("relative-dir", changed(folders__weekly__dir="backups/weekly"),
     ["backup_weekly_dir (folders.weekly.dir): must be an absolute path"]),
    # encryption
    ("no-recipient", changed(recipients=[]), [ENCRYPTION_ADVICE]),
    ("not-a-key", changed(recipients=["age1notakey"]), [ENCRYPTION_ADVICE]),
    ("gpg-key", changed(recipients=[PUBLIC_KEY, "0xDEADBEEF"]), [ENCRYPTION_ADVICE]),
    ("private-key", changed(recipients=[PRIVATE_KEY]), [PRIVATE_KEY_ADVICE]),
    ("private-key-lowercase", changed(recipients=[PUBLIC_KEY, PRIVATE_KEY.lower()]), [PRIVATE_KEY_ADVICE]),
    ("private-key-unencrypted", changed(encrypt="none", recipients=[PRIVATE_KEY], cloud={}),
     [PRIVATE_KEY_ADVICE]),
    ("encrypt-word", changed(encrypt="gpg"), ["backup_encrypt (encrypt): must be none or age"]),
    # the cloud copy
    ("no-remote", changed(cloud__remote=""), ["backup_cloud_remote (cloud.remote): ''", CLOUD_ADVICE]),
    ("remote-path", changed(cloud__remote="/mnt/backups"), ["backup_cloud_remote", "'/mnt/backups'"]),
    ("remote-no-bucket", changed(cloud__remote="s3:"), ["backup_cloud_remote", "<bucket>/<prefix>"]),
    ("unencrypted-upload", changed(encrypt="none", recipients=[]),
     ["backup_cloud_require_encryption (cloud.require_encryption): is true but backup_encrypt is "
      "false", CLOUD_ADVICE]),
    ("cloud-keep", changed(cloud__retention__daily__keep=0),
     ["backup_cloud_retention.daily.keep (cloud.retention.daily.keep): keep must be"]),
    ("cloud-max-age", changed(cloud__retention__weekly__max_age="a month"),
     ["backup_cloud_retention.weekly.max_age", "'a month'"]),
    ("cloud-schedule", changed(cloud__retention__yearly={"keep": 2, "max_age": "2y"}),
     ["backup_cloud_retention.yearly", "no schedule 'yearly'"]),
    ("cloud-timeout", changed(cloud__timeout=0), ["backup_cloud_timeout"]),
    # the rest
    ("compress", changed(compress="bzip2"), ["backup_compress (compress): must be gzip, zstd or none"]),
    ("level", changed(level=12), ["backup_level (level): must be 1..9 for gzip, got 12"]),
    ("threads", changed(threads=-1), ["backup_threads"]),
    ("utc", changed(utc="yes"), ["backup_utc (utc): must be true or false"]),
    ("db-user", changed(db__user=""), ["app_db_user (db.user): is empty"]),
    ("db-name", changed(db__name=""), ["backup_db_name (db.name): is empty"]),
    ("db-where", changed(db__container=""), ["app_db_container (db.container), or app_db_host and "
                                             "backup_pg_image"]),
    ("no-db", changed(db=None), ["no 'db' section"]),
    ("lock-file", changed(lock_file="fs_backup.lock"), ["backup_lock_file (lock_file): must be an "
                                                        "absolute path"]),
    ("lock-timeout", changed(lock_timeout=-1), ["backup_lock_timeout"]),
    ("status-file", changed(status_file="status.json"), ["backup_status_file"]),
    ("search-dirs", changed(other_dirs=["deploy"]), ["backup_search_dirs (other_dirs)"]),
    ("ping-url", changed(ping_url="ftp://example.net/x"), ["backup_ping_url"]),
    ("notify-type", changed(notify={"channels": [{"type": "email"}]}),
     ["backup_notify_channels[0].type is 'email'"]),
    ("notify-token", changed(notify={"channels": [{"type": "telegram", "chat_id": 1}]}),
     ["backup_notify_channels[0].bot_token is empty"]),
    ("notify-event", changed(notify={"channels": [], "events": ["backup_done"]}),
     ["backup_notify_events: unknown ['backup_done']"]),
    ("watch-margin", changed(watch={"margin_s": -1, "periods": {}}), ["backup_watch_margin_hours"]),
    ("not-an-object", [1, 2], ["not a JSON object"]),
]


@pytest.mark.parametrize(("config", "expected"), [(c, e) for _, c, e in BAD], ids=[i for i, _, _ in BAD])
def test_each_bad_setting_exits_2_naming_the_variable(config, expected, tmp_path):
    result = check_config(config, tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    message = the_error(result)
    for words in expected:
        assert words in message, message
    assert result.stdout == ""


def test_stdin_and_files_that_are_not_json(tmp_path):
    result = check_config(changed(folders__daily__keep=0), stdin=True)
    assert result.returncode == 2 and "backup_daily_keep" in the_error(result)
    result = check_config("{not json", stdin=True)
    assert result.returncode == 2 and "the configuration on stdin is not JSON" in the_error(result)
    missing = subprocess.run([sys.executable, PROGRAM, "check-config", "--config",
                              str(tmp_path / "nothere.json")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "cannot read the configuration" in the_error(missing)


def test_recipients_files_are_read_when_encrypting(tmp_path):
    keys = tmp_path / "recipients.txt"
    keys.write_text(f"# the ops team\n{PUBLIC_KEY}\n")
    assert check_config(changed(recipients=[], recipients_files=[str(keys)]),
                        tmp_path=tmp_path).returncode == 0
    keys.write_text(f"{PRIVATE_KEY}\n")
    result = check_config(changed(recipients=[], recipients_files=[str(keys)]), tmp_path=tmp_path)
    assert result.returncode == 2 and the_error(result) == PRIVATE_KEY_ADVICE
