"""A fleet on the test bed, shared by tests/integration/test_fleet.py and
bench/rolling.py: app servers app1..appN, a database server db1 (PostgreSQL
in a container of its own engine, the fleet's shared database) and a load
balancer host lb1, each a host of testbed.py reached over SSH, with the
registry on the bed's bridge, and one stand-in Bot API for the whole fleet
(on the machine's address on the bridge); and the sample app's settings that
deploy to it (the image built once on the control node and pulled by digest,
its webhook bot on each server, its polling bot on each server with one
poller in the fleet).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

import testbed
from harness import ROOT, Deployment, wait_for

IMAGES = ("python:3.11-slim", "postgres:15", "nginx:stable-bookworm", "fs-offline/debian:bookworm")
DB_PASSWORD = "fleet-db-secret"
DB_CONTAINER = "fleetdb"
TELEGRAM_PORT = 18081  # the local demo's stand-in port (the fleet has its own stand-in: start_telegram)
PROXY_PORT = TELEGRAM_PORT + 1  # each app server's proxy, on the server's own address
KEEPALIVES = ("-c", "tcp_keepalives_idle=5", "-c", "tcp_keepalives_interval=2",
              "-c", "tcp_keepalives_count=3", "-c", "tcp_user_timeout=10000")
FAKE_TELEGRAM = os.path.join(ROOT, "roles", "demo_telegram", "files", "fake_telegram.py")


@dataclass
class Fleet:
    apps: dict  # name -> testbed.Host
    db: testbed.Host
    lb: testbed.Host
    registry: str
    telegram_port: int = 0  # the fleet's stand-in Bot API, on the machine's address on the bridge
    lb_cert: str = ""  # the load balancer's certificate (self-signed for its address) and key files
    lb_key: str = ""
    _telegram: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def telegram_base(self) -> str:
        return f"http://{testbed.GATEWAY}:{self.telegram_port}"

    def start_telegram(self) -> None:
        """One stand-in Bot API for every server (a polling bot's updates wait in one queue, as on
        Telegram), listening on the machine's address on the bed's bridge only."""
        with socket.socket() as probe:
            probe.bind((testbed.GATEWAY, 0))
            self.telegram_port = probe.getsockname()[1]
        self._telegram = subprocess.Popen(  # noqa: S603 - our own script
            [sys.executable, FAKE_TELEGRAM, "--host", testbed.GATEWAY, "--port", str(self.telegram_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                return self.telegram("GET", "/_control/health") is not None
            except OSError:
                return False
        if not wait_for(answers, timeout=20):
            raise RuntimeError(f"the fleet's stand-in Bot API does not answer at {self.telegram_base}")

    def stop_telegram(self) -> None:
        if self._telegram is not None:
            self._telegram.terminate()
            self._telegram.wait(10)

    def telegram(self, method: str, path: str, body=None):
        """A call to the fleet's stand-in (as Deployment.telegram: its control and Bot API paths)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.telegram_base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def inventory(self, path: str, broken: str = "", apps: list[str] | None = None) -> str:
        """The inventory: the app servers (all, or ``apps``), each proxy on its own address for the
        load balancer, FLEET_BROKEN in the environment of ``broken``; and lb1."""
        servers = {}
        for name in apps or list(self.apps):
            host = self.apps[name]
            extra = {"app_env": {"FLEET_BROKEN": "1"}} if name == broken else {}
            servers[name] = dict(host.inventory_vars(), app_proxy_bind_address=host.address, **extra)
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"all": {"children": {"app_servers": {"hosts": servers},
                                            "lb": {"hosts": {"lb1": self.lb.inventory_vars()}}}}}, fh)
        return path

    def deployment(self, name: str, workdir: str, apps: list[str] | None = None) -> Deployment:
        """The sample app deployed to the fleet: its webhook bot and its polling bot (the poller lock in
        the shared database) on every server, each with its heartbeat, talking to the fleet's stand-in
        Bot API; the image through the registry."""
        shutil.copytree(os.path.join(ROOT, "inventory", "local", "group_vars"),
                        os.path.join(workdir, "inventory", "group_vars"), dirs_exist_ok=True)
        inventory = self.inventory(os.path.join(workdir, "inventory", "hosts.json"), apps=apps)
        d = Deployment(name=name, workdir=workdir, telegram_port=TELEGRAM_PORT, inventory=inventory)
        d.extravars.update({
            "app_root": f"/opt/{name}", "app_backup_root": f"/opt/{name}-backups",
            # one stand-in for the fleet, on the machine (no stand-in beside each server's bots)
            "demo_telegram_enabled": False, "app_telegram_api_base": self.telegram_base,
            "app_proxy_port": PROXY_PORT, "app_proxy_tls_port": PROXY_PORT + 1,
            # HTTPS on the load balancer too (what Telegram needs), with a certificate for its address
            "lb_tls": "provided", "lb_tls_port": 443,
            "lb_tls_certificate": _read(self.lb_cert), "lb_tls_key": _read(self.lb_key),
            "code_sync_source_dir": os.path.join(workdir, "src"),
            "code_sync_cache_dir": os.path.join(workdir, "cache"),
            # the scheduled backups go in the servers' own crontabs (no cron daemon runs there)
            "backup_cron_enabled": True, "backup_cron_service": False,
            "docker_build_registry": f"{self.registry}/{name}", "docker_build_builder": "localhost",
            # the database of the fleet, on db1
            "app_db_managed": False, "app_db_host": self.db.address, "app_db_password": DB_PASSWORD,
            "app_services": [{"name": "admin_bot", "mode": "webhook", "readiness_path": "/ready",
                              "command": ["python", "-m", "field_service.bots.admin_bot.main"],
                              "heartbeat": True, "env": {"BOT_MODE": "webhook"}},
                             {"name": "master_bot", "mode": "polling", "single_poller": True,
                              "readiness_path": "/ready", "heartbeat": True,
                              "command": ["python", "-m", "field_service.bots.master_bot.main"],
                              "env": {"BOT_MODE": "polling"}}],
        })
        return d

    def start_database(self) -> None:
        self.db.docker("rm", "-f", DB_CONTAINER, check=False)
        self.db.docker("run", "-d", "--name", DB_CONTAINER, "-p", f"{self.db.address}:5432:5432",
                       "-e", "POSTGRES_USER=field_service", "-e", "POSTGRES_DB=field_service",
                       "-e", f"POSTGRES_PASSWORD={DB_PASSWORD}", "postgres:15",
                       # a server that vanished (no FIN, no RST) loses its sessions, and with them the
                       # poller lock, in about 10 s: what docs/fleet.md asks of a shared database
                       *KEEPALIVES)
        wait_for(lambda: self.db.docker("exec", DB_CONTAINER, "pg_isready", "-h", "127.0.0.1", "-U",
                                        "field_service", check=False).returncode == 0, timeout=60)

    def psql(self, sql: str) -> str:
        return self.db.docker("exec", DB_CONTAINER, "psql", "-At", "-U", "field_service", "-d",
                              "field_service", "-c", sql).stdout.strip()

    def poller_host(self, service: str = "master_bot") -> str | None:
        """The app server whose container writes the polling service's heartbeat (the fleet's poller)."""
        container = self.psql(f"SELECT hostname FROM heartbeats WHERE service = '{service}'")
        for name, host in self.apps.items():
            found = host.docker("ps", "-q", "--filter", f"id={container}", check=False).stdout.strip()
            if container and found:
                return name
        return None

    def lb_url(self, service: str = "admin_bot", tls: bool = False) -> str:
        return f"{'https' if tls else 'http'}://{self.lb.address}/{service}/webhook"

    def make_lb_certificate(self, folder: str) -> None:
        """A self-signed certificate for the load balancer's address (lb_tls: provided)."""
        self.lb_cert, self.lb_key = os.path.join(folder, "lb.crt"), os.path.join(folder, "lb.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", self.lb_key, "-out", self.lb_cert, "-days", "2",
                        "-subj", "/CN=fs test bed lb", "-addext", f"subjectAltName=IP:{self.lb.address}"],
                       check=True, capture_output=True)

    def remove_app(self, name: str) -> None:
        """The app's containers on every host of the fleet (its files stay in the hosts' /opt) and the
        images the control node built and pushed for it (``docker_build_builder: localhost`` keeps them)."""
        for host in (*self.apps.values(), self.lb):
            ids = host.docker("ps", "-aq", "--filter", f"label=fs.app={name}", check=False).stdout.split()
            if ids:
                host.docker("rm", "-f", *ids, check=False)
        listing = ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", f"{self.registry}/{name}"]
        built = subprocess.run(listing, capture_output=True, text=True, check=False).stdout.split()
        if built:
            subprocess.run(["docker", "rmi", "-f", *built], capture_output=True, check=False)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def serving(host: testbed.Host, name: str) -> str:
    """The release the app serves on the host (its current link)."""
    return host.ssh(f"readlink /opt/{name}/current").stdout.strip().rsplit("/", 1)[-1]


