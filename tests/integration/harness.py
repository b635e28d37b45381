"""Helpers for the integration tests: sources of v1/v2, running the real
playbooks through ansible-runner against this machine, and cleaning up
every Docker object and directory a test deploy created."""

from __future__ import annotations

import glob
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import ansible_runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_SRC = os.path.join(ROOT, "examples", "field-service")
V2_OVERLAY = os.path.join(ROOT, "examples", "field-service-v2")
INVENTORY = os.path.join(ROOT, "inventory", "local", "hosts.yml")
# The control node's Python (its virtualenv has ansible-playbook): .venv, or
# another line's, e.g. FS_TEST_PYTHON=.venv-2.19/bin/python for ansible-core 2.19.
PYTHON = os.path.abspath(os.environ.get("FS_TEST_PYTHON") or os.path.join(ROOT, ".venv", "bin", "python"))


def docker_ok() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def docker(*args: str, check: bool = True) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


def make_source(dest: str, version: int = 1, overlays: tuple[str, ...] = ()) -> str:
    """Copy the sample app to dest (v1), apply the v2 overlay and extra ones."""
    if os.path.exists(dest):
        shutil.rmtree(dest)
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.pyc")
    shutil.copytree(APP_SRC, dest, ignore=ignore)
    layers = ([V2_OVERLAY] if version >= 2 else []) + list(overlays)
    for layer in layers:
        shutil.copytree(layer, dest, dirs_exist_ok=True, ignore=ignore)
    return dest


# A stock python-telegram-bot 22 app (no lock, no heartbeat, no readiness
# endpoint) and the settings that deploy it: its services and their tokens.
PTB_NOTES_SRC = os.path.join(ROOT, "examples", "ptb-notes")
PTB_POLL_TOKEN = "200001:ptb-polling-token"
PTB_HOOK_TOKEN = "200002:ptb-webhook-token"


def ptb_notes_services(app: str, **polling) -> list[dict]:
    """examples/ptb-notes' two bots as app_services (``polling``: more keys of the poller)."""
    return [
        {"name": "polling_bot", "command": ["python", "-m", "notes.polling_bot"], "mode": "polling",
         **polling},
        {"name": "webhook_bot", "command": ["python", "-m", "notes.webhook_bot"], "mode": "webhook",
         # the stand-in Bot API posts to it through the proxy, as Telegram would
         "env": {"WEBHOOK_URL": f"http://{app}_proxy:8080/webhook_bot/webhook"}},
    ]


def ptb_notes_vars(app: str) -> dict:
    return {"app_services": ptb_notes_services(app),
            "app_service_secret_env": {"polling_bot": {"BOT_TOKEN": PTB_POLL_TOKEN},
                                       "webhook_bot": {"BOT_TOKEN": PTB_HOOK_TOKEN}}}


def ptb_notes_feed_args() -> dict:
    """How traffic.PollingFeed reads what the notes poller did (its notes table, its replies)."""
    return {
        "processed_sql": lambda tag: "SELECT update_id, EXTRACT(EPOCH FROM created_at) FROM notes "
                                     f"WHERE bot = 'polling_bot' AND body LIKE '{tag} %' ORDER BY id",
        "reply_of": lambda text: text[len("noted: "):] if text.startswith("noted: ") else None,
    }


# The bot kit (botkit/) and the examples' adoption patches: an example app as
# it is after the README's adoption diff, and the deploy settings that go
# with it.
BOTKIT_DIR = os.path.join(ROOT, "botkit")
EXAMPLE_LIBRARIES = {"ptb-notes": "python-telegram-bot", "aiogram-notes": "aiogram"}


def build_botkit_wheel(work: str) -> str:
    """The kit's wheel in ``<work>/wheels``, built from a copy of botkit/ (a build writes into its tree)."""
    src = os.path.join(work, "botkit-src")
    shutil.copytree(BOTKIT_DIR, src,
                    ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    out = os.path.join(work, "wheels")
    proc = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"pip wheel {src} failed: {proc.stdout}{proc.stderr}")
    return out


