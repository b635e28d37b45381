"""The deploy_log callback, through real ansible-playbook runs on localhost."""

import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, "playbooks", "collections")
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
if not os.path.exists(ANSIBLE_PLAYBOOK):
    ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook") or ANSIBLE_PLAYBOOK

LINE_RE = re.compile(r"^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\] (.*)$")
SECRET = "S3cr3t-hunter2-xyzzy"


def run_playbook(project, name, body, hosts="localhost", env=None):
    """Write <project>/playbooks/<name> and run it with only deploy_log enabled."""
    os.makedirs(os.path.join(project, "playbooks"), exist_ok=True)
    path = os.path.join(project, "playbooks", name)
    with open(path, "w") as fh:
        fh.write(textwrap.dedent(body))
    inventory = os.path.join(project, "hosts.ini")
    with open(inventory, "w") as fh:
        for host in hosts.split():
            if host.startswith("unreachable"):
                # nothing listens on port 1: connection refused at once
                fh.write(f"{host} ansible_connection=ssh ansible_host=127.0.0.1 ansible_port=1\n")
            else:
                fh.write(f"{host} ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    cfg = os.path.join(project, "test-ansible.cfg")
    if not os.path.exists(cfg):
        with open(cfg, "w") as fh:
            fh.write("[defaults]\nretry_files_enabled = false\n")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "DEPLOY_LOG_"))}
    run_env.update(
        ANSIBLE_CONFIG=cfg,
        ANSIBLE_COLLECTIONS_PATH=COLLECTIONS,
        ANSIBLE_CALLBACKS_ENABLED="fieldservice.deploy.deploy_log",
        ANSIBLE_LOCAL_TEMP=os.path.join(project, ".ansible-tmp"),
        ANSIBLE_HOST_KEY_CHECKING="false",
        ANSIBLE_SSH_ARGS="-o ConnectTimeout=3 -o BatchMode=yes",
        ANSIBLE_TIMEOUT="5",
        ANSIBLE_NOCOLOR="1",
    )
    run_env.update(env or {})
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", inventory, path],
        cwd=project,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def logs(log_dir, prefix="deploy"):
    if not os.path.isdir(log_dir):
        return []
    return sorted(os.path.join(log_dir, n) for n in os.listdir(log_dir) if n.startswith(prefix + "_"))


