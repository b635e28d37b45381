# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Stdout callback: the deploy log's lines with their durations on the terminal,
Ansible's full output in a file beside the deploy log."""

from __future__ import annotations

DOCUMENTATION = r"""
name: console
type: stdout
short_description: A console a person can read for deploy, rollback and restore
description:
  - >-
    For the playbooks the deploy log logs (O(playbooks), the same setting as the
    C(fieldservice.deploy.deploy_log) callback's) run without C(-v), the terminal shows only
    the deploy log's lines as they happen (C([2025-10-10 15:30:05] Creating backup...)), the
    end of each step with its duration (C(Creating backup... done 1.2 s)), the warnings, the
    C(ERROR:) line of every failed task, and the final result with the run's duration
    (C(DEPLOYMENT SUCCESS in 2 min 05 s)) and the paths of the deploy log and of the full output.
  - >-
    A step starts with a line that ends with C(...) and ends with the next line of the log, an
    C(ERROR:) line (C(failed after 3.0 s)) or the end of the run.
    After O(progress_interval) seconds without a line, and then every O(progress_interval)
    seconds, a line says that the step (or the run since its last line) still runs, for how
    long, and which task runs now
    (C(Creating backup... still running, 20.0 s: Dump the database before the deploy)).
    On a terminal the step's line is rewritten in place instead.
  - >-
    Ansible's full output, exactly what the C(ansible.builtin.default) callback prints, goes to
    C(<log_dir>/<prefix>_YYYYMMDD_HHMMSS.ansible.log) beside the deploy log (the same name with
    C(.ansible.log); mode C(0640)). A result hidden by C(no_log) stays hidden there too.
  - >-
    With C(-v) or more, with O(full_output), or for any other playbook, it is the
    C(ansible.builtin.default) callback, with all of that callback's options.
extends_documentation_fragment:
  - ansible.builtin.default_callback
  - ansible.builtin.result_format_callback
requirements:
  - Set as C(stdout_callback = fieldservice.deploy.console) in ansible.cfg C([defaults])
    (or E(ANSIBLE_STDOUT_CALLBACK)); the deploy log itself is written by the
    C(fieldservice.deploy.deploy_log) callback in C(callbacks_enabled).
options:
  log_dir:
    description:
      - Directory of the deploy logs; the full output file goes there. The same setting as the
        C(fieldservice.deploy.deploy_log) callback's (a relative path is resolved the same way).
    type: str
    default: deployment_logs
    ini:
      - section: callback_deploy_log
        key: log_dir
    env:
      - name: DEPLOY_LOG_DIR
  playbooks:
    description:
      - The playbooks shown in the readable form, keyed by the basename of the playbook file,
        each with C(kind) and C(prefix); the same setting as the
        C(fieldservice.deploy.deploy_log) callback's.
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
  full_output:
    description:
      - Print Ansible's full output on the terminal for every playbook, as the
        C(ansible.builtin.default) callback does (what C(-v) does, without its extra detail).
    type: bool
    default: false
    ini:
      - section: callback_console
        key: full_output
    env:
      - name: DEPLOY_CONSOLE_FULL_OUTPUT
  progress_interval:
    description:
      - Seconds without a line before a "still running" line, and between two of them; C(0) prints none.
    type: float
    default: 10
    ini:
      - section: callback_console
        key: progress_interval
    env:
      - name: DEPLOY_CONSOLE_PROGRESS_INTERVAL
"""

import atexit
import os
import sys
import threading
import time
import types

from ansible import constants as C
from ansible.plugins.callback.default import CallbackModule as DefaultCallback
from ansible.utils.display import Display

from ansible_collections.fieldservice.deploy.plugins.plugin_utils.deploy_lines import (
    FULL_OUTPUT_SUFFIX,
    STOPPED_TEXT,
    PendingLines,
    Repeats,
    Steps,
    failed_line,
    is_log_task,
    log_of,
    now_text,
    open_beside,
    open_log,
    parse_playbooks,
    resolve_log_dir,
    run_failed,
    seconds_text,
    unreachable_line,
)

# Display's methods that end in its display(): bound to the file display, they
# write there (Display's own code formats them, as on the terminal).
_REBOUND = ("warning", "deprecated", "error", "_error",
            "error_as_warning", "system_warning", "verbose", "v", "vv", "vvv", "vvvv", "vvvvv",
            "vvvvvv", "_verbose_display", "_verbose_log")


class FileDisplay:
    """What the default callback prints, written to a file instead of the
    terminal; everything else (verbosity, columns, ...) is the real display's.
    Warnings and deprecations go to the terminal too (``on_warning``)."""

    def __init__(self, real, write, on_warning):
        self._real = real
        self._write_text = write
        self._on_warning = on_warning
        # its own memory of what it showed: a warning in the file is not one on the terminal
        self._warns, self._deprecations, self._errors = set(), set(), set()
        for name in _REBOUND:
            func = getattr(Display, name, None)
            if func is not None:
                setattr(self, name, types.MethodType(func, self))
        self._file_warning = types.MethodType(Display._warning, self)
        self._file_deprecated = types.MethodType(Display._deprecated, self)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def display(self, msg, color=None, stderr=False, screen_only=False, log_only=False,
                newline=True, caplevel=None):
        msg = str(msg).replace("\r\n", "\n")
        if newline and not msg.endswith("\n"):
            msg += "\n"
        self._write_text(msg)

    def banner(self, msg, color=None, cows=True):
        Display.banner(self, msg, color=color, cows=False)

    def _warning(self, warning):
        self._file_warning(warning)
        self._on_warning(self._real._warning, warning)

    def _deprecated(self, warning):
        self._file_deprecated(warning)
        self._on_warning(self._real._deprecated, warning)


