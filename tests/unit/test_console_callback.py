"""The console stdout callback, through real ansible-playbook runs on localhost,
and its line and duration logic (plugin_utils/deploy_lines) in process."""

import os
import re
import stat
import subprocess
import sys
import textwrap

import pytest
from test_deploy_log_callback import ANSIBLE_PLAYBOOK, COLLECTIONS, SECRET

STAMP = r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\] "
BOTH = "fieldservice.deploy.deploy_log"

WARN_MODULE = '''
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={})
module.warn("the disk is 91 % full")
module.exit_json(changed=False)
'''


def run(project, name, body, args=(), env=None, callbacks=BOTH):
    """<project>/playbooks/<name>, run with the console as stdout callback."""
    os.makedirs(os.path.join(project, "playbooks", "library"), exist_ok=True)
    with open(os.path.join(project, "playbooks", name), "w") as fh:
        fh.write(textwrap.dedent(body))
    with open(os.path.join(project, "playbooks", "library", "warn_me.py"), "w") as fh:
        fh.write(WARN_MODULE)
    inventory = os.path.join(project, "hosts.ini")
    with open(inventory, "w") as fh:
        fh.write(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    cfg = os.path.join(project, "test-ansible.cfg")
    with open(cfg, "w") as fh:
        fh.write("[defaults]\nretry_files_enabled = false\n")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "DEPLOY_"))}
    run_env.update(
        ANSIBLE_CONFIG=cfg,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_STDOUT_CALLBACK="fieldservice.deploy.console",
        ANSIBLE_LOCAL_TEMP=os.path.join(project, ".ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        DEPLOY_CONSOLE_PROGRESS_INTERVAL="1",
    )
    if callbacks:
        run_env["ANSIBLE_CALLBACKS_ENABLED"] = callbacks
    run_env.update(env or {})
    playbook = os.path.join(project, "playbooks", name)
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", inventory, *args, playbook], cwd=project, env=run_env,
                          capture_output=True, text=True, timeout=120)


def files(project, suffix):
    log_dir = os.path.join(project, "deployment_logs")
    if not os.path.isdir(log_dir):
        return []
    names = sorted(n for n in os.listdir(log_dir) if n.endswith(suffix))
    if suffix == ".log":
        names = [n for n in names if not n.endswith(".ansible.log")]
    return [os.path.join(log_dir, n) for n in names]


def messages(stdout):
    """The stamped lines of the console, without their stamps."""
    return [re.sub("^" + STAMP, "", line) for line in stdout.splitlines() if re.match(STAMP, line)]


DEPLOY = f"""
- name: Deploy
  hosts: all
  gather_facts: false
  vars:
    db_password: "{SECRET}"
  tasks:
    - name: "Deploy log: creating backup"
      ansible.builtin.debug:
        msg: Creating backup...
    - name: Dump the database
      ansible.builtin.command: sleep 2.6
      changed_when: false
    - name: "Deploy log: backup created"
      ansible.builtin.debug:
        msg: "Backup created: backup_20251010_153015.sql.gz"
    - name: A debug that is not a log line
      ansible.builtin.debug:
        msg: visible-in-the-full-output
    - name: A secret under no_log
      ansible.builtin.debug:
        msg: "password is {{{{ db_password }}}}"
      no_log: true
    - name: A module that warns
      warn_me:
    - name: "Deploy log: migrations"
      ansible.builtin.debug:
        msg: Running migrations...
    - name: "Deploy log: health check"
      ansible.builtin.debug:
        msg: "Health check: PASSED"
"""