def last_log(d: Deployment) -> str:
    """The newest deploy log, whichever playbook wrote it (<playbook>_<date>_<time>.log)."""
    newest = max(d.logs(), key=lambda p: os.path.basename(p).split("_", 1)[1])
    with open(newest, encoding="utf-8") as fh:
        return fh.read()


@contextlib.contextmanager
def fleet(apps: int = 2) -> Iterator[Fleet]:
    """A bed of ``apps`` app servers, db1 and lb1 with their images, the registry and the shared
    database; everything removed at the end."""
    names = [f"app{i + 1}" for i in range(apps)]
    hosts = testbed.up([*names, "db1", "lb1"])
    try:
        registry = testbed.start_registry()
        # every host's images at once (each a docker save | docker load of its own)
        wanted = [(host, IMAGES) for host in hosts[:apps]]
        wanted += [(hosts[apps], ("postgres:15",)), (hosts[apps + 1], ("nginx:stable-bookworm",))]
        with concurrent.futures.ThreadPoolExecutor(len(wanted)) as pool:
            for done in [pool.submit(host.load_images, *images) for host, images in wanted]:
                done.result()
        f = Fleet(dict(zip(names, hosts[:apps], strict=True)), hosts[apps], hosts[apps + 1], registry)
        f.start_database()
        f.start_telegram()
        tls = tempfile.mkdtemp(prefix="fs-fleet-tls-")
        f.make_lb_certificate(tls)
        try:
            yield f
        finally:
            f.stop_telegram()
            shutil.rmtree(tls, ignore_errors=True)
    finally:
        testbed.down()
