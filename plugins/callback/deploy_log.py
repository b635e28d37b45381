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
import os

from ansible.plugins.callback import CallbackBase

from ansible_collections.fieldservice.deploy.plugins.plugin_utils.deploy_lines import (
    STOPPED_TEXT,
    PendingLines,
    Repeats,
    failed_line,
    is_log_task,
    note_log,
    now_text,
    open_log,
    parse_playbooks,
    resolve_log_dir,
    run_failed,
    unreachable_line,
)


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
        self._pending = PendingLines()  # debug lines of the current task, written when the next event comes
        self._repeats = Repeats()
        self._atexit_registered = False
        super().__init__(display=display, options=options)

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self.log_dir = str(self.get_option("log_dir") or "deployment_logs")
        self.playbooks = parse_playbooks(self.get_option("playbooks"))

    # -- writing --------------------------------------------------------------------------

    def _write(self, text: str, stamp: str | None = None) -> None:
        if self._fh is None:
            return
        self._fh.write(f"[{stamp or now_text()}] {text}\n")
        self._fh.flush()

    def _flush_pending(self) -> None:
        for stamp, _at, line in self._pending.flush():
            self._write(line, stamp)

    # -- events ---------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        if self._fh is not None:
            return  # already logging (the play recap of the previous playbook closes it)
        file_name = getattr(playbook, "_file_name", None) or ""
        spec = self.playbooks.get(os.path.basename(file_name))
        if spec is None:
            return
        self.kind = spec["kind"]
        self._repeats = Repeats()
        self.path, self._fh = open_log(resolve_log_dir(self.log_dir, file_name), spec["prefix"])
        note_log(file_name, self.path)  # the console writes Ansible's full output beside it
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
        if self._fh is not None and is_log_task(result):
            self._pending.add(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if self._fh is None or ignore_errors or not self._repeats.first(result):
            return
        self._flush_pending()
        self._write(failed_line(result))

    def v2_runner_on_unreachable(self, result):
        if self._fh is None:
            return
        self._flush_pending()
        self._write(unreachable_line(result))

    def v2_playbook_on_stats(self, stats):
        if self._fh is None:
            return
        self._flush_pending()
        self._write(f"{self.kind} {'FAILED' if run_failed(stats) else 'SUCCESS'}")
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