def test_a_deploy_prints_its_lines_with_durations_and_writes_the_full_output(tmp_path):
    project = str(tmp_path)
    res = run(project, "deploy.yml", DEPLOY)
    assert res.returncode == 0, res.stdout + res.stderr
    got = messages(res.stdout)
    assert got[0] == "START DEPLOYMENT"
    assert got[1] == "Creating backup..."
    # the 2.6 s dump: "still running" lines every second of the step, then the step's end; how
    # many depends on the machine's load (the step takes longer than its sleep), so the test
    # holds them to the step's own duration instead of a count
    running = [m for m in got if m.startswith("Creating backup... still running, ")]
    done = [m for m in got if m.startswith("Creating backup... done ")]
    assert len(done) == 1, got
    seconds = float(re.fullmatch(r"Creating backup\.\.\. done (\d+\.\d) s", done[0]).group(1))
    assert 2.6 <= seconds < 30
    ticks = [float(re.fullmatch(r"Creating backup\.\.\. still running, (\d+\.\d) s: .*", m).group(1))
             for m in running]
    assert 1 <= len(ticks) <= int(seconds), got
    # never more often than the interval (1 s; the stamps are rounded to a tenth)
    assert all(later - earlier >= 0.9 for earlier, later in zip(ticks, ticks[1:], strict=False)), ticks
    assert ticks[-1] <= seconds, (ticks, seconds)
    # each names the task running then: the dump (at least one does), and on a loaded machine
    # the slow start or end of the step's other tasks
    assert any(m.endswith(": Dump the database") for m in running), running
    step = (": Deploy log: creating backup", ": Dump the database", ": Deploy log: backup created")
    assert all(m.endswith(step) for m in running), running
    rest = [m for m in got if "still running" not in m]
    assert rest[2:] == [
        "Creating backup... done " + done[0].rsplit(" done ", 1)[1],
        "Backup created: backup_20251010_153015.sql.gz",
        "Running migrations...",
        "Running migrations... done " + rest[5].rsplit(" done ", 1)[1],
        "Health check: PASSED",
        rest[-1],
    ], got
    assert re.fullmatch(r"DEPLOYMENT SUCCESS in \d+\.\d s", rest[-1])
    # the rest of Ansible's output is not on the terminal
    assert "TASK [" not in res.stdout and "PLAY RECAP" not in res.stdout
    assert "visible-in-the-full-output" not in res.stdout
    # the warning is (stderr), once
    assert res.stderr.count("the disk is 91 % full") == 1, res.stderr

    (log,) = files(project, ".log")
    (full,) = files(project, ".ansible.log")
    assert full == log[: -len(".log")] + ".ansible.log"  # beside it, same prefix and time
    assert stat.S_IMODE(os.stat(full).st_mode) == 0o640
    rel_log, rel_full = os.path.relpath(log, project), os.path.relpath(full, project)
    assert f"Deploy log: {rel_log}; Ansible's output: {rel_full}" in res.stdout
    with open(full, encoding="utf-8") as fh:
        text = fh.read()
    # what the default callback prints, warnings included
    for expected in ("PLAY [Deploy]", "TASK [Dump the database]", "visible-in-the-full-output",
                     "PLAY RECAP", "the disk is 91 % full", "localhost                  : ok=8"):
        assert expected in text, expected
    assert "still running" not in text and "START DEPLOYMENT" not in text
    # no_log stays hidden everywhere
    for where in (res.stdout, res.stderr, text, open(log, encoding="utf-8").read()):
        assert SECRET not in where
    assert "TASK [A secret under no_log]" in text  # the task itself is there, its result hidden


WRITER = """
import json, os, sys, time
path = sys.argv[1]
for step in range(1, 8):
    time.sleep(0.5)
    with open(path + ".tmp", "w") as fh:
        json.dump({"verb": "written", "bytes": step * 1500000}, fh)
    os.replace(path + ".tmp", path)
print(json.dumps({"name": "backup_x.sql.gz"}))
"""

WATCHED = """
- name: Deploy
  hosts: all
  gather_facts: false
  tasks:
    - name: "Deploy log: creating backup"
      ansible.builtin.debug:
        msg: Creating backup...
    - name: Start the dump
      ansible.builtin.command:
        argv: ["{python}", "{writer}", "{progress}"]
      async: 60
      poll: 0
      register: job
    - name: Wait for the dump
      fieldservice.deploy.job_progress:
        jid: "{{{{ job.ansible_job_id }}}}"
        progress_file: "{progress}"
      register: dump
      until: dump.finished
      retries: 60
      delay: 0
    - name: "Deploy log: backup created"
      ansible.builtin.debug:
        msg: >-
          Backup created: {{{{ (dump.stdout | from_json).name }}}}
          (rc {{{{ dump.rc }}}}, {{{{ dump.progress }}}})
"""


def test_a_long_job_shows_its_progress_and_its_result_comes_through(tmp_path):
    # Given a 3.5 s async job that keeps a progress file as the backup program does
    project = str(tmp_path)
    writer, progress, async_dir = tmp_path / "writer.py", tmp_path / "progress", tmp_path / "async"
    writer.write_text(WRITER)
    body = WATCHED.format(python=sys.executable, writer=writer, progress=progress)
    res = run(project, "deploy.yml", body, env={"ANSIBLE_ASYNC_DIR": str(async_dir)})
    assert res.returncode == 0, res.stdout + res.stderr
    got = messages(res.stdout)
    # Then the console says how far it has come, not only that it still runs
    # (the task's name until the wait's first answer, 2 s or more in)
    running = [m for m in got if m.startswith("Creating backup... still running, ")]
    shape = r"Creating backup\.\.\. still running, \d+\.\d s: (\d+\.\d) MB written"
    first = next((i for i, m in enumerate(running) if re.fullmatch(shape, m)), None)
    assert first is not None, got
    assert all(m.endswith((": Start the dump", ": Wait for the dump")) for m in running[:first]), got
    # (a tick that comes as the wait ends may name the task after it, on a busy machine)
    during = [m for m in running[first:] if not m.endswith(": Deploy log: backup created")]
    assert running[first:first + len(during)] == during and len(running) - first - len(during) <= 1, running
    assert all(re.fullmatch(shape, m) for m in during), running
    sizes = [float(re.fullmatch(shape, m).group(1)) for m in during]
    assert sizes == sorted(sizes) and sizes[-1] <= 10.5, running
    # and the job's own result is the wait's: its stdout, its rc, the last progress
    assert "Backup created: backup_x.sql.gz (rc 0, 10.5 MB written)" in got, got
    assert re.fullmatch(r"Creating backup\.\.\. done \d\.\d s", [m for m in got if " done " in m][0])
    # and the job's files are gone
    assert os.listdir(async_dir) == [] and not progress.exists()
    # the full output has the retries, which the terminal does not
    (full,) = files(project, ".ansible.log")
    assert "FAILED - RETRYING" in open(full, encoding="utf-8").read()
    assert "RETRYING" not in res.stdout


