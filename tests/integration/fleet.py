"""A fleet on the test bed, shared by tests/integration/test_fleet.py and
bench/rolling.py: app servers app1..appN, a database server db1 (PostgreSQL
in a container of its own engine, the fleet's shared database) and a load
balancer host lb1, each a host of testbed.py reached over SSH, with the
registry on the bed's bridge; and the sample app's settings that deploy to
it (the image built once on the control node and pulled by digest, a
webhook bot whose readiness endpoint is checked on each server).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass

import testbed
from harness import ROOT, Deployment, wait_for

IMAGES = ("python:3.11-slim", "postgres:15", "nginx:stable-bookworm", "fs-offline/debian:bookworm")
DB_PASSWORD = "fleet-db-secret"
DB_CONTAINER = "fleetdb"
TELEGRAM_PORT = 18081  # the stand-in's port on each server (its own network)
PROXY_PORT = TELEGRAM_PORT + 1


@dataclass
class Fleet:
    apps: dict  # name -> testbed.Host
    db: testbed.Host
    lb: testbed.Host
    registry: str

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
        """The sample app deployed to the fleet (a webhook bot only: polling bots and heartbeats are
        not yet supported on several servers), the image through the registry."""
        shutil.copytree(os.path.join(ROOT, "inventory", "local", "group_vars"),
                        os.path.join(workdir, "inventory", "group_vars"), dirs_exist_ok=True)
        inventory = self.inventory(os.path.join(workdir, "inventory", "hosts.json"), apps=apps)
        d = Deployment(name=name, workdir=workdir, telegram_port=TELEGRAM_PORT, inventory=inventory)
        d.extravars.update({
            "app_root": f"/opt/{name}", "app_backup_root": f"/opt/{name}-backups",
            "app_telegram_api_base": f"http://{name}_telegram:8081",
            "code_sync_source_dir": os.path.join(workdir, "src"),
            "code_sync_cache_dir": os.path.join(workdir, "cache"),
            # the scheduled backups go in the servers' own crontabs (no cron daemon runs there)
            "backup_cron_enabled": True, "backup_cron_service": False,
            "docker_build_registry": f"{self.registry}/{name}", "docker_build_builder": "localhost",
            # the database of the fleet, on db1
            "app_db_managed": False, "app_db_host": self.db.address, "app_db_password": DB_PASSWORD,
            "app_services": [{"name": "admin_bot", "mode": "webhook", "readiness_path": "/ready",
                              "command": ["python", "-m", "field_service.bots.admin_bot.main"],
                              "heartbeat": False, "env": {"BOT_MODE": "webhook"}}],
        })
        return d

    def start_database(self) -> None:
        self.db.docker("rm", "-f", DB_CONTAINER, check=False)
        self.db.docker("run", "-d", "--name", DB_CONTAINER, "-p", f"{self.db.address}:5432:5432",
                       "-e", "POSTGRES_USER=field_service", "-e", "POSTGRES_DB=field_service",
                       "-e", f"POSTGRES_PASSWORD={DB_PASSWORD}", "postgres:15")
        wait_for(lambda: self.db.docker("exec", DB_CONTAINER, "pg_isready", "-h", "127.0.0.1", "-U",
                                        "field_service", check=False).returncode == 0, timeout=60)

    def psql(self, sql: str) -> str:
        return self.db.docker("exec", DB_CONTAINER, "psql", "-At", "-U", "field_service", "-d",
                              "field_service", "-c", sql).stdout.strip()

    def lb_url(self, service: str = "admin_bot") -> str:
        return f"http://{self.lb.address}/{service}/webhook"

    def remove_app(self, name: str) -> None:
        """The app's containers on every host of the fleet (its files stay in the hosts' /opt)."""
        for host in (*self.apps.values(), self.lb):
            ids = host.docker("ps", "-aq", "--filter", f"label=fs.app={name}", check=False).stdout.split()
            if ids:
                host.docker("rm", "-f", *ids, check=False)


def serving(host: testbed.Host, name: str) -> str:
    """The release the app serves on the host (its current link)."""
    return host.ssh(f"readlink /opt/{name}/current").stdout.strip().rsplit("/", 1)[-1]


def last_log(d: Deployment) -> str:
    with open(d.logs()[-1], encoding="utf-8") as fh:
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
        yield f
    finally:
        testbed.down()