def example_source(app: str, dest: str, wheels: str | None = None) -> str:
    """examples/<app> copied to dest; with ``wheels``, after its adoption patch, with the kit's wheel."""
    shutil.copytree(os.path.join(ROOT, "examples", app), dest,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".venv", ".pytest_cache"))
    if wheels is not None:
        patch = os.path.join(ROOT, "examples", "botkit-adoption", f"{app}.patch")
        proc = subprocess.run(["patch", "-p1", "--no-backup-if-mismatch", "-i", patch], cwd=dest,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{patch} does not apply: {proc.stdout}{proc.stderr}")
        shutil.copytree(wheels, os.path.join(dest, "wheels"))
    return dest


def kit_services(app: str) -> list[dict]:
    """The notes apps' services once they run under the kit: the poller is a
    single poller, both bots answer ``GET /ready``."""
    services = ptb_notes_services(app, single_poller=True, readiness_path="/ready")
    services[1]["readiness_path"] = "/ready"
    return services


def add_changelog_entry(src: str, version: str, date: str = "2026-03-01") -> None:
    """Put a new top entry into the source's CHANGELOG.md (a release needs one)."""
    path = os.path.join(src, "CHANGELOG.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    head, sep, rest = text.partition("\n## [")
    entry = f"\n## [{version}] - {date}\n\n### Changed\n- Something.\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + entry + sep + rest)


def wait_for(predicate, timeout=30.0, interval=0.5):
    """The predicate's first true value within timeout seconds (else its last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def _ephemeral_ports() -> range:
    """The ports the kernel hands to outgoing connections (and to bind(0))."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(x) for x in fh.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int = 3, low: int = 20000) -> int:
    """A port P with P .. P+count-1 free on loopback (the stand-in Bot API,
    the proxy's HTTP and HTTPS ports), below the kernel's ephemeral range: a
    port inside it can be taken at any moment by an outgoing connection (a
    test's client, PostgreSQL's) between this choice and the container that
    publishes it (CI saw ``bind: address already in use``)."""
    ephemeral = _ephemeral_ports()
    high = (ephemeral.start if ephemeral.start > low + 1000 else 65535) - count
    for _ in range(200):
        port = random.randint(low, high)  # noqa: S311 - not a secret
        ports = range(port, port + count)
        if any(p in ephemeral for p in ports):
            continue
        if all(_bindable(p) for p in ports):
            return port
    raise RuntimeError(f"no {count} free loopback ports next to each other in {low}..{high}")


@dataclass
class Deployment:
    """One isolated app on this machine: its own names, root and ports."""

    name: str
    workdir: str
    telegram_port: int
    extravars: dict = field(default_factory=dict)
    vault_file: str | None = None
    vault_password_file: str | None = None
    inventory: str = INVENTORY  # the local inventory of this checkout, or an app's own

    @classmethod
    def isolated(cls, prefix: str, workdir: Callable[[str], str], **extravars) -> Deployment:
        """A new app named ``<prefix>_<6 hex>`` in ``workdir(name)``: a random
        loopback port for its stand-in Bot API (its proxy takes the next one),
        its source and cache folders in that workdir, plus ``extravars``.

        Its backups are not scheduled in root's crontab unless ``extravars``
        say ``backup_cron_enabled=True``, and it never starts a cron daemon
        (``backup_cron_service``): the crontab is one file for the
        whole machine, and the tests that write it run one after the other
        (tests/integration/conftest.py, the xdist group "crontab")."""
        name = f"{prefix}_{uuid.uuid4().hex[:6]}"
        work = workdir(name)
        d = cls(name=name, workdir=work, telegram_port=free_ports())
        d.extravars.update({
            "app_telegram_api_base": f"http://{name}_telegram:8081",
            "code_sync_source_dir": os.path.join(work, "src"),
            "code_sync_cache_dir": os.path.join(work, "cache"),
            "backup_cron_enabled": False,
            # nor does a test deployment start a cron daemon: one that runs
            # would fire the entries of the tests that write them (at 02:00,
            # a daily backup nobody asked for)
            "backup_cron_service": False,
            **extravars,
        })
        return d

    def use_vault(self, secrets: dict) -> None:
        """Keep these variables in an Ansible Vault file, as a real inventory
        does; every run then reads them from it."""
        self.vault_password_file = os.path.join(self.workdir, "vault-pass")
        with open(self.vault_password_file, "w", encoding="utf-8") as fh:
            fh.write(uuid.uuid4().hex)
        os.chmod(self.vault_password_file, 0o600)
        self.vault_file = os.path.join(self.workdir, "vault.yml")
        with open(self.vault_file, "w", encoding="utf-8") as fh:
            json.dump(secrets, fh)
        subprocess.run(
            [os.path.join(os.path.dirname(PYTHON), "ansible-vault"), "encrypt", self.vault_file,
             "--vault-password-file", self.vault_password_file],
            check=True, capture_output=True,
        )

    @property
    def app_root(self) -> str:
        return os.path.join(self.workdir, "app")

    @property
    def backup_root(self) -> str:
        return os.path.join(self.workdir, "backups")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.workdir, "deployment_logs")

    def webhook_secret(self, service: str = "admin_bot") -> str:
        """The webhook secret the deploy made for a service (roles/webhook)."""
        path = os.path.join(self.app_root, "shared", "webhooks", f"{service}.secret")
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()

    def vars(self, **extra) -> dict:
        base = {
            "app_name": self.name,
            "app_root": self.app_root,
            "app_backup_root": self.backup_root,
            "demo_telegram_host_port": self.telegram_port,
            "skip_tests": True,
        }
        base.update(self.extravars)
        base.update(extra)
        return base

    def run(self, playbook: str, timeout: int = 900, limit: str | None = None,
            **extra) -> ansible_runner.Runner:
        """Run playbooks/<playbook> with this deployment's variables (on the hosts of ``limit``
        only, as ``-l``, when given)."""
        private = tempfile.mkdtemp(prefix="runner-", dir=self.workdir)
        cmdline = None
        if self.vault_file:
            cmdline = f"--vault-password-file {self.vault_password_file} -e @{self.vault_file}"
        runner = ansible_runner.run(
            private_data_dir=private,
            cmdline=cmdline,
            playbook=os.path.join(ROOT, "playbooks", playbook),
            inventory=self.inventory,
            extravars=self.vars(**extra),
            envvars={
                "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
                "DEPLOY_LOG_DIR": self.log_dir,
                "ANSIBLE_PYTHON_INTERPRETER": PYTHON,
            },
            quiet=True,
            timeout=timeout,
            limit=limit,
        )
        return runner

    def env(self) -> dict:
        env = dict(os.environ)
        env.update({
            "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
            "DEPLOY_LOG_DIR": self.log_dir,
            "PATH": os.path.dirname(PYTHON) + os.pathsep + env.get("PATH", ""),
        })
        return env

    def popen(self, playbook: str, log_name: str, **extra) -> subprocess.Popen:
        """Start ansible-playbook as a process of its own (to kill it, or to
        run two at once); its output goes to <workdir>/<log_name>."""
        varfile = os.path.join(self.workdir, f"{log_name}.vars.json")
        with open(varfile, "w", encoding="utf-8") as fh:
            json.dump(self.vars(**extra), fh)
        out = open(os.path.join(self.workdir, log_name), "w", encoding="utf-8")  # noqa: SIM115
        return subprocess.Popen(
            [os.path.join(os.path.dirname(PYTHON), "ansible-playbook"), "-i", self.inventory,
             os.path.join(ROOT, "playbooks", playbook), "-e", f"@{varfile}"],
            stdout=out, stderr=subprocess.STDOUT, env=self.env(), cwd=ROOT, start_new_session=True,
        )

    def output(self, log_name: str) -> str:
        with open(os.path.join(self.workdir, log_name), encoding="utf-8") as fh:
            return fh.read()

    # -- what is on the server ------------------------------------------

    def containers(self, role: str = "service", all_: bool = False) -> list[dict]:
        args = ["ps", "--format", "{{json .}}", "--filter", f"label=fs.app={self.name}",
                "--filter", f"label=fs.role={role}"]
        if all_:
            args.insert(1, "-a")
        out = docker(*args)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def current_release(self) -> str | None:
        link = os.path.join(self.app_root, "current")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None

    def psql(self, sql: str) -> str:
        return docker("exec", f"{self.name}_db", "psql", "-X", "-At", "-U", "field_service",
                      "-d", "field_service", "-c", sql)

    def logs(self) -> list[str]:
        """The deploy logs (not the console's full-output files beside them)."""
        found = glob.glob(os.path.join(self.log_dir, "*.log"))
        return sorted(p for p in found if not p.endswith(".ansible.log"))

    def telegram(self, method: str, path: str, body=None):
        url = f"http://127.0.0.1:{self.telegram_port}{path}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def telegram_api(self, token: str, method: str, **params):
        """Call a Bot API method of the stand-in (as Telegram's own API), its result."""
        return self.telegram("POST", f"/bot{token}/{method}", params)["result"]

    def destroy(self) -> None:
        """Remove every container, network, volume, image, directory and cron
        entry of this app."""
        remove_cron_entries(self.name)
        ids = docker("ps", "-aq", "--filter", f"label=fs.app={self.name}", check=False).split()
        ids += docker("ps", "-aq", "--filter", f"name=^{self.name}_", check=False).split()
        if ids:
            docker("rm", "-f", "-v", *sorted(set(ids)), check=False)
        docker("network", "rm", f"{self.name}_net", check=False)
        docker("volume", "rm", "-f", f"{self.name}_pgdata", check=False)
        images = docker("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).split()
        mine = [i for i in images if i.split(":")[0] in (self.name, f"{self.name}_telegram")]
        if mine:
            docker("rmi", "-f", *mine, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)


def crontab() -> str:
    """root's crontab on this machine (the server), empty when there is none."""
    out = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def remove_cron_entries(app: str) -> None:
    """Remove the cron entries the backup role wrote for this app."""
    lines = crontab().splitlines()
    keep, skip = [], False
    for line in lines:
        if skip:
            skip = False
            continue
        if line.startswith(f"#Ansible: {app} backup "):
            skip = True
            continue
        keep.append(line)
    if keep != lines:
        subprocess.run(["crontab", "-"], input="\n".join(keep) + ("\n" if keep else ""), text=True,
                       check=False)


def failed_tasks(runner: ansible_runner.Runner) -> list[str]:
    return [
        f"{e['event_data'].get('task')}: {e['event_data'].get('res', {}).get('msg')}"
        + (f" {e['event_data']['res']['stderr']}" if e["event_data"].get("res", {}).get("stderr") else "")
        for e in runner.events
        if e.get("event") == "runner_on_failed" and not e["event_data"].get("ignore_errors")
    ]


def changed_tasks(runner: ansible_runner.Runner) -> list[str]:
    return [
        e["event_data"].get("task")
        for e in runner.events
        if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")
    ]


def ran_tasks(runner: ansible_runner.Runner) -> list[str]:
    """Names of the tasks that ran (ok or changed) on some host."""
    return [
        e["event_data"].get("task")
        for e in runner.events
        if e.get("event") == "runner_on_ok"
    ]