class CallbackModule(DefaultCallback):
    """The deploy's readable console, or the default callback."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "fieldservice.deploy.console"

    def __init__(self):
        super().__init__()
        self._terminal = self._display
        self._playbooks = {}
        self._log_dir = "deployment_logs"
        self._full_output = False
        self._interval = 10.0
        self._lock = threading.RLock()
        self._run = None  # the state of a readable run, None when it is the default callback
        self._atexit_registered = False

    def set_options(self, task_keys=None, var_options=None, direct=None):
        super().set_options(task_keys=task_keys, var_options=var_options, direct=direct)
        self._log_dir = str(self.get_option("log_dir") or "deployment_logs")
        self._playbooks = parse_playbooks(self.get_option("playbooks"), plugin="console")
        self._full_output = bool(self.get_option("full_output"))
        self._interval = max(0.0, float(self.get_option("progress_interval") or 0))

    # -- the terminal ---------------------------------------------------------------------

    def _say(self, text, color=None, stamp=None, keep_open=False, progress=False):
        """A line on the terminal, after the open step line (on a tty) is ended."""
        run = self._run
        with self._lock:
            if run is not None:
                run["last_out"] = time.monotonic()
                if not progress:
                    run["quiet_since"] = run["last_out"]
            if run is not None and run["open_line"]:
                self._terminal.display("")  # end the line left open
                run["open_line"] = False
            line = f"[{stamp or now_text()}] {text}"
            if keep_open and run is not None and run["tty"]:
                self._terminal.display(line, color=color, newline=False)
                run["open_line"] = True
            else:
                self._terminal.display(line, color=color)

    def _rewrite(self, text, stamp):
        """Rewrite the open step line in place (a tty)."""
        with self._lock:
            self._terminal.display(f"\r\x1b[K[{stamp}] {text}", newline=False)
            self._run["open_line"] = True

    def _show(self, stamp, at, text, error=False):
        """A log line, after the end of the step it ends."""
        run = self._run
        ended, opens = run["steps"].line(text, at, error=error)
        if ended is not None:
            step, how = ended
            color = C.COLOR_ERROR if how.startswith("failed") else None
            if run["open_line"] and run["tty"] and not error:
                self._rewrite(f"{step} {how}", run["step_stamp"])
                self._terminal.display("")
                run["open_line"] = False
            else:
                self._say(f"{step} {how}", color=color)
        if error:
            color = C.COLOR_ERROR
        elif "WARNING" in text:
            color = C.COLOR_WARN
        else:
            color = None
        if opens:
            run["step_stamp"] = stamp
        self._say(text, color=color, stamp=stamp, keep_open=opens)

    def _flush(self):
        if self._run is None:
            return
        with self._lock:
            for stamp, at, line in self._run["pending"].flush():
                self._show(stamp, at, line)

    def _on_warning(self, show, warning):
        with self._lock:
            if self._run is not None and self._run["open_line"]:
                self._terminal.display("")
                self._run["open_line"] = False
            show(warning)

    # -- the full output file -------------------------------------------------------------

    def _write_full(self, text):
        run = self._run
        if run is None:
            return
        if run["fh"] is None and not run["file_failed"]:
            self._open_full(run)
        if run["fh"] is not None:
            run["fh"].write(text)
            run["fh"].flush()

    def _open_full(self, run):
        """Beside the deploy log deploy_log opened for this playbook, else a name of its own."""
        try:
            log_path = log_of(run["file_name"])
            if log_path is not None:
                try:
                    run["path"], run["fh"] = open_beside(log_path)
                    run["log_path"] = log_path
                    return
                except FileExistsError:
                    pass
            run["path"], run["fh"] = open_log(resolve_log_dir(self._log_dir, run["file_name"]), run["prefix"],
                                              suffix=FULL_OUTPUT_SUFFIX)
        except OSError as exc:
            run["file_failed"] = True
            self._terminal.warning(f"console: cannot write Ansible's full output: {exc}")

    # -- progress -------------------------------------------------------------------------

    def _tick(self, stop):
        """A "still running" line after every progress_interval seconds without a line."""
        while not stop.wait(0.25):
            with self._lock:
                run = self._run
                if run is None or run["stop"] is not stop or run["task"] is None:
                    continue
                now = time.monotonic()
                if now - run["last_out"] < self._interval:
                    continue
                step = run["steps"].open
                took = run["steps"].elapsed(now) if step is not None else now - run["quiet_since"]
                text = f"still running, {seconds_text(took)}: {run['progress'] or run['task']}"
                if step is not None:
                    text = f"{step[0]} {text}"
                if step is not None and run["tty"] and run["open_line"]:
                    self._rewrite(text, run["step_stamp"])
                else:
                    self._say(text, progress=True)
                run["last_out"] = now

    def _task_started(self, task):
        self._flush()
        if self._run is not None:
            with self._lock:
                self._run["task"] = str(task.name or task.get_name())
                self._run["progress"] = ""

    # -- events ---------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook):
        file_name = getattr(playbook, "_file_name", None) or ""
        spec = self._playbooks.get(os.path.basename(file_name))
        if (self._run is None and spec is not None and not self._full_output
                and self._terminal.verbosity == 0):
            stop = threading.Event()
            self._run = {
                "kind": spec["kind"], "prefix": spec["prefix"], "file_name": file_name,
                "started": time.monotonic(), "pending": PendingLines(), "steps": Steps(),
                "repeats": Repeats(),
                "fh": None, "path": None, "log_path": None, "file_failed": False,
                "tty": bool(getattr(sys.stdout, "isatty", lambda: False)()),
                "open_line": False, "step_stamp": None, "task": None, "progress": "", "stop": stop,
                "last_out": time.monotonic(), "quiet_since": time.monotonic(),
            }
            self._display = FileDisplay(self._terminal, self._write_full, self._on_warning)
            if not self._atexit_registered:
                atexit.register(self._at_exit)
                self._atexit_registered = True
            self._say(f"START {spec['kind']}")
            if self._interval > 0:
                threading.Thread(target=self._tick, args=(stop,), name="console-progress",
                                 daemon=True).start()
        super().v2_playbook_on_start(playbook)

    def v2_playbook_on_play_start(self, play):
        self._flush()
        super().v2_playbook_on_play_start(play)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started(task)
        super().v2_playbook_on_task_start(task, is_conditional)

    def v2_playbook_on_handler_task_start(self, task):
        self._task_started(task)
        super().v2_playbook_on_handler_task_start(task)

    def v2_playbook_on_no_hosts_remaining(self):
        self._flush()
        super().v2_playbook_on_no_hosts_remaining()

    def v2_runner_on_ok(self, result):
        if self._run is not None and is_log_task(result):
            with self._lock:
                self._run["pending"].add(result)
        super().v2_runner_on_ok(result)

    def v2_runner_retry(self, result):
        """A long job's wait (fieldservice.deploy.job_progress) answers with its progress:
        the next "still running" line says it, and on a terminal the step's line says it at once."""
        super().v2_runner_retry(result)
        run = self._run
        progress = (getattr(result, "result", None) or {}).get("progress")
        if run is None or not isinstance(progress, str) or not progress:
            return
        with self._lock:
            run["progress"] = progress
            step = run["steps"].open
            now = time.monotonic()
            if step is not None and run["tty"] and run["open_line"] and self._interval > 0:
                took = seconds_text(run["steps"].elapsed(now))
                self._rewrite(f"{step[0]} still running, {took}: {progress}", run["step_stamp"])

    def v2_runner_on_failed(self, result, ignore_errors=False):
        super().v2_runner_on_failed(result, ignore_errors=ignore_errors)
        if self._run is not None and not ignore_errors and self._run["repeats"].first(result):
            with self._lock:
                self._flush()
                self._show(now_text(), time.monotonic(), failed_line(result), error=True)

    def v2_runner_on_unreachable(self, result):
        super().v2_runner_on_unreachable(result)
        if self._run is not None:
            with self._lock:
                self._flush()
                self._show(now_text(), time.monotonic(), unreachable_line(result), error=True)

    def v2_playbook_on_stats(self, stats):
        super().v2_playbook_on_stats(stats)
        if self._run is not None:
            self._finish(failed=run_failed(stats))

    def _finish(self, failed, reason=None):
        with self._lock:
            run = self._run
            self._flush()
            now = time.monotonic()
            ended = run["steps"].end(now, failed=failed)
            if ended is not None:
                self._say(" ".join(ended), color=C.COLOR_ERROR if failed else None)
            if reason:
                self._say(f"ERROR: {reason}", color=C.COLOR_ERROR)
            took = seconds_text(now - run["started"])
            self._say(f"{run['kind']} {'FAILED' if failed else 'SUCCESS'} in {took}",
                      color=C.COLOR_ERROR if failed else C.COLOR_OK)
            paths = []
            log_path = run["log_path"] or log_of(run["file_name"])
            if log_path:
                paths.append(f"Deploy log: {_short(log_path)}")
            if run["path"]:
                paths.append(f"Ansible's output: {_short(run['path'])} (-v prints it here)")
            if paths:
                self._terminal.display("; ".join(paths))
            run["stop"].set()
            if run["fh"] is not None:
                run["fh"].close()
            self._run = None
            self._display = self._terminal

    def _at_exit(self):
        """ansible-playbook ends without a play recap (fatal error, interrupt): say so."""
        if self._run is None:
            return
        try:
            self._finish(failed=True, reason=STOPPED_TEXT)
        except (OSError, ValueError):
            pass


def _short(path: str) -> str:
    """A path under the current directory, relative to it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