def test_with_v_it_is_the_default_callback(tmp_path):
    project = str(tmp_path)
    res = run(project, "deploy.yml", DEPLOY, args=["-v"])
    assert res.returncode == 0, res.stderr
    assert "TASK [Dump the database]" in res.stdout and "PLAY RECAP" in res.stdout
    assert "visible-in-the-full-output" in res.stdout
    assert not re.search(STAMP + "START DEPLOYMENT", res.stdout)
    assert files(project, ".ansible.log") == [] and len(files(project, ".log")) == 1


def test_other_playbooks_and_full_output_are_the_default_callback(tmp_path):
    project = str(tmp_path)
    res = run(project, "health.yml", DEPLOY)
    assert res.returncode == 0, res.stderr
    assert "PLAY RECAP" in res.stdout and "still running" not in res.stdout
    assert not os.path.exists(os.path.join(project, "deployment_logs"))
    res = run(project, "deploy.yml", DEPLOY, env={"DEPLOY_CONSOLE_FULL_OUTPUT": "true"})
    assert res.returncode == 0, res.stderr
    assert "PLAY RECAP" in res.stdout and "visible-in-the-full-output" in res.stdout
    assert files(project, ".ansible.log") == []


FAILS = f"""
- name: Rollback
  hosts: all
  gather_facts: false
  tasks:
    - name: "Deploy log: rolling back"
      ansible.builtin.debug:
        msg: Rolling back to 3f2a9c1d0b7e...
    - name: Put the containers back
      ansible.builtin.command: "sh -c 'echo {SECRET} >&2; exit 3'"
      no_log: true
    - name: "Deploy log: never"
      ansible.builtin.debug:
        msg: never
"""


def test_a_failed_step_says_so_and_hides_what_no_log_hides(tmp_path):
    project = str(tmp_path)
    res = run(project, "rollback.yml", FAILS, env={"DEPLOY_CONSOLE_PROGRESS_INTERVAL": "0"})
    assert res.returncode == 2
    got = messages(res.stdout)
    assert got[:3] == ["START ROLLBACK", "Rolling back to 3f2a9c1d0b7e...",
                       got[2]], got
    assert re.fullmatch(r"Rolling back to 3f2a9c1d0b7e\.\.\. failed after \d+\.\d s", got[2])
    assert got[3] == "ERROR: Put the containers back on localhost: (output hidden by no_log)"
    assert re.fullmatch(r"ROLLBACK FAILED in \d+\.\d s", got[4]) and len(got) == 5, got
    (full,) = files(project, ".ansible.log")
    assert os.path.basename(full).startswith("rollback_")
    text = open(full, encoding="utf-8").read()
    assert "fatal: [localhost]: FAILED!" in text
    assert SECRET not in res.stdout + res.stderr + text


def test_without_the_deploy_log_the_full_output_gets_a_name_of_its_own(tmp_path):
    project = str(tmp_path)
    res = run(project, "restore.yml", FAILS.replace("Rollback", "Restore"), callbacks=None)
    assert res.returncode == 2
    assert files(project, ".log") == []
    (full,) = files(project, ".ansible.log")
    assert re.fullmatch(r"restore_\d{8}_\d{6}\.ansible\.log", os.path.basename(full))
    assert "Ansible's output: deployment_logs/restore_" in res.stdout
    assert "Deploy log:" not in res.stdout


