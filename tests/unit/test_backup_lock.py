"""The server-wide backup lock (fs_backup/lock.py), by import."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from fs_backup import errors, lock


def test_the_holder_is_written_and_a_second_run_waits_then_gives_up(tmp_path):
    path = tmp_path / "locks" / ".fs_backup.lock"
    first = lock.BackupLock(str(path), 5, what="dump appdb")
    with first:
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["what"] == "dump appdb"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        second = lock.BackupLock(str(path), 0.5)
        started = time.monotonic()
        with pytest.raises(errors.LockTimeout) as caught:
            second.acquire()
        assert 0.4 <= time.monotonic() - started < 5
        assert caught.value.exit_code == errors.EXIT_LOCKED == 3
        assert re.fullmatch(rf"another backup is running \(pid {os.getpid()} since \S+\); waited \d+s",
                            str(caught.value)), str(caught.value)
    assert path.read_text() == ""  # released: no holder any more
    with lock.BackupLock(str(path), 0):  # and free to take at once
        pass


def test_config_lock_uses_the_configuration(tmp_path):
    config = {"lock_file": str(tmp_path / ".lock"), "lock_timeout": 7}
    taken = lock.config_lock(config, "rotate", suffix=".upload")
    assert taken.path == str(tmp_path / ".lock.upload") and taken.timeout == 7.0
    assert lock.config_lock({}, "x").path == lock.DEFAULT_LOCK_FILE
