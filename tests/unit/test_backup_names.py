"""Backup names (fs_backup/names.py): the ONE definition of a name a person may ask for."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fs_backup import errors, names

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ADVICE = ("give the bare file name of a backup as playbooks/list_backups.yml shows it "
          "(no '/', no '..', not a .sha256 sidecar)")


@pytest.mark.parametrize("name", [
    "field_service_20251010_020000.sql.gz.age", "backup_20251010_153015.sql.gz",
    "field_service_week_41_2025.sql.zst", "safety_20251010_153015.sql", "a", "x+y-z_1.sql.gz",
    "A" * 251,
])
def test_bare_backup_names_are_accepted(name):
    names.check_request_name(name)


@pytest.mark.parametrize("name", [
    "", "../daily/x.sql.gz", "/opt/backups/daily/x.sql.gz", "daily/x.sql.gz", "..", ".",
    "x..sql.gz", "x.sql.gz.sha256", ".x.sql.gz.partial", "x.sql.gz.partial", ".hidden.sql.gz",
    "-rf", "x y.sql.gz", "x.sql.gz\n", "x\0.sql", "Ёжик.sql.gz", "A" * 252, None, 42,
])
def test_other_names_are_refused_with_the_playbooks_message(name):
    with pytest.raises(errors.BackupError) as caught:
        names.check_request_name(name)
    message = str(caught.value)
    assert message.startswith("Refusing backup name '"), message
    assert message.endswith("': " + ADVICE), message
    assert "\n" not in message and "\0" not in message


def test_the_message_shows_the_name():
    with pytest.raises(errors.BackupError, match=r"^Refusing backup name '\.\./etc/passwd': give "):
        names.check_request_name("../etc/passwd")


def test_the_pattern_is_the_one_the_playbooks_used():
    assert names.REQUEST_NAME_PATTERN == r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,250}$"


@pytest.mark.parametrize("name", ["", ".x", "a/b", "..", "x.sql.gz.sha256", "x\0"])
def test_names_the_program_writes_are_plain_visible_files(name):
    with pytest.raises(errors.BackupError, match="invalid backup name"):
        names.check_name(name)
    names.check_name("field_service_20251010_020000.sql.gz.age")


def test_names_are_rendered_in_local_time_or_utc(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # 9 hours from UTC, no summer time
    time.tzset()
    try:
        when = 1760061600  # 2025-10-10 02:00:00 UTC
        assert names.render_name("db_%Y%m%d_%H%M%S.sql", when, utc=True) == "db_20251010_020000.sql"
        assert names.render_name("db_%Y%m%d_%H%M%S.sql", when) == "db_20251010_110000.sql"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("command", [["locate", "../daily/x.sql.gz"],
                                     ["restore", "--name", "../daily/x.sql.gz"]])
def test_locate_and_restore_refuse_a_name_before_anything(command, tmp_path):
    program = os.path.join(ROOT, "roles", "backup", "files", "fs-backup")
    missing = str(tmp_path / "no-config.json")  # not even the configuration is read first
    out = subprocess.run([sys.executable, program, *command, "--config", missing], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == ("fs_backup: ERROR: Refusing backup name '../daily/x.sql.gz': "
                                           + ADVICE)