def read_lines(path):
    """The messages of a log file, checking the timestamp of every line."""
    messages, stamps = [], []
    with open(path, encoding="utf-8") as fh:
        raw = fh.read()
    assert raw.endswith("\n")
    for line in raw.splitlines():
        m = LINE_RE.match(line)
        assert m, f"bad line format: {line!r}"
        stamps.append(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
        messages.append(m.group(2))
    assert stamps == sorted(stamps), "timestamps go back"
    return messages


def only_log(project, prefix="deploy"):
    found = logs(os.path.join(project, "deployment_logs"), prefix)
    assert len(found) == 1, found
    return found[0]


DEPLOY_OK = """
- name: Deploy
  hosts: all
  gather_facts: false
  tasks:
    - name: "Deploy log: creating backup"
      ansible.builtin.debug:
        msg: Creating backup...
    - name: Dump the database (not logged, not a debug)
      ansible.builtin.command: "true"
      changed_when: false
    - name: "Deploy log: backup created"
      ansible.builtin.debug:
        msg: "Backup created: backup_{{ '20251010_153015' }}.sql.gz"
    - name: A debug without the prefix is not logged
      ansible.builtin.debug:
        msg: not in the log
    - name: "Deploy log: skipped step"
      ansible.builtin.debug:
        msg: never written
      when: false
    - name: "Deploy log: several lines"
      ansible.builtin.debug:
        msg:
          - Uploading code...
          - Building Docker images...
    - name: "Deploy log: multi-line string"
      ansible.builtin.debug:
        msg: "Running migrations...\\nGraceful restart..."
    - name: "Deploy log: health check"
      debug:
        msg: "Health check: PASSED"
"""


def test_successful_deploy_writes_the_old_format(tmp_path):
    project = str(tmp_path)
    res = run_playbook(project, "deploy.yml", DEPLOY_OK)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "deploy_log" not in res.stderr, res.stderr  # no callback warning
    log_dir = os.path.join(project, "deployment_logs")
    path = only_log(project)
    assert re.fullmatch(r"deploy_\d{8}_\d{6}\.log", os.path.basename(path))
    assert read_lines(path) == [
        "START DEPLOYMENT",
        "Creating backup...",
        "Backup created: backup_20251010_153015.sql.gz",
        "Uploading code...",
        "Building Docker images...",
        "Running migrations...",
        "Graceful restart...",
        "Health check: PASSED",
        "DEPLOYMENT SUCCESS",
    ]
    assert stat.S_IMODE(os.stat(log_dir).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    # nothing is written next to the playbook
    assert not os.path.exists(os.path.join(project, "playbooks", "deployment_logs"))


DEPLOY_FAILS = """
- name: Deploy
  hosts: all
  gather_facts: false
  tasks:
    - name: "Deploy log: running migrations"
      ansible.builtin.debug:
        msg: Running migrations...
    - name: Ignored failure writes nothing
      ansible.builtin.fail:
        msg: ignored-failure-text
      ignore_errors: true
    - name: Apply the migrations
      ansible.builtin.fail:
        msg: "alembic upgrade head failed\\nTraceback: {{ 'x' * 2000 }}"
    - name: "Deploy log: never reached"
      ansible.builtin.debug:
        msg: not reached
"""


def test_failed_deploy_logs_the_error_and_failed(tmp_path):
    project = str(tmp_path)
    res = run_playbook(project, "deploy.yml", DEPLOY_FAILS)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = read_lines(only_log(project))
    assert lines[:2] == ["START DEPLOYMENT", "Running migrations..."]
    assert lines[-1] == "DEPLOYMENT FAILED"
    assert len(lines) == 4, lines
    error = lines[2]
    assert error.startswith(
        "ERROR: Apply the migrations on localhost: alembic upgrade head failed Traceback: xxx"
    )
    assert len(error) <= len("ERROR: Apply the migrations on localhost: ") + 500
    assert error.endswith("...")
    assert "ignored-failure-text" not in "\n".join(lines)


DEPLOY_SECRETS = f"""
- name: Deploy
  hosts: all
  gather_facts: false
  vars:
    db_password: "{SECRET}"
  tasks:
    - name: "Deploy log: secret debug under no_log"
      ansible.builtin.debug:
        msg: "password is {{{{ db_password }}}}"
      no_log: true
    - name: Rescued step
      block:
        - name: Log in to the registry
          ansible.builtin.command: "sh -c 'echo {{{{ db_password }}}} >&2; exit 3'"
          no_log: true
      rescue:
        - name: "Deploy log: recovered"
          ansible.builtin.debug:
            msg: Recovered from the registry login
    - name: A failing loop whose items hide their output
      ansible.builtin.command: "sh -c 'echo {{{{ item }}}}; exit 4'"
      loop: ["{{{{ db_password }}}}"]
      loop_control:
        label: hidden
      no_log: true
      ignore_errors: true
    - name: "Deploy log: done"
      ansible.builtin.debug:
        msg: Done
"""


def test_no_log_output_never_reaches_the_log(tmp_path):
    project = str(tmp_path)
    res = run_playbook(project, "deploy.yml", DEPLOY_SECRETS)
    assert res.returncode == 0, res.stdout + res.stderr
    path = only_log(project)
    with open(path, encoding="utf-8") as fh:
        content = fh.read()
    assert SECRET not in content
    # A rescued failure still gets its ERROR line, but the run is a success.
    assert read_lines(path) == [
        "START DEPLOYMENT",
        "ERROR: Log in to the registry on localhost: (output hidden by no_log)",
        "Recovered from the registry login",
        "Done",
        "DEPLOYMENT SUCCESS",
    ]


def test_run_ending_without_a_recap_still_ends_the_log(tmp_path):
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
    res = run_playbook(project, "deploy.yml", body)
    assert res.returncode != 0
    assert read_lines(only_log(project)) == [
        "START DEPLOYMENT",
        "Creating backup...",
        "ERROR: ansible-playbook stopped before the play recap (fatal error or interrupted)",
        "DEPLOYMENT FAILED",
    ]


def test_rollback_playbook_has_its_own_kind_and_prefix(tmp_path):
    project = str(tmp_path)
    body = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: "Deploy log: switching back"
          ansible.builtin.debug:
            msg: Switching back to 3f2a9c1d0b7e
    """
    res = run_playbook(project, "rollback.yml", body)
    assert res.returncode == 0, res.stdout + res.stderr
    assert logs(os.path.join(project, "deployment_logs"), "deploy") == []
    path = only_log(project, "rollback")
    assert re.fullmatch(r"rollback_\d{8}_\d{6}\.log", os.path.basename(path))
    assert read_lines(path) == ["START ROLLBACK", "Switching back to 3f2a9c1d0b7e", "ROLLBACK SUCCESS"]


def test_other_playbooks_write_nothing(tmp_path):
    project = str(tmp_path)
    body = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: "Deploy log: would be a line"
          ansible.builtin.debug:
            msg: hello
        - name: Fail
          ansible.builtin.fail:
            msg: boom
    """
    res = run_playbook(project, "other.yml", body)
    assert res.returncode == 2
    assert not os.path.exists(os.path.join(project, "deployment_logs"))
    assert "deploy_log" not in res.stderr, res.stderr


def test_several_hosts_dedupe_and_prefix(tmp_path):
    project = str(tmp_path)
    body = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: "Deploy log: same everywhere"
          ansible.builtin.debug:
            msg: Graceful restart...
        - name: "Deploy log: per host"
          ansible.builtin.debug:
            msg: "Restarted {{ inventory_hostname }}"
        - name: "Deploy log: only one host"
          ansible.builtin.debug:
            msg: "Only on {{ inventory_hostname }}"
          when: inventory_hostname == 'web2'
    """
    res = run_playbook(project, "deploy.yml", body, hosts="web1 web2")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = read_lines(only_log(project))
    assert lines[0] == "START DEPLOYMENT"
    assert lines[1] == "Graceful restart..."
    assert sorted(lines[2:4]) == ["web1: Restarted web1", "web2: Restarted web2"]
    assert lines[4:] == ["Only on web2", "DEPLOYMENT SUCCESS"]


def test_unreachable_host_is_an_error_and_fails(tmp_path):
    if not shutil.which("ssh"):
        pytest.skip("no ssh client")
    project = str(tmp_path)
    body = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: Ping
          ansible.builtin.ping:
    """
    res = run_playbook(project, "deploy.yml", body, hosts="localhost unreachable1")
    assert res.returncode == 4, res.stdout + res.stderr
    lines = read_lines(only_log(project))
    assert lines[0] == "START DEPLOYMENT"
    assert lines[-1] == "DEPLOYMENT FAILED"
    assert len(lines) == 3, lines
    assert lines[1].startswith("ERROR: unreachable1 unreachable: ")
    assert len(lines[1]) > len("ERROR: unreachable1 unreachable: ")


def test_log_dir_and_playbooks_from_the_environment(tmp_path):
    project = str(tmp_path / "project")
    elsewhere = str(tmp_path / "logs" / "nested")
    body = """
    - hosts: all
      gather_facts: false
      tasks:
        - name: "Deploy log: step"
          ansible.builtin.debug:
            msg: Restoring backup_20251010_153015.sql.gz
    """
    env = {
        "DEPLOY_LOG_DIR": elsewhere,
        "DEPLOY_LOG_PLAYBOOKS": '{"other.yml": {"kind": "DB RESTORE", "prefix": "dbrestore"}}',
    }
    res = run_playbook(project, "other.yml", body, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not os.path.exists(os.path.join(project, "deployment_logs"))
    found = logs(elsewhere, "dbrestore")
    assert len(found) == 1
    assert read_lines(found[0]) == [
        "START DB RESTORE",
        "Restoring backup_20251010_153015.sql.gz",
        "DB RESTORE SUCCESS",
    ]
    # deploy.yml is no longer listed: nothing written for it.
    res = run_playbook(project, "deploy.yml", body, env=env)
    assert res.returncode == 0
    assert logs(elsewhere, "deploy") == []


def test_bad_playbooks_option_is_a_clear_warning_not_a_crash(tmp_path):
    project = str(tmp_path)
    body = """
    - hosts: all
      gather_facts: false
      tasks:
        - ansible.builtin.ping:
    """
    res = run_playbook(
        project, "deploy.yml", body, env={"DEPLOY_LOG_PLAYBOOKS": '{"deploy.yml": {"kind": "X"}}'}
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "needs a 'prefix'" in " ".join(res.stderr.split())
    assert not os.path.exists(os.path.join(project, "deployment_logs"))


# -- in-process checks of the helpers (ansible importable, no playbook run) ----------------


@pytest.fixture()
def plugin():
    """The line logic's one owner (plugin_utils/deploy_lines, shared with the console callback)."""
    from ansible_collections.fieldservice.deploy.plugins.plugin_utils import deploy_lines

    return deploy_lines


def test_same_second_gets_a_numbered_name(plugin, tmp_path, monkeypatch):
    fixed = time.localtime(1760103000)
    monkeypatch.setattr(plugin.time, "localtime", lambda *a: fixed)
    names = []
    for _ in range(3):
        path, fh = plugin.open_log(str(tmp_path / "logs"), "deploy")
        fh.close()
        names.append(os.path.basename(path))
    stamp = time.strftime("%Y%m%d_%H%M%S", fixed)
    assert names == [f"deploy_{stamp}.log", f"deploy_{stamp}_2.log", f"deploy_{stamp}_3.log"]


def test_helpers(plugin):
    assert plugin.one_line("a\n  b\tc") == "a b c"
    assert len(plugin.one_line("x" * 1000)) == 500
    assert plugin.msg_lines(["a", "b\nc", "", None]) == ["a", "b", "c"]
    assert plugin.msg_lines({"k": 1}) == ['{"k": 1}']
    parsed = plugin.parse_playbooks({"playbooks/deploy.yml": {"kind": "DEPLOYMENT", "prefix": "deploy"}})
    assert parsed == {"deploy.yml": {"kind": "DEPLOYMENT", "prefix": "deploy"}}
    from ansible.errors import AnsibleError

    with pytest.raises(AnsibleError, match="JSON object"):
        plugin.parse_playbooks("{not json")
    with pytest.raises(AnsibleError, match="prefix"):
        plugin.parse_playbooks({"deploy.yml": {"kind": "D", "prefix": "../evil"}})


def test_relative_log_dir_belongs_to_the_checkout_or_to_the_app_repository(plugin, tmp_path, monkeypatch):
    # a checkout: <project>/playbooks/deploy.yml -> <project>
    assert plugin.project_dir("/srv/tool/playbooks/deploy.yml") == "/srv/tool"
    # an installed collection, run from an app's repository: the logs go there
    monkeypatch.chdir(tmp_path)
    installed = "/home/u/.ansible/collections/ansible_collections/fieldservice/deploy/playbooks/deploy.yml"
    assert plugin.project_dir(installed) == str(tmp_path)


DEPLOY_WITH_ROLES = """
- name: Deploy
  hosts: all
  gather_facts: false
  tasks:
    - name: Back up
      ansible.builtin.include_role:
        name: steps
        tasks_from: backup
    - name: Fail in a role
      ansible.builtin.include_role:
        name: steps
        tasks_from: fail
"""


def test_lines_and_errors_of_tasks_in_roles_carry_the_task_name_alone(tmp_path):
    # ansible-core 2.21 names a role's task "<role> : <name>" in its results;
    # the log keys on the task's own name and writes it without the role
    project = str(tmp_path)
    tasks = tmp_path / "playbooks" / "roles" / "steps" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "backup.yml").write_text(
        '- name: "Deploy log: creating backup"\n  ansible.builtin.debug:\n    msg: Creating backup...\n')
    (tasks / "fail.yml").write_text(
        "- name: Apply the migrations\n  ansible.builtin.fail:\n    msg: alembic failed\n")
    res = run_playbook(project, "deploy.yml", DEPLOY_WITH_ROLES)
    assert res.returncode != 0
    assert read_lines(only_log(project)) == [
        "START DEPLOYMENT", "Creating backup...", "ERROR: Apply the migrations on localhost: alembic failed",
        "DEPLOYMENT FAILED"]
