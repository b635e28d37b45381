# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Notification callback: the human deploy log the team's old scripts wrote."""

from __future__ import annotations

DOCUMENTATION = r"""
name: deploy_log
type: notification
short_description: Write the human deploy log (deployment_logs/deploy_YYYYMMDD_HHMMSS.log)
description:
  - Writes, on the control node, one short log per run of the deploy, rollback and restore
    playbooks, in the format of the team's old deploy scripts, one line per step,
    for example C([2025-10-10 15:30:00] START DEPLOYMENT).
  - Only the playbooks listed in O(playbooks) are logged, matched on the basename of the
    playbook file; for any other playbook the plugin writes nothing. One file per listed
    playbook file run (C(ansible-playbook a.yml b.yml) can write two).
  - >-
    The first line is C(START <kind>), the last one C(<kind> SUCCESS) or C(<kind> FAILED)
    (a host with a failed task or unreachable in the play recap). When C(ansible-playbook)
    ends without a play recap (a fatal error, an interrupt), the last lines are
    C(ERROR: ansible-playbook stopped before the play recap ...) and C(<kind> FAILED);
    a killed process writes nothing more.
  - >-
    The lines in between come from C(debug) tasks whose name starts with C(Deploy log:)
    (their C(msg); a list gives one line per element, a multi-line string one line per line),
    written once per task even when it runs on several hosts. When every host that ran the
    task gave the same message, it is written once, bare; when the hosts gave different
    messages, every host's message is written prefixed with C(<host>: ). Such a line is written
    when the next task starts (its timestamp is when the first host reported it).
  - >-
    Every failed task not ignored by C(ignore_errors) writes
    C(ERROR: <task name> on <host>: <msg>), also when a C(rescue) section recovers it; an
    unreachable host writes C(ERROR: <host> unreachable: <msg>). The message is one line of at
    most 500 characters; a task or result under C(no_log) writes C((output hidden by no_log))
    and nothing of its output.
  - Every line is flushed at once so the log can be followed with C(tail -f).
requirements:
  - Enabled in C(callbacks_enabled) as C(fieldservice.deploy.deploy_log) (ansible.cfg C([defaults]) or
    E(ANSIBLE_CALLBACKS_ENABLED)).
options:
  log_dir:
    description:
      - Directory of the logs, created with mode C(0750) when missing (files are C(0640)).
      - A relative path is resolved against the directory above the playbook's directory
        (the project root when the playbooks live in C(playbooks/)), or against the current
        directory when the playbook comes from an installed collection
        (C(ansible-playbook fieldservice.deploy.deploy) run in an app's repository writes
        C(<that repository>/deployment_logs/)). C(~) and environment variables are expanded.
    type: str
    default: deployment_logs
    ini:
      - section: callback_deploy_log
        key: log_dir
    env:
      - name: DEPLOY_LOG_DIR
  playbooks:
    description:
      - The playbooks that are logged, keyed by the basename of the playbook file. Each value
        has C(kind), the word of the first and last line (C(START DEPLOYMENT)), and C(prefix),
        the start of the file name (C(<prefix>_YYYYMMDD_HHMMSS.log); when the file exists,
        C(_2), C(_3)... are added).
      - >-
        A dict; from the ini file or the environment, give it as a JSON object, for example
        C({"deploy.yml": {"kind": "DEPLOYMENT", "prefix": "deploy"}}).
    type: raw
    default:
      deploy.yml: {kind: DEPLOYMENT, prefix: deploy}
      rollback.yml: {kind: ROLLBACK, prefix: rollback}
      restore.yml: {kind: RESTORE, prefix: restore}
    ini:
      - section: callback_deploy_log
        key: playbooks
    env:
      - name: DEPLOY_LOG_PLAYBOOKS
"""

import atexit
import json
import os
import re
import time

from ansible.errors import AnsibleError
from ansible.plugins.callback import CallbackBase

