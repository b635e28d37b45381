"""The collection as a team uses it: built, installed, run from the app's repository.

Given the tarball that ``ansible-galaxy collection build`` makes of this
repository, installed into a fresh directory outside the checkout, and an
app repository (the sample app's code, with its inventory in
``deploy/inventory/`` and an ``ansible.cfg`` that names only the installed
collection), When ``ansible-playbook fieldservice.deploy.deploy`` runs from that
repository, Then the sample app is deployed for real by the installed copy:
its containers serve the release, the health check passes, and the deploy log
is in the app repository's ``deployment_logs/``.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess

import pytest
from harness import PYTHON, ROOT, Deployment, docker, make_source

pytestmark = pytest.mark.integration

BIN = os.path.dirname(PYTHON)

APP_CFG = """\
[defaults]
# The installed collection only (what `ansible-galaxy collection install -p` made).
collections_path = {collections}
callbacks_enabled = fieldservice.deploy.deploy_log
stdout_callback = fieldservice.deploy.console
gathering = explicit
interpreter_python = auto_silent
retry_files_enabled = false

[callback_deploy_log]
log_dir = deployment_logs
"""

HOSTS = """\
---
all:
  children:
    app_servers:
      hosts:
        localhost:
          ansible_connection: local
          ansible_python_interpreter: {python}
"""

GROUP_VARS = """\
---
app_db_password: installed-collection-demo
app_service_secret_env:
  admin_bot: {BOT_TOKEN: "100001:demo-admin-token"}
  master_bot: {BOT_TOKEN: "100002:demo-master-token"}
# The app's own code is the repository this inventory lives in.
code_sync_source_dir: "{{ inventory_dir }}/../../.."
demo_telegram_enabled: true
"""


def run(cmd: list[str], cwd: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The built tarball, installed into a directory of its own."""
    work = tmp_path_factory.mktemp("collection")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    galaxy = os.path.join(BIN, "ansible-galaxy")
    built = run([galaxy, "collection", "build", ROOT, "--output-path", str(work)], cwd=str(work), env=env,
                timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (tarball,) = glob.glob(str(work / "fieldservice-deploy-*.tar.gz"))
    target = work / "collections"
    # The dependency (community.docker) is the one the `ansible` package
    # carries: nothing is fetched from Galaxy.
    done = run([galaxy, "collection", "install", tarball, "-p", str(target)],
               cwd=str(work), env={**env, "ANSIBLE_COLLECTIONS_PATH": str(target)}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    path = target / "ansible_collections" / "fieldservice" / "deploy"
    with open(path / "MANIFEST.json", encoding="utf-8") as fh:
        assert json.load(fh)["collection_info"]["name"] == "deploy"
    # what a checkout has and the artifact leaves out (galaxy.yml's build_ignore)
    for left_out in ("tests", "examples", "molecule", "bench", "scripts", "ansible.cfg",
                     "playbooks/collections"):
        assert not (path / left_out).exists(), left_out
    # the bot kit ships (without its tests), so an app can build its wheel from here
    assert (path / "botkit" / "pyproject.toml").is_file() and (path / "botkit" / "src").is_dir()
    assert not (path / "botkit" / "tests").exists()
    return {"root": str(target), "path": str(path), "tarball": tarball}


@pytest.fixture
def app_repo(tmp_path_factory):
    d = Deployment.isolated("fs_ic", lambda n: str(tmp_path_factory.mktemp(n)))
    repo = d.extravars["code_sync_source_dir"]
    make_source(repo, 1)
    yield d, repo
    d.destroy()


def test_the_installed_collection_deploys_from_the_app_repository(installed, app_repo):
    d, repo = app_repo
    inventory = os.path.join(repo, "deploy", "inventory", "production")
    os.makedirs(os.path.join(inventory, "group_vars"))
    with open(os.path.join(inventory, "hosts.yml"), "w", encoding="utf-8") as fh:
        fh.write(HOSTS.format(python=PYTHON))
    with open(os.path.join(inventory, "group_vars", "all.yml"), "w", encoding="utf-8") as fh:
        fh.write(GROUP_VARS)
    with open(os.path.join(repo, "ansible.cfg"), "w", encoding="utf-8") as fh:
        fh.write(APP_CFG.format(collections=installed["root"]))
    # this run's names, folders and ports (the inventory's code_sync_source_dir is the repository)
    extra = {k: v for k, v in d.vars().items() if k != "code_sync_source_dir"}
    with open(os.path.join(d.workdir, "vars.json"), "w", encoding="utf-8") as fh:
        json.dump(extra, fh)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "DEPLOY_LOG_"))}
    env.update(ANSIBLE_CONFIG=os.path.join(repo, "ansible.cfg"), PATH=BIN + os.pathsep + env.get("PATH", ""))

    r = run([os.path.join(BIN, "ansible-playbook"), "-vv", "fieldservice.deploy.deploy", "-i", inventory,
             "-e", f"@{d.workdir}/vars.json"], cwd=repo, env=env, timeout=1200)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]

    # the installed copy ran, not the checkout
    assert installed["path"] in r.stdout
    assert os.path.join(ROOT, "playbooks") not in r.stdout
    # the sample app serves from the new release
    release = d.current_release()
    assert release and re.fullmatch(r"[0-9a-f]{12}", release)
    names = sorted(c["Names"] for c in d.containers())
    assert names == [f"{d.name}_admin_bot_{release}", f"{d.name}_master_bot_{release}"]
    assert docker("inspect", "--format", "{{.State.Health.Status}}", f"{d.name}_admin_bot_{release}") in (
        "healthy", "starting")
    # the deploy log belongs to the app repository
    logs = glob.glob(os.path.join(repo, "deployment_logs", "deploy_*.log"))
    assert len(logs) == 1, logs
    with open(logs[0], encoding="utf-8") as fh:
        text = fh.read()
    assert "START DEPLOYMENT" in text and "Health check: PASSED" in text and "DEPLOYMENT SUCCESS" in text