def test_a_run_without_a_recap_still_ends(tmp_path):
    project = str(tmp_path)
    body = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: "Deploy log: creating backup"
          ansible.builtin.debug:
            msg: Creating backup...
    - hosts: "{{ undefined_group_variable }}"
      gather_facts: false
      tasks:
        - ansible.builtin.ping:
    """
    res = run(project, "deploy.yml", body)
    assert res.returncode != 0
    got = messages(res.stdout)
    assert got[:2] == ["START DEPLOYMENT", "Creating backup..."], got
    assert got[-2] == "ERROR: ansible-playbook stopped before the play recap (fatal error or interrupted)"
    assert re.fullmatch(r"DEPLOYMENT FAILED in \d+\.\d s", got[-1])
    assert "undefined_group_variable" in res.stderr  # ansible-playbook's own error, as ever


# -- the logic, in process -----------------------------------------------------------------


@pytest.fixture()
def lines():
    from ansible_collections.fieldservice.deploy.plugins.plugin_utils import deploy_lines

    return deploy_lines


def test_seconds_text(lines):
    assert lines.seconds_text(0.04) == "0.0 s"
    assert lines.seconds_text(1.25) == "1.2 s" or lines.seconds_text(1.25) == "1.3 s"
    assert lines.seconds_text(59.94) == "59.9 s"
    assert lines.seconds_text(125) == "2 min 05 s"
    assert lines.seconds_text(3720) == "1 h 02 min"


def test_steps_open_on_three_dots_and_end_on_the_next_line(lines):
    steps = lines.Steps()
    assert steps.line("Creating backup...", 10.0) == (None, True)
    assert steps.elapsed(12.5) == 2.5
    assert steps.line("Backup created: b.sql.gz", 11.2) == (("Creating backup...", "done 1.2 s"), False)
    assert steps.open is None and steps.elapsed(20) is None
    assert steps.line("Health check: PASSED", 12.0) == (None, False)
    steps.line("Running migrations...", 20.0)
    assert steps.line("Graceful restart...", 23.0) == (("Running migrations...", "done 3.0 s"), True)
    assert steps.line("ERROR: x on h: boom", 24.5, error=True) == (
        ("Graceful restart...", "failed after 1.5 s"), False)
    assert steps.line("ERROR: ends in dots...", 25, error=True) == (None, False)  # an error opens nothing
    assert steps.end(30) is None


class _Host:
    def __init__(self, name):
        self.name = name

    def get_name(self):
        return self.name


class _Task:
    def __init__(self, uuid, name="Deploy log: x", action="ansible.builtin.debug", no_log=False):
        self._uuid, self.name, self.action, self.no_log = uuid, name, action, no_log


class _Result:
    def __init__(self, task, host, data):
        self.task, self.host, self.result, self.task_name = task, _Host(host), data, task.name


def test_pending_lines_once_per_task_with_the_first_hosts_time(lines):
    clock = iter([1.0, 2.0, 3.0]).__next__
    pending = lines.PendingLines(clock=clock)
    same = _Task("a")
    pending.add(_Result(same, "web1", {"msg": "Graceful restart..."}))
    pending.add(_Result(same, "web2", {"msg": "Graceful restart..."}))
    differ = _Task("b")
    pending.add(_Result(differ, "web1", {"msg": "Restarted web1"}))
    pending.add(_Result(differ, "web2", {"msg": "Restarted web2"}))
    pending.add(_Result(_Task("c", no_log=True), "web1", {"msg": SECRET}))
    pending.add(_Result(_Task("d"), "web1", {"censored": "hidden", "msg": SECRET}))
    out = pending.flush()
    assert [(at, line) for _stamp, at, line in out] == [
        (1.0, "Graceful restart..."), (2.0, "web1: Restarted web1"), (2.0, "web2: Restarted web2")]
    assert pending.flush() == []
    assert lines.is_log_task(_Result(_Task("e"), "h", {}))
    assert not lines.is_log_task(_Result(_Task("f", name="Dump"), "h", {}))
    assert not lines.is_log_task(_Result(_Task("g", action="ansible.builtin.command"), "h", {}))


def test_the_full_output_file_is_beside_the_log_and_never_overwritten(lines, tmp_path):
    log_path, fh = lines.open_log(str(tmp_path / "logs"), "deploy")
    fh.close()
    path, fh = lines.open_beside(log_path)
    fh.close()
    assert path == log_path[: -len(".log")] + ".ansible.log"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    with pytest.raises(FileExistsError):
        lines.open_beside(log_path)


def test_the_file_display_formats_as_the_terminal_would(tmp_path):
    from ansible.utils.display import Display

    from ansible_collections.fieldservice.deploy.plugins.callback.console import FileDisplay

    written, shown = [], []
    fd = FileDisplay(Display(), written.append, lambda show, warning: shown.append(warning))
    fd.banner("TASK [x]")
    fd.display("ok: [h]", color="green")
    fd.warning("careful")
    text = "".join(written)
    assert re.search(r"^\nTASK \[x\] \*{3,}\n", text)
    assert "ok: [h]\n" in text and "[WARNING]: careful" in text
    assert len(shown) == 1  # the warning goes to the terminal too