LINE_PREFIX = "Deploy log:"
DEBUG_ACTIONS = frozenset({"debug", "ansible.builtin.debug", "ansible.legacy.debug"})
NO_LOG_TEXT = "(output hidden by no_log)"
MAX_MSG = 500
STOPPED_TEXT = "ansible-playbook stopped before the play recap (fatal error or interrupted)"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_playbooks(value) -> dict:
    """Validate the ``playbooks`` option: {basename: {"kind": str, "prefix": str}}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise AnsibleError(f"deploy_log: option 'playbooks' is not a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise AnsibleError(
            f"deploy_log: option 'playbooks' must be a dict of playbook file name -> "
            f"{{kind, prefix}}, got {type(value).__name__}"
        )
    parsed = {}
    for name, spec in value.items():
        if not isinstance(spec, dict):
            raise AnsibleError(
                f"deploy_log: option 'playbooks': the entry of {name!r} must be a dict with kind and prefix"
            )
        kind = str(spec.get("kind") or "").strip()
        prefix = str(spec.get("prefix") or "").strip()
        if not kind or "\n" in kind:
            raise AnsibleError(
                f"deploy_log: option 'playbooks': the entry of {name!r} needs a one-line 'kind'"
            )
        if not _PREFIX_RE.match(prefix):
            raise AnsibleError(
                f"deploy_log: option 'playbooks': the entry of {name!r} needs a 'prefix' made of "
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


def _is_censored(data) -> bool:
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


def project_dir(playbook_path: str) -> str:
    """Where a relative log_dir is: the directory above the playbook's
    (a checkout runs playbooks/deploy.yml), or the current directory when the
    playbook comes from a collection (``ansible-playbook fieldservice.deploy.deploy``
    from an app's repository: the logs belong to that repository, not to the
    installed collection)."""
    if "/ansible_collections/" in os.path.abspath(playbook_path).replace(os.sep, "/"):
        return os.getcwd()
    return os.path.dirname(os.path.dirname(os.path.abspath(playbook_path)))


class CallbackModule(CallbackBase):
    """Writes deployment_logs/<prefix>_YYYYMMDD_HHMMSS.log for the listed playbooks."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "deploy_log"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None, options=None):
        self.log_dir = "deployment_logs"
        self.playbooks = {}
        self.path = None
        self.kind = None
        self._fh = None
        # Debug lines of the current task, written when the next event comes:
        # task uuid -> {"time": str, "order": [host], "msgs": {host: (lines)}}
        self._pending = {}
        self._pending_order = []
        self._atexit_registered = False
        super().__init__(display=display, options=options)

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.log_dir = str(self.get_option("log_dir") or "deployment_logs")
        self.playbooks = parse_playbooks(self.get_option("playbooks"))

    # -- writing --------------------------------------------------------------------------

    @staticmethod
    def _now() -> str:
        return time.strftime(TIME_FORMAT, time.localtime())

    def _write(self, text: str, stamp: str | None = None) -> None:
        if self._fh is None:
            return
        self._fh.write(f"[{stamp or self._now()}] {text}\n")
        self._fh.flush()

    def _resolve_dir(self, playbook_path: str) -> str:
        log_dir = os.path.expandvars(os.path.expanduser(self.log_dir))
        if not os.path.isabs(log_dir):
            log_dir = os.path.join(project_dir(playbook_path), log_dir)
        return os.path.normpath(log_dir)

    def _open(self, log_dir: str, prefix: str):
        if not os.path.isdir(log_dir):
            os.makedirs(log_dir, mode=0o750, exist_ok=True)
            os.chmod(log_dir, 0o750)
        base = f"{prefix}_{time.strftime('%Y%m%d_%H%M%S', time.localtime())}"
        n = 1
        while True:
            path = os.path.join(log_dir, (base if n == 1 else f"{base}_{n}") + ".log")
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o640)
            except FileExistsError:
                n += 1
                continue
            os.fchmod(fd, 0o640)  # whatever the umask
            return path, os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace")

    # -- pending debug lines ----------------------------------------------------------------

    def _flush_pending(self) -> None:
        for uuid in self._pending_order:
            entry = self._pending[uuid]
            msgs = [entry["msgs"][host] for host in entry["order"]]
            if all(m == msgs[0] for m in msgs):
                for line in msgs[0]:
                    self._write(line, entry["time"])
            else:
                for host in entry["order"]:
                    for line in entry["msgs"][host]:
                        self._write(f"{host}: {line}", entry["time"])
        self._pending = {}
        self._pending_order = []

    def _add_pending(self, result) -> None:
        data = result.result
        if getattr(result.task, "no_log", False) is True or _is_censored(data):
            return  # never write what no_log hides
        if isinstance(data.get("results"), list):  # a loop: one message per item
            lines = []
            for item in data["results"]:
                if isinstance(item, dict) and not item.get("skipped") and not _is_censored(item):
                    lines.extend(msg_lines(item.get("msg")))
        else:
            lines = msg_lines(data.get("msg"))
        if not lines:
            return
        uuid = getattr(result.task, "_uuid", None) or id(result.task)
        entry = self._pending.get(uuid)
        if entry is None:
            entry = self._pending[uuid] = {"time": self._now(), "order": [], "msgs": {}}
            self._pending_order.append(uuid)
        host = result.host.get_name()
        if host not in entry["msgs"]:
            entry["order"].append(host)
        entry["msgs"][host] = tuple(lines)

    # -- events ---------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        if self._fh is not None:
            return  # already logging (the play recap of the previous playbook closes it)
        file_name = getattr(playbook, "_file_name", None) or ""
        spec = self.playbooks.get(os.path.basename(file_name))
        if spec is None:
            return
        self.kind = spec["kind"]
        self.path, self._fh = self._open(self._resolve_dir(file_name), spec["prefix"])
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True
        self._write(f"START {self.kind}")

    def v2_playbook_on_play_start(self, play):
        self._flush_pending()

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._flush_pending()

    def v2_playbook_on_handler_task_start(self, task):
        self._flush_pending()

    def v2_playbook_on_no_hosts_remaining(self):
        self._flush_pending()

    def v2_runner_on_ok(self, result):
        if self._fh is None:
            return
        if result.task.action not in DEBUG_ACTIONS:
            return
        if not task_name(result).startswith(LINE_PREFIX):
            return
        self._add_pending(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if self._fh is None or ignore_errors:
            return
        self._flush_pending()
        task = one_line(task_name(result), 200)
        self._write(f"ERROR: {task} on {result.host.get_name()}: {self._error_text(result)}")

    def v2_runner_on_unreachable(self, result):
        if self._fh is None:
            return
        self._flush_pending()
        self._write(f"ERROR: {result.host.get_name()} unreachable: {self._error_text(result)}")

    def v2_playbook_on_stats(self, stats):
        if self._fh is None:
            return
        self._flush_pending()
        failed = False
        for host in sorted(stats.processed):
            summary = stats.summarize(host)
            if summary.get("failures") or summary.get("unreachable"):
                failed = True
        self._write(f"{self.kind} {'FAILED' if failed else 'SUCCESS'}")
        self._fh.close()
        self._fh = None

    def _at_exit(self):
        """ansible-playbook ends without a play recap (fatal error, interrupt): say so."""
        if self._fh is None:
            return
        try:
            self._flush_pending()
            self._write(f"ERROR: {STOPPED_TEXT}")
            self._write(f"{self.kind} FAILED")
            self._fh.close()
        except (OSError, ValueError):
            pass
        self._fh = None

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _error_text(result) -> str:
        data = result.result
        if getattr(result.task, "no_log", False) is True or _is_censored(data):
            return NO_LOG_TEXT
        msg = data.get("msg")
        results = data.get("results")
        if isinstance(results, list) and (not msg or msg == "One or more items failed"):
            for item in results:
                if isinstance(item, dict) and item.get("failed"):
                    if _is_censored(item):
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
