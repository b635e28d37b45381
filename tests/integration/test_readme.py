"""The README's commands, run as a new user runs them on this machine.

README command 1 (`scripts/deploy-local`) deploys the sample app through the
default inventory into /opt/field-service, with the app's own tests first;
then the commands the README says to try afterwards. Everything it created is
removed at the end. It does not run where a demo deployment already lives
(it would be replaced), and says so.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess

import pytest
from harness import ROOT, Deployment, docker

pytestmark = pytest.mark.integration

APP = "field_service"  # the default inventory's app (inventory/local/group_vars/all.yml)
APP_ROOT, BACKUP_ROOT = "/opt/field-service", "/opt/backups"
ANSIBLE_PLAYBOOK = os.path.join(ROOT, ".venv", "bin", "ansible-playbook")


def run(*argv: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_FORCE_COLOR="0")
    return subprocess.run(list(argv), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def remove_demo(workdir: str) -> None:
    """Everything README command 1 created: Docker objects and cron entries
    (as any test deployment is removed), and its folders under /opt."""
    Deployment(name=APP, workdir=workdir, telegram_port=0).destroy()
    for path in (APP_ROOT, BACKUP_ROOT):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fresh_machine(tmp_path):
    if (os.path.exists(APP_ROOT) or os.path.exists(BACKUP_ROOT)
            or docker("ps", "-aq", "--filter", f"name=^{APP}_", check=False)):
        pytest.skip(f"a demo deployment already lives here ({APP_ROOT}, {BACKUP_ROOT} or {APP}_* "
                    "containers): README command 1 would replace it, and this test removes it after")
    logs_before = set(glob.glob(os.path.join(ROOT, "deployment_logs", "*.log")))
    try:
        yield logs_before
    finally:
        remove_demo(str(tmp_path / "work"))
        for path in set(glob.glob(os.path.join(ROOT, "deployment_logs", "*.log"))) - logs_before:
            os.unlink(path)


def test_readme_quick_start_deploys_and_a_second_run_changes_nothing(fresh_machine):
    # README command 1
    first = run("scripts/deploy-local")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "Tests passed:" in first.stdout  # the app's tests ran first (skip_tests=false)

    # "docker ps: field_service_admin_bot_<release>, ..._master_bot_<release>, _db, _proxy"
    release = os.path.basename(os.readlink(os.path.join(APP_ROOT, "current")))
    names = set(docker("ps", "--format", "{{.Names}}").split())
    assert {f"{APP}_admin_bot_{release}", f"{APP}_master_bot_{release}", f"{APP}_db",
            f"{APP}_proxy"} <= names

    # "cat deployment_logs/deploy_*.log: line for line as the old script wrote it"
    new_logs = sorted(p for p in set(glob.glob(os.path.join(ROOT, "deployment_logs", "deploy_*.log")))
                      - fresh_machine if not p.endswith(".ansible.log"))
    assert len(new_logs) == 1
    with open(new_logs[0], encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    messages = [re.sub(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ", "", line) for line in lines]
    assert messages[0] == "START DEPLOYMENT" and messages[-1] == "DEPLOYMENT SUCCESS"
    assert "Health check: PASSED" in messages

    # ".venv/bin/ansible-playbook playbooks/deploy.yml: again, No new release, nothing changes"
    again = run(ANSIBLE_PLAYBOOK, "playbooks/deploy.yml")
    assert again.returncode == 0, again.stdout[-4000:]
    assert f"No new release: {release} is already serving" in again.stdout
    # the console prints the log's lines; the play recap is in Ansible's full output beside the log
    full = re.search(r"Ansible's output: (\S+\.ansible\.log)", again.stdout)
    assert full, again.stdout[-1500:]
    with open(os.path.join(ROOT, full.group(1)), encoding="utf-8") as fh:
        recap = fh.read()
    assert re.search(r"localhost\s*: ok=\d+\s+changed=0 ", recap), recap[-1500:]

    # the runbook's read-only helpers
    for playbook, expect in (("health.yml", r'"status": "PASSED"'),
                             ("list_backups.yml", r"backup_\d{8}_\d{6}\.sql\.gz"),
                             ("db_size.yml", r"processed_updates")):
        r = run(ANSIBLE_PLAYBOOK, f"playbooks/{playbook}")
        assert r.returncode == 0 and re.search(expect, r.stdout), (playbook, r.stdout[-3000:])
