"""The report filters of the helper playbooks (plugins/filter/reports.py)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fieldservice.deploy.plugins.filter import reports


def listing(*states, cloud=None):
    out = {"backups": [{"name": f"b{i}.sql.gz", "folder": "daily", "bytes": 2048, "age_s": 90061,
                        "checksum": s} for i, s in enumerate(states)]}
    if cloud is not None:
        out["cloud"] = cloud
    return out


def test_the_summary_counts_mismatches_only_when_the_checksums_were_read():
    assert reports.backup_summary(listing("ok", "ok", "mismatch", "missing")) == (
        "4 backup(s) on the server, 2 without a matching checksum")
    assert reports.backup_summary(listing("ok", "ok")) == (
        "2 backup(s) on the server, 0 without a matching checksum")
    # list_backups_checksum=false: nothing was read, so nothing "does not match"
    unread = reports.backup_summary(listing(*["present"] * 7))
    assert unread == "7 backup(s) on the server, checksums not read (7 with a checksum file)"
    assert "without a matching checksum" not in unread
    assert reports.backup_summary(listing("present", "missing", cloud=[{"name": "c"}])) == (
        "2 backup(s) on the server, checksums not read (1 with a checksum file, 1 without one),"
        " 1 in the cloud")


def test_the_table_has_a_header_a_row_per_backup_and_the_cloud_copies():
    rows = reports.backup_table(listing("ok", "mismatch", cloud=[{"name": "c.age", "folder": "cloud:daily",
                                                                  "bytes": 10}]))
    assert rows[0].split() == ["NAME", "FOLDER", "SIZE", "AGE", "CHECKSUM"]
    assert rows[1].split() == ["b0.sql.gz", "daily", "2.00", "KB", "1d", "01h", "ok"]
    assert rows[2].endswith(" mismatch") and rows[3].endswith(" cloud copy")


def test_the_rotation_report_says_what_went_or_would_go():
    result = {"folders": {"daily": {"delete": ["a", "b"], "keep": ["c"] * 7, "reason": None},
                          "weekly": {"delete": [], "keep": ["w"], "reason": "w1 is dated after now"}},
              "cloud": {"daily": {"delete": ["a"], "keep": []}}}
    assert reports.rotation_report(result, True) == [
        "daily: would delete a, b; kept 7", "weekly: would delete nothing; kept 1 (w1 is dated after now)",
        "cloud daily: would delete a"]
    assert reports.rotation_report(result)[0] == "daily: deleted a, b; kept 7"
    with pytest.raises(AnsibleFilterError):
        reports.rotation_report({"deleted": []})


def test_the_db_size_table():
    rows = reports.db_size_table(["DATABASE|field_service|8 MB|8388608|",
                                  "TABLE|public.heartbeats|16 kB|16384|2", "junk"])
    assert rows[0] == "Database field_service: 8 MB"
    assert rows[1].split() == ["TABLE", "SIZE", "ROWS", "(est.)"]
    assert rows[2].split() == ["public.heartbeats", "16", "kB", "2"]
    assert len(rows) == 3


def test_the_program_gets_each_schedule_s_folder_settings_only():
    schedules = [{"name": "daily", "enabled": True, "dir": "/b/daily", "name_format": "x_%Y%m%d.sql.gz",
                  "keep": 7, "max_age": "7d", "minute": "0", "hour": "2"},
                 {"name": "weekly", "dir": "/b/weekly", "name_format": "x_week_%V_%G.sql.gz", "keep": 4,
                  "max_age": "4w", "weekday": "0"}]
    assert reports.backup_folders(schedules) == {
        "daily": {"dir": "/b/daily", "name_format": "x_%Y%m%d.sql.gz", "keep": 7, "max_age": "7d"},
        "weekly": {"dir": "/b/weekly", "name_format": "x_week_%V_%G.sql.gz", "keep": 4, "max_age": "4w"}}
    with pytest.raises(AnsibleFilterError):
        reports.backup_folders({"daily": {}})
