# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy lock: deploy, rollback and restore of one server never overlap.

The lock is a small JSON file on the server, created with O_EXCL so that two
runs racing for it cannot both win. It names its holder (control-node host,
process id, user, playbook, since when). A second run is refused at once with
that information. A lock whose holder is gone (the same control node no
longer has that process, e.g. an ansible-playbook killed with SIGKILL) is
*stale*; it is only taken over when the user asks for it explicitly, so a
lock is never broken silently. Plain stdlib, unit tested as is.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass


class LockError(Exception):
    """The lock cannot be taken or released; the message says why."""


@dataclass
class Holder:
    host: str
    pid: int
    user: str
    playbook: str
    since: float
    token: str

    @classmethod
    def from_dict(cls, data: dict) -> Holder:
        return cls(
            host=str(data.get("host", "?")),
            pid=int(data.get("pid", 0) or 0),
            user=str(data.get("user", "?")),
            playbook=str(data.get("playbook", "?")),
            since=float(data.get("since", 0) or 0),
            token=str(data.get("token", "")),
        )

    def as_dict(self) -> dict:
        return {
            "host": self.host, "pid": self.pid, "user": self.user,
            "playbook": self.playbook, "since": self.since, "token": self.token,
            "since_iso": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)),
        }

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"{self.playbook} by {self.user}@{self.host} (pid {self.pid}) since {when}"


def read_holder(path: str) -> Holder | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return Holder.from_dict(json.load(fh))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # An unreadable lock file still means "locked": report it as unknown.
        return Holder("?", 0, "?", "?", os.stat(path).st_mtime if os.path.exists(path) else 0, "")


def is_stale(holder: Holder, this_host: str, pid_alive, max_age: float, now: float) -> bool:
    """A holder is gone when its process no longer runs on this same control
    node, or when the lock is older than ``max_age`` seconds (0: never)."""
    if holder.host == this_host and holder.pid > 0 and not pid_alive(holder.pid):
        return True
    return bool(max_age) and now - holder.since > max_age


def acquire(path: str, me: Holder, stale: bool, break_stale: bool, left: str = "") -> dict:
    """Take the lock for ``me``. Returns {"acquired": True, "broke": Holder|None}.

    ``left``: what the server looks like now (which release serves, whether
    a switch is in progress), said with a stale lock: what the gone run left."""
    for _attempt in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            holder = read_holder(path)
            if holder is None:
                continue  # released meanwhile: try again
            if holder.token and holder.token == me.token:
                return {"acquired": True, "changed": False, "broke": None}
            if stale and break_stale:
                os.unlink(path)
                result = acquire(path, me, False, False, left)
                result["broke"] = holder
                return result
            hint = ""
            if stale:
                hint = " The holder is gone (stale lock)"
                hint += f"; it left the server so: {left}." if left else "."
                hint += " Run again with -e deploy_lock_break=true to release it."
            raise LockError(f"Another run holds the deploy lock: {holder.describe()}.{hint}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(me.as_dict(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        return {"acquired": True, "changed": True, "broke": None}
    raise LockError(f"could not create {path}")


def release(path: str, token: str) -> bool:
    """Remove the lock if ``token`` holds it. Returns whether it was removed."""
    holder = read_holder(path)
    if holder is None:
        return False
    if holder.token != token:
        raise LockError(f"The deploy lock is held by another run ({holder.describe()}); not released.")
    os.unlink(path)
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
        # the command name may contain spaces and parentheses: split after the last ')'
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def _proc_argv(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        return fh.read().decode(errors="replace").split("\0")


def _is_ansible_playbook(argv: list[str]) -> bool:
    """ansible-playbook itself (argv[0]), or run by its interpreter (argv[1]);
    not a shell or a script that merely mentions it."""
    return any(os.path.basename(arg) == "ansible-playbook" for arg in argv[:2])


def playbook_pid(start: int | None = None) -> int:
    """The pid of the ansible-playbook process this module runs under (on the
    control node), found by walking up the process tree; 0 if none.

    The outermost of the unbroken chain of ansible-playbook processes above
    this one: Ansible's worker processes are forks of ansible-playbook with
    the same command line, and they end with the task; the run is alive as
    long as the main process is. A wrapper further up (a shell, a CI job)
    is not the run.
    """
    pid = start or os.getpid()
    found = 0
    seen = 0
    while pid > 1 and seen < 64:
        try:
            if _is_ansible_playbook(_proc_argv(pid)):
                found = pid
            elif found:
                break
            pid = _proc_parent(pid)
        except (OSError, ValueError, IndexError):
            break
        seen += 1
    return found
