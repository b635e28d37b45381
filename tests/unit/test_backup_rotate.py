"""``fs-backup rotate`` (and ``cloud-rotate``) on folders of planted files.

The program runs as the backup role runs it: the entry script
roles/backup/files/fs-backup with a configuration file. No Docker: rotation
touches files only (and, with --cloud, an rclone remote of type local).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGRAM = os.path.join(ROOT, "roles", "backup", "files", "fs-backup")
DAILY = "field_service_%Y%m%d_%H%M%S.sql.gz"
WEEKLY = "field_service_week_%V_%G.sql.gz"
MONTHLY = "field_service_%Y_%m.sql.gz"
OTHERS = ("notes.txt", "other_20240101_020000.sql.gz", ".field_service_20251001_020000.sql.gz.partial")


def program(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, PROGRAM, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("fs_backup: ERROR: ")]


def plant(folder, names, others=OTHERS) -> None:
    """Backups, each with its sidecar, and files rotation must never touch."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"backup " + name.encode())
        (folder / (name + ".sha256")).write_text(f"{'0' * 64}  {name}\n")
    for name in others:
        (folder / name).write_text("not a backup")


def snapshot(folder) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def daily(*days, month=10, hour=2) -> list[str]:
    return [datetime.datetime(2025, month, day, hour).strftime(DAILY) for day in days]


@pytest.fixture
def setup(tmp_path):
    """A configuration like the role writes, the three seed schedules under tmp_path/backups."""
    root = tmp_path / "backups"

    def make(**over) -> str:
        config = {
            "app": "field_service",
            "db": {"container": "field_service_db", "user": "field_service", "name": "field_service"},
            "compress": "gzip", "level": 6, "threads": 0, "utc": False, "encrypt": "none",
            "recipients": [], "lock_file": str(root / ".fs_backup.lock"), "lock_timeout": 30,
            "status_file": str(root / "status.json"), "log_file": str(root / "backup.log"),
            "ping_url": "",
            "folders": {
                "daily": {"dir": str(root / "daily"), "name_format": DAILY, "keep": 7, "max_age": "7d"},
                "weekly": {"dir": str(root / "weekly"), "name_format": WEEKLY, "keep": 4,
                           "max_age": "4w"},
                "monthly": {"dir": str(root / "monthly"), "name_format": MONTHLY, "keep": 12,
                            "max_age": "12m"},
            },
            "other_dirs": [str(root / "deploy"), str(root / "safety")],
            "restore_dir": str(root / "restore"), "verify_image": "postgres:15", "cloud": {},
        }
        config.update(over)
        path = tmp_path / "config.json"
        path.write_text(json.dumps(config))
        return str(path)

    return make, root


