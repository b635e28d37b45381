# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lines of the deploy log, one owner for the two callbacks that show them:
``deploy_log`` writes them to deployment_logs/<prefix>_YYYYMMDD_HHMMSS.log,
``console`` prints them (with each step's duration) on the terminal.

What is a line (a ``Deploy log: ...`` debug task's message, a failed task's
``ERROR: ...``), what is hidden (no_log), which playbooks are logged and where
their files go. Plain Python on top of the task result objects of
ansible-core 2.19 and 2.21; no output of its own."""

from __future__ import annotations

import json
import os
import re
import time

from ansible.errors import AnsibleError

LINE_PREFIX = "Deploy log:"
DEBUG_ACTIONS = frozenset({"debug", "ansible.builtin.debug", "ansible.legacy.debug"})
NO_LOG_TEXT = "(output hidden by no_log)"
MAX_MSG = 500
STOPPED_TEXT = "ansible-playbook stopped before the play recap (fatal error or interrupted)"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FULL_OUTPUT_SUFFIX = ".ansible.log"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_playbooks(value, plugin: str = "deploy_log") -> dict:
    """Validate the ``playbooks`` option: {basename: {"kind": str, "prefix": str}}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise AnsibleError(f"{plugin}: option 'playbooks' is not a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise AnsibleError(
            f"{plugin}: option 'playbooks' must be a dict of playbook file name -> "
            f"{{kind, prefix}}, got {type(value).__name__}"
        )
    parsed = {}
    for name, spec in value.items():
        if not isinstance(spec, dict):
            raise AnsibleError(
                f"{plugin}: option 'playbooks': the entry of {name!r} must be a dict with kind and prefix"
            )
        kind = str(spec.get("kind") or "").strip()
        prefix = str(spec.get("prefix") or "").strip()
        if not kind or "\n" in kind:
            raise AnsibleError(f"{plugin}: option 'playbooks': the entry of {name!r} needs a one-line 'kind'")
        if not _PREFIX_RE.match(prefix):
            raise AnsibleError(
                f"{plugin}: option 'playbooks': the entry of {name!r} needs a 'prefix' made of "
                f"letters, digits, '.', '_' and '-' (got {prefix!r})"
            )
        parsed[os.path.basename(str(name))] = {"kind": kind, "prefix": prefix}
    return parsed


def one_line(text, limit: int = MAX_MSG) -> str:
    """Collapse whitespace (newlines included) and cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def is_censored(data) -> bool:
    return isinstance(data, dict) and ("censored" in data or data.get("_ansible_no_log") is True)


def msg_lines(msg) -> list[str]:
    """The log lines of a debug ``msg``: a list gives one line per element, a string one per line."""
    items = msg if isinstance(msg, (list, tuple)) else [msg]
    lines = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, (dict, list)):
            item = json.dumps(item, sort_keys=True, default=str)
        for line in str(item).splitlines():
            line = line.rstrip()
            if line.strip():
                lines.append(line)
    return lines


def task_name(result) -> str:
    """The task's own name, without the role it is in: ansible-core 2.19 gives
    it as ``result.task_name``, 2.21 as ``<role fqcn> : <name>`` there."""
    name = getattr(getattr(result, "task", None), "name", None)
    return str(name or result.task_name or "")


def is_log_task(result) -> bool:
    """A ``debug`` task named ``Deploy log: ...``: its message is a log line."""
    return result.task.action in DEBUG_ACTIONS and task_name(result).startswith(LINE_PREFIX)


def project_dir(playbook_path: str) -> str:
    """Where a relative log_dir is: the directory above the playbook's
    (a checkout runs playbooks/deploy.yml), or the current directory when the
    playbook comes from a collection (``ansible-playbook fieldservice.deploy.deploy``
    from an app's repository: the logs belong to that repository, not to the
    installed collection)."""
    if "/ansible_collections/" in os.path.abspath(playbook_path).replace(os.sep, "/"):
        return os.getcwd()
    return os.path.dirname(os.path.dirname(os.path.abspath(playbook_path)))


def resolve_log_dir(log_dir: str, playbook_path: str) -> str:
    log_dir = os.path.expandvars(os.path.expanduser(log_dir or "deployment_logs"))
    if not os.path.isabs(log_dir):
        log_dir = os.path.join(project_dir(playbook_path), log_dir)
    return os.path.normpath(log_dir)


def now_text() -> str:
    return time.strftime(TIME_FORMAT, time.localtime())


def _create(path: str):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o640)
    os.fchmod(fd, 0o640)  # whatever the umask
    return os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace")


def open_log(log_dir: str, prefix: str, suffix: str = ".log"):
    """Create ``<log_dir>/<prefix>_YYYYMMDD_HHMMSS<suffix>`` (``_2``, ``_3``... added
    when it exists), mode 0640, the directory 0750 when it is made. Returns (path, file)."""
    if not os.path.isdir(log_dir):
        os.makedirs(log_dir, mode=0o750, exist_ok=True)
        os.chmod(log_dir, 0o750)
    base = f"{prefix}_{time.strftime('%Y%m%d_%H%M%S', time.localtime())}"
    n = 1
    while True:
        path = os.path.join(log_dir, (base if n == 1 else f"{base}_{n}") + suffix)
        try:
            return path, _create(path)
        except FileExistsError:
            n += 1


def open_beside(log_path: str, suffix: str = FULL_OUTPUT_SUFFIX):
    """Create the file beside a deploy log: ``deploy_X.log`` -> ``deploy_X<suffix>``."""
    base = log_path[: -len(".log")] if log_path.endswith(".log") else log_path
    path = base + suffix
    return path, _create(path)


# The deploy log each playbook file run writes, as deploy_log opened it (the
# console writes Ansible's full output beside it). One process, one run at a time.
_OPENED: dict[str, str] = {}


def note_log(playbook_file: str, path: str) -> None:
    _OPENED.clear()
    _OPENED[os.path.abspath(playbook_file)] = path


def log_of(playbook_file: str) -> str | None:
    return _OPENED.get(os.path.abspath(playbook_file))


def current_log() -> str | None:
    """The deploy log of this run (the callback opened it before any task's
    worker was forked, so a worker sees it too); None when nothing is logged."""
    return next(iter(_OPENED.values()), None)


def error_text(result) -> str:
    """A failed task's message, on one line; ``(output hidden by no_log)`` for a hidden one."""
    data = result.result
    if getattr(result.task, "no_log", False) is True or is_censored(data):
        return NO_LOG_TEXT
    msg = data.get("msg")
    results = data.get("results")
    if isinstance(results, list) and (not msg or msg == "One or more items failed"):
        for item in results:
            if isinstance(item, dict) and item.get("failed"):
                if is_censored(item):
                    return NO_LOG_TEXT
                if item.get("msg"):
                    msg = item["msg"]
                    break
    stderr = data.get("stderr")
    if msg == "non-zero return code" and isinstance(stderr, str) and stderr.strip():
        msg = f"{msg}: {stderr}"
    if not msg:
        msg = stderr or data.get("reason") or "failed"
    if not isinstance(msg, str):
        msg = json.dumps(msg, sort_keys=True, default=str)
    return one_line(msg) or "failed"


def failed_line(result) -> str:
    return f"ERROR: {one_line(task_name(result), 200)} on {result.host.get_name()}: {error_text(result)}"


class Repeats:
    """A failure a rescue raises again with the same message (to tell the team
    first, then stop) is said once per host."""

    def __init__(self) -> None:
        self._seen: set = set()

    def first(self, result) -> bool:
        key = (result.host.get_name(), error_text(result))
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def unreachable_line(result) -> str:
    return f"ERROR: {result.host.get_name()} unreachable: {error_text(result)}"


def run_failed(stats) -> bool:
    """A host with a failed task or unreachable in the play recap."""
    for host in sorted(stats.processed):
        summary = stats.summarize(host)
        if summary.get("failures") or summary.get("unreachable"):
            return True
    return False


class PendingLines:
    """The ``Deploy log:`` lines of the tasks that ran since the last flush.

    A task's line is given out when the next task starts (``flush``), once
    however many hosts ran it: bare when every host gave the same message,
    else each host's prefixed with ``<host>: ``. Its time is when the first
    host reported it."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._entries: dict = {}
        self._order: list = []

    def add(self, result) -> None:
        data = result.result
        if getattr(result.task, "no_log", False) is True or is_censored(data):
            return  # never show what no_log hides
        if isinstance(data.get("results"), list):  # a loop: one message per item
            lines = []
            for item in data["results"]:
                if isinstance(item, dict) and not item.get("skipped") and not is_censored(item):
                    lines.extend(msg_lines(item.get("msg")))
        else:
            lines = msg_lines(data.get("msg"))
        if not lines:
            return
        uuid = getattr(result.task, "_uuid", None) or id(result.task)
        entry = self._entries.get(uuid)
        if entry is None:
            entry = self._entries[uuid] = {"stamp": now_text(), "at": self._clock(), "order": [], "msgs": {}}
            self._order.append(uuid)
        host = result.host.get_name()
        if host not in entry["msgs"]:
            entry["order"].append(host)
        entry["msgs"][host] = tuple(lines)

    def flush(self) -> list[tuple[str, float, str]]:
        """(stamp, monotonic time, line) of every pending line, in order; none left after."""
        out = []
        for uuid in self._order:
            entry = self._entries[uuid]
            msgs = [entry["msgs"][host] for host in entry["order"]]
            if all(m == msgs[0] for m in msgs):
                out.extend((entry["stamp"], entry["at"], line) for line in msgs[0])
            else:
                for host in entry["order"]:
                    out.extend((entry["stamp"], entry["at"], f"{host}: {line}")
                               for line in entry["msgs"][host])
        self._entries = {}
        self._order = []
        return out


def seconds_text(seconds: float) -> str:
    """``0.4 s``, ``12.3 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    seconds = int(round(seconds))
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def is_step_start(line: str) -> bool:
    """A line that starts a step ends with ``...`` (``Creating backup...``,
    ``Restoring database from X...``), as the old scripts wrote them."""
    return line.rstrip().endswith("...")


class Steps:
    """The step a log line opened and how long it took.

    A step starts with a line that ends with ``...`` and ends with the next
    line of the log (a result such as ``Backup created: ...``, another step,
    an ERROR) or with the end of the run. ``line`` returns what to show for a
    line: first the end of the open step, if any, then the line itself."""

    def __init__(self):
        self.open: tuple[str, float] | None = None  # (line, monotonic start)

    def end(self, at: float, failed: bool = False) -> tuple[str, str] | None:
        """(``<step>``, ``done 1.2 s`` or ``failed after 1.2 s``), or None without an open step."""
        if self.open is None:
            return None
        text, start = self.open
        self.open = None
        took = seconds_text(max(0.0, at - start))
        return text, (f"failed after {took}" if failed else f"done {took}")

    def line(self, text: str, at: float, error: bool = False) -> tuple[tuple[str, str] | None, bool]:
        """(the ended step or None, whether ``text`` opens a step)."""
        ended = self.end(at, failed=error)
        if not error and is_step_start(text):
            self.open = (text, at)
            return ended, True
        return ended, False

    def elapsed(self, at: float) -> float | None:
        return None if self.open is None else max(0.0, at - self.open[1])
