# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a piece of work in a process of its own session, so that it finishes
even when whoever started it dies.

A module's process belongs to the control node's run: a SIGKILL of
``ansible-playbook`` and its process group (a closed laptop, a cancelled CI
job) kills it with a local connection, and a dropped SSH session may hang it
up. Work that must not stop half way (the switch: once it has begun, it must
end with one release serving and the record saying which) runs in a child
that has left that session (``setsid``), ignores hang-ups and broken pipes,
and hands its result back through a pipe; the module waits for it. Unlike
Ansible's ``async``, nothing polls and nothing is left on disk.
"""

from __future__ import annotations

import json
import os
import signal


class DetachedFailure(Exception):
    """The work raised: ``payload`` is what ``on_error`` made of the exception
    (None when the child died without an answer)."""

    def __init__(self, message: str, payload: dict | None = None):
        super().__init__(message)
        self.payload = payload


def _quiet_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def _leave_session() -> None:
    """In a forked child: its own session, deaf to hang-ups, no stdio."""
    os.setsid()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _quiet_stdio()


def start_detached(work) -> int:
    """Run ``work()`` in a detached child and return at once (its pid): work
    whose result nobody waits for, such as removing what a check made."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            _leave_session()
            work()
        except BaseException:  # noqa: BLE001 - nobody to tell
            code = 1
        finally:
            os._exit(code)
    return pid


def run_detached(work, on_error) -> dict:
    """Run ``work()`` (which returns a JSON-able dict) in a detached child
    and return its result. If it raises, ``on_error(exc)`` (a JSON-able
    dict) is raised here as ``DetachedFailure(payload=...)``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own session, deaf to hang-ups
        code = 0
        try:
            os.close(read_fd)
            _leave_session()
            try:
                answer = {"ok": True, "result": work()}
            except BaseException as exc:  # noqa: BLE001 - every failure goes back to the module
                answer = {"ok": False, "error": on_error(exc)}
            data = json.dumps(answer).encode()
            try:
                while data:
                    data = data[os.write(write_fd, data):]
            except OSError:
                pass  # nobody waits any more: the work is done all the same
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.waitpid(pid, 0)
    try:
        answer = json.loads(b"".join(chunks) or b"null")
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise DetachedFailure(f"the detached process {pid} died before it answered")
    if not answer.get("ok"):
        raise DetachedFailure("the detached work failed", answer.get("error") or {})
    return answer.get("result") or {}