def seed_folders(root) -> dict[str, list[str]]:
    """10 daily backups (1-10 October 2025), 6 weekly (to week 40), 14 monthly (to October)."""
    planted = {
        "daily": daily(*range(1, 11)),
        "weekly": [(datetime.datetime(2025, 8, 31, 3) + datetime.timedelta(weeks=w)).strftime(WEEKLY)
                   for w in range(6)],
        "monthly": [datetime.datetime(2024 + (m // 12), m % 12 + 1, 1, 4).strftime(MONTHLY)
                    for m in range(8, 22)],
    }
    for folder, names in planted.items():
        plant(root / folder, names)
    return planted


def test_rotate_keeps_the_newest_and_deletes_old_backups_with_their_sidecars(setup):
    make, root = setup
    planted = seed_folders(root)
    result = program("rotate", "--config", make(), "--now", "2025-10-10T02:01:00", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["now"] == "2025-10-10T02:01:00" and report["dry_run"] is False
    assert "cloud" not in report and list(report["folders"]) == ["daily", "weekly", "monthly"]
    day = report["folders"]["daily"]
    assert day == {"path": str(root / "daily"), "keep": planted["daily"][3:][::-1],
                   "delete": planted["daily"][:3][::-1],
                   "ignored": ["notes.txt", "other_20240101_020000.sql.gz"], "reason": None}
    # on disk: exactly the 7 newest and their sidecars, and every other file, untouched
    assert sorted(os.listdir(root / "daily")) == sorted(
        [*planted["daily"][3:], *(n + ".sha256" for n in planted["daily"][3:]), *OTHERS])
    for name in planted["daily"][3:]:
        assert (root / "daily" / name).read_bytes() == b"backup " + name.encode()
    # weekly keeps 4, monthly 12: the oldest go, each with its sidecar
    assert report["folders"]["weekly"]["delete"] == planted["weekly"][:2][::-1]
    assert report["folders"]["monthly"]["delete"] == planted["monthly"][:2][::-1]
    for folder in ("weekly", "monthly"):
        left = set(os.listdir(root / folder))
        for name in planted[folder][:2]:
            assert name not in left and name + ".sha256" not in left
        assert {*planted[folder][2:], *OTHERS} <= left
    log = (root / "backup.log").read_text()
    assert "rotation: deleted" in log and " fs_backup INFO " in log
    again = program("rotate", "--config", make(), "--now", "2025-10-10T02:01:00", "--json")
    assert again.returncode == 0, again.stderr
    assert all(plan["delete"] == [] for plan in json.loads(again.stdout)["folders"].values())


def test_a_dry_run_deletes_nothing_takes_no_lock_and_lists_what_a_run_deletes(setup):
    make, root = setup
    seed_folders(root)
    config = make(lock_timeout=0)
    before = {folder: snapshot(root / folder) for folder in ("daily", "weekly", "monthly")}
    (root / ".fs_backup.lock").touch()
    fd = os.open(root / ".fs_backup.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a backup runs: a dry run reads anyway
        dry = program("rotate", "--config", config, "--dry-run", "--now", "2025-10-10T02:01:00",
                      "--json")
    finally:
        os.close(fd)
    assert dry.returncode == 0, dry.stderr
    assert {folder: snapshot(root / folder) for folder in before} == before
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True
    assert sum(len(plan["delete"]) for plan in planned["folders"].values()) == 7
    assert "would delete" in dry.stderr
    real = program("rotate", "--config", config, "--now", "2025-10-10T02:01:00", "--json")
    assert real.returncode == 0, real.stderr
    done = json.loads(real.stdout)
    assert done["folders"] == planned["folders"]
    for folder, plan in done["folders"].items():
        assert not set(plan["delete"]) & set(os.listdir(root / folder))


def test_now_in_the_future_deletes_more(setup):
    make, root = setup
    names = daily(*range(1, 11))
    plant(root / "daily", names)
    folders = {"daily": {"dir": str(root / "daily"), "name_format": DAILY, "keep": 3, "max_age": "7d"}}
    config = make(folders=folders)
    today = program("rotate", "--config", config, "--dry-run", "--now", "2025-10-10T02:01:00", "--json")
    later = program("rotate", "--config", config, "--dry-run", "--now", "2025-10-15T02:01:00", "--json")
    assert today.returncode == 0 and later.returncode == 0, today.stderr + later.stderr
    assert json.loads(today.stdout)["folders"]["daily"]["delete"] == names[:3][::-1]
    assert json.loads(later.stdout)["folders"]["daily"]["delete"] == names[:7][::-1]
    real = program("rotate", "--config", config, "--now", "2025-10-15T02:01:00", "--json")
    assert real.returncode == 0, real.stderr
    assert sorted(n for n in os.listdir(root / "daily") if n.startswith("field_service_")) == sorted(
        [*names[7:], *(n + ".sha256" for n in names[7:])])


def test_a_clock_gone_back_deletes_nothing(setup):
    make, root = setup
    names = daily(*range(1, 21))
    plant(root / "daily", names)
    before = snapshot(root / "daily")
    # the 20th is "in the future" on the 19th: nothing at all is deleted
    result = program("rotate", "--config", make(), "--schedule", "daily", "--now", "2025-10-19T23:00:00",
                     "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)["folders"]["daily"]
    assert plan["delete"] == [] and len(plan["keep"]) == 20
    assert "field_service_20251020_020000.sql.gz" in plan["reason"] and "clock" in plan["reason"]
    assert snapshot(root / "daily") == before
    # the real clock, with a backup dated tomorrow among old ones
    tomorrow = (datetime.datetime.now() + datetime.timedelta(days=1)).strftime(DAILY)
    plant(root / "daily", [tomorrow], others=())
    before = snapshot(root / "daily")
    result = program("rotate", "--config", make(), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["folders"]["daily"]["delete"] == []
    assert snapshot(root / "daily") == before
    # positive control: without the backup from the future the same folder is rotated
    os.unlink(root / "daily" / tomorrow)
    os.unlink(root / "daily" / (tomorrow + ".sha256"))
    result = program("rotate", "--config", make(), "--json")
    assert len(json.loads(result.stdout)["folders"]["daily"]["delete"]) == 13


def test_the_clock_of_the_names_is_local_time_or_utc(setup):
    make, root = setup
    env = dict(os.environ, TZ="Asia/Tokyo")  # local time 9 hours from UTC
    soon = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=3)).strftime(DAILY)
    old = daily(*range(1, 10), month=1)
    plant(root / "daily", [*old, soon], others=())
    folders = {"daily": {"dir": str(root / "daily"), "name_format": DAILY, "keep": 2, "max_age": "1d"}}
    # in UTC the newest name lies 3 hours ahead: the clock went back, nothing goes
    utc = program("rotate", "--config", make(folders=folders, utc=True), "--json", env=env)
    assert utc.returncode == 0, utc.stderr
    plan = json.loads(utc.stdout)["folders"]["daily"]
    assert plan["delete"] == [] and soon in plan["reason"]
    # read as Tokyo time the same name is 6 hours old: the rules apply
    local = program("rotate", "--config", make(folders=folders, utc=False), "--json", env=env)
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["folders"]["daily"]["delete"] == old[:-1][::-1]


def test_a_held_lock_makes_it_wait_then_fail_with_exit_3(setup):
    make, root = setup
    planted = seed_folders(root)
    before = snapshot(root / "daily")
    lock = root / ".fs_backup.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"pid": 4242, "since": "2025-10-10T02:00:00+00:00"}).encode())
        started = time.monotonic()
        result = program("rotate", "--config", make(lock_timeout=1), "--now", "2025-10-10T02:01:00")
        waited = time.monotonic() - started
        assert result.returncode == 3, result.stderr
        assert error_lines(result.stderr) == [
            "fs_backup: ERROR: another backup is running (pid 4242 since 2025-10-10T02:00:00+00:00); "
            "waited 1s"]
        assert "waiting up to 1s" in result.stderr and waited >= 0.9
        assert snapshot(root / "daily") == before
        # with time to wait, it waits for the lock, then rotates
        waiting = subprocess.Popen([sys.executable, PROGRAM, "rotate", "--config", make(lock_timeout=30),
                                    "--now", "2025-10-10T02:01:00", "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            assert waiting.poll() is None, waiting.communicate()
            assert snapshot(root / "daily") == before
        finally:
            os.close(fd)
            fd = None
        out, err = waiting.communicate(timeout=30)
    finally:
        if fd is not None:
            os.close(fd)
    assert waiting.returncode == 0, err
    assert "got the lock after" in err
    assert json.loads(out)["folders"]["daily"]["delete"] == planted["daily"][:3][::-1]
    assert not set(planted["daily"][:3]) & set(os.listdir(root / "daily"))


def test_schedules_select_folders_and_bad_arguments_fail(setup):
    make, root = setup
    planted = seed_folders(root)
    weekly = snapshot(root / "weekly")
    result = program("rotate", "--config", make(), "--schedule", "daily", "--schedule", "monthly",
                     "--now", "2025-10-10T02:01:00", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["folders"]) == ["daily", "monthly"]
    assert report["folders"]["monthly"]["delete"] == planted["monthly"][:2][::-1]
    assert snapshot(root / "weekly") == weekly
    unknown = program("rotate", "--config", make(), "--schedule", "yearly")
    assert unknown.returncode == 1
    assert error_lines(unknown.stderr) == ["fs_backup: ERROR: no schedule 'yearly' in the configuration "
                                           "(have: daily, weekly, monthly)"]
    bad_now = program("rotate", "--config", make(), "--now", "yesterday")
    assert bad_now.returncode == 2 and "YYYY-MM-DDTHH:MM:SS" in bad_now.stderr
    no_cloud = program("rotate", "--config", make(), "--cloud")
    assert no_cloud.returncode == 1 and "no cloud copy is configured" in error_lines(no_cloud.stderr)[0]
    plant(root / "daily", planted["daily"])  # the first run above rotated them
    broken = dict(json.loads(open(make()).read())["folders"])
    broken["weekly"] = dict(broken["weekly"], name_format="field_service_week_%V_%Y.sql.gz")
    refused = program("rotate", "--config", make(folders=broken), "--now", "2025-10-10T02:01:00")
    assert refused.returncode == 1 and "%G" in error_lines(refused.stderr)[0]
    # bad settings of one folder: nothing is deleted in any folder
    assert set(planted["daily"]) <= set(os.listdir(root / "daily"))


def rclone_binary() -> str | None:
    for candidate in (os.path.join(os.path.dirname(sys.executable), "rclone"), shutil.which("rclone")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def test_cloud_copies_are_rotated_by_their_own_retention(setup, tmp_path):
    rclone = rclone_binary()
    if rclone is None:
        pytest.skip("rclone is not installed")
    make, root = setup
    planted = seed_folders(root)
    remote = tmp_path / "remote" / "field_service"
    plant(remote / "daily", planted["daily"], others=("someone_elses_file.txt",))
    conf = tmp_path / "rclone.conf"
    conf.write_text("[cloud]\ntype = local\n")
    cloud = {"remote": f"cloud:{remote}", "rclone": rclone, "rclone_config": str(conf),
             "require_encryption": False, "timeout": 60,
             "retention": {"daily": {"keep": 2, "max_age": "1d"}}}
    config = make(cloud=cloud)
    before = snapshot(remote / "daily")
    dry = program("rotate", "--config", config, "--cloud", "--dry-run", "--now", "2025-10-10T02:01:00",
                  "--json")
    assert dry.returncode == 0, dry.stderr
    assert snapshot(remote / "daily") == before
    planned = json.loads(dry.stdout)["cloud"]["daily"]
    assert planned["path"] == f"cloud:{remote}/daily"
    assert planned["delete"] == planted["daily"][:8][::-1]
    assert planned["ignored"] == ["someone_elses_file.txt"]
    alias = program("cloud-rotate", "--config", config, "--dry-run", "--now", "2025-10-10T02:01:00",
                    "--json")
    assert alias.returncode == 0, alias.stderr
    assert json.loads(alias.stdout)["folders"]["daily"] == planned
    real = program("rotate", "--config", config, "--cloud", "--now", "2025-10-10T02:01:00", "--json")
    assert real.returncode == 0, real.stderr
    report = json.loads(real.stdout)
    assert report["cloud"]["daily"]["delete"] == planned["delete"]
    assert report["folders"]["daily"]["delete"] == planted["daily"][:3][::-1]  # the local one too
    assert sorted(os.listdir(remote / "daily")) == sorted(
        [*planted["daily"][8:], *(n + ".sha256" for n in planted["daily"][8:]), "someone_elses_file.txt"])
    assert os.path.exists(str(root / ".fs_backup.lock") + ".upload")  # the uploads' lock was taken
