"""The backup program tells the team: a failed scheduled backup, and the
dead-man check (``fs-backup watch``) of a schedule with no success for
longer than its period plus the margin. Against a real HTTP receiver."""

from __future__ import annotations

import datetime
import json

import pytest
from fs_backup import cli
from fs_backup.actions.watch import missing
from http_receiver import Receiver

DAY = 86400
NOW = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)


def ago(hours: float) -> str:
    then = datetime.datetime.now().astimezone() - datetime.timedelta(hours=hours)
    return then.isoformat(timespec="seconds")


def test_a_schedule_is_missing_past_its_period_plus_the_margin():
    status = {"schedules": {
        "daily": {"last_success": {"time": (NOW - datetime.timedelta(hours=30, minutes=1)).isoformat()}},
        "weekly": {"last_success": {"time": (NOW - datetime.timedelta(days=7, hours=5)).isoformat()}},
    }}
    periods = {"daily": DAY, "weekly": 7 * DAY, "monthly": 31 * DAY}
    since = NOW - datetime.timedelta(days=40)
    late = missing(status, periods, 6 * 3600, NOW, since)
    # daily: 30 h 1 min > 24 + 6 h; weekly: 7 d 5 h is within 7 d + 6 h; monthly: never, watched for 40 d
    assert sorted(late) == ["daily", "monthly"]
    assert late["monthly"][0] is None and late["daily"][1] == pytest.approx(30 * 3600 + 60)
    # a watch that only started: no alarm before a period has passed since
    assert missing({}, periods, 6 * 3600, NOW, NOW - datetime.timedelta(hours=29)) == {}
    assert sorted(missing({}, periods, 6 * 3600, NOW, NOW - datetime.timedelta(hours=31))) == ["daily"]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def config_file(tmp_path, receiver, **extra) -> str:
    config = {"app": "field_service", "status_file": str(tmp_path / "status.json"),
              "log_file": str(tmp_path / "backup.log"), "lock_file": str(tmp_path / ".lock"),
              "notify": {"channels": [{"type": "webhook", "url": receiver.url + "/hook"}], "events": None,
                         "retries": 0, "timeout": 5, "server": "prod-1"},
              "watch": {"margin_s": 6 * 3600, "periods": {"daily": DAY, "weekly": 7 * DAY}}, **extra}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def status_of(tmp_path) -> dict:
    return json.loads((tmp_path / "status.json").read_text())


def test_the_watch_tells_once_a_day_and_clears_when_backups_are_back(tmp_path, receiver):
    path = config_file(tmp_path, receiver)
    (tmp_path / "status.json").write_text(json.dumps({
        "watch_since": ago(24 * 40),
        "schedules": {"daily": {"last_success": {"time": ago(50)}},
                      "weekly": {"last_success": {"time": ago(24 * 3)}}}}))
    assert cli.main(["watch", "--quiet", "--config", path]) == 0
    [told] = [g["body"] for g in receiver.got]
    assert (told["event"], told["server"], told["who"]) == ("backup_missing", "prod-1", "dead-man check")
    assert told["reason"].startswith("no successful daily backup for 2.1 d (last: ")
    assert told["reason"].endswith("expected every 24.0 h + 6.0 h)")
    assert told["text"].startswith("❌ field_service prod-1: backup MISSING")
    entry = status_of(tmp_path)["schedules"]["daily"]["missing"]
    assert entry["reason"] == told["reason"] and entry["notified"]
    # the next hour: still missing, said in the status file, not told again
    assert cli.main(["watch", "--quiet", "--config", path]) == 0
    assert len(receiver.got) == 1
    assert status_of(tmp_path)["schedules"]["daily"]["missing"]["since"] == entry["since"]
    # a day later it is told again
    status = status_of(tmp_path)
    status["schedules"]["daily"]["missing"]["notified"] = ago(25)
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert cli.main(["watch", "--quiet", "--config", path]) == 0
    assert len(receiver.got) == 2
    # a success clears it
    status = status_of(tmp_path)
    status["schedules"]["daily"]["last_success"] = {"time": ago(1)}
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert cli.main(["watch", "--quiet", "--config", path]) == 0
    assert len(receiver.got) == 2 and status_of(tmp_path)["schedules"]["daily"]["missing"] is None


def test_a_first_watch_starts_the_clock_instead_of_alarming(tmp_path, receiver):
    path = config_file(tmp_path, receiver)
    assert cli.main(["watch", "--quiet", "--config", path]) == 0
    assert receiver.got == [] and status_of(tmp_path)["watch_since"]


def test_a_failed_scheduled_backup_is_told_with_its_reason(tmp_path, receiver):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    path = config_file(tmp_path, receiver, db={"container": "fs_no_such_db", "user": "u", "name": "n"},
                       compress="gzip", level=6, encrypt="none",
                       folders={"daily": {"dir": str(blocker / "daily"),
                                          "name_format": "b_%Y%m%d_%H%M%S.sql.gz",
                                          "keep": 7, "max_age": "7d"}})
    assert cli.main(["run", "--quiet", "daily", "--config", path]) != 0
    [told] = [g["body"] for g in receiver.got]
    assert told["event"] == "backup_failure" and told["reason"].startswith("daily backup failed: ")
    assert status_of(tmp_path)["schedules"]["daily"]["last_failure"]["error"] in told["reason"]


def test_an_undelivered_notification_never_fails_the_job(tmp_path, receiver):
    receiver.answers = [(500, {}, {})]
    path = config_file(tmp_path, receiver)
    (tmp_path / "status.json").write_text(json.dumps({"watch_since": ago(24 * 40)}))
    assert cli.main(["watch", "--quiet", "--config", path]) == 0
    # one message per missing schedule: the first was refused (500), the second delivered
    assert [g["body"]["reason"].split(" backup")[0] for g in receiver.got] == \
        ["no successful daily", "no successful weekly"]
    with open(tmp_path / "backup.log", encoding="utf-8") as fh:
        assert "notification backup_missing to webhook (127.0.0.1) not delivered after 1 attempt(s): " \
            "HTTP 500" in fh.read()
    assert set(status_of(tmp_path)["schedules"]) == {"daily", "weekly"}
