"""Images through a registry (issue 13, first step): built once, pulled by digest.

A server of the test bed (tests/integration/testbed.py: its own network,
Docker engine, /opt and sshd, reached over SSH) has no route to the package
indexes, so it cannot build the sample app's image. With
``docker_build_registry`` and ``docker_build_builder: localhost`` the control
node's engine builds the release once from its archive, pushes it to a real
registry (Debian's docker-registry with TLS on the bed's bridge), and the
server pulls it by digest. A deploy of the same release builds and pulls
nothing; a rollback to a release whose image was removed on the server pulls
it again without a rebuild.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
import testbed
from harness import ROOT, Deployment, failed_tasks, make_source

pytestmark = pytest.mark.integration
IMAGES = ("python:3.11-slim", "postgres:15", "nginx:stable-bookworm", "fs-offline/debian:bookworm")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = testbed.problem()
    if why:
        pytest.skip(why)
    (host,) = testbed.up(["app1"])
    try:
        registry = testbed.start_registry()
        host.load_images(*IMAGES)
        yield host, registry
    finally:
        testbed.down()


def _registry_tags(registry: str, repository: str) -> list[str]:
    ctx = ssl.create_default_context(cafile=os.path.join(testbed.CERTS_D, "ca.crt"))
    try:
        with urllib.request.urlopen(f"https://{registry}/v2/{repository}/tags/list", context=ctx,
                                    timeout=10) as resp:
            return sorted(json.loads(resp.read())["tags"] or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _log(d: Deployment) -> str:
    with open(d.logs()[-1], encoding="utf-8") as fh:
        return fh.read()


def test_built_once_on_the_control_node_pulled_by_digest_on_the_server(server, tmp_path):
    host, registry = server
    name = f"fleet_{uuid.uuid4().hex[:6]}"
    repository = f"{registry}/{name}"
    # the local inventory's settings, with the bed's server as the app server
    shutil.copytree(os.path.join(ROOT, "inventory", "local", "group_vars"),
                    tmp_path / "inventory" / "group_vars")
    inventory = tmp_path / "inventory" / "hosts.json"
    inventory.write_text(json.dumps({"all": {"children": {"app_servers": {"hosts": {
        "app1": host.inventory_vars()}}}}}))
    d = Deployment(name=name, workdir=str(tmp_path), telegram_port=18081, inventory=str(inventory))
    d.extravars.update({
        "app_root": f"/opt/{name}", "app_backup_root": f"/opt/{name}-backups",
        "app_telegram_api_base": f"http://{name}_telegram:8081",
        "code_sync_source_dir": str(tmp_path / "src"), "code_sync_cache_dir": str(tmp_path / "cache"),
        "backup_cron_enabled": False, "backup_cron_service": False,
        "docker_build_registry": repository, "docker_build_builder": "localhost",
    })
    try:
        # Given a server that cannot build (no route to PyPI): without a registry the build fails there
        assert host.ssh("python3 -c \"import socket; socket.create_connection(('pypi.org', 443), 3)\"",
                        check=False).returncode != 0
        make_source(str(tmp_path / "src"), 1)
        # When v1 is deployed through the registry
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        v1 = host.ssh(f"readlink /opt/{name}/current").stdout.strip().rsplit("/", 1)[-1]
        log = _log(d)
        # Then it was built once, on the control node, and pulled on the server by its digest
        assert "Building Docker images... (once, on localhost, for 1 server(s))" in log
        assert f"Image of {v1} pulled on app1: {repository}@sha256:" in log
        assert _registry_tags(registry, name) == [v1]
        digest = log.split(f"{repository}@", 1)[1].split()[0]
        got = json.loads(host.ssh(f"docker image inspect {name}:{v1}").stdout)[0]
        assert f"{repository}@{digest}" in got["RepoDigests"]
        # and it serves there, from the server's own engine (the control node runs none of it)
        running = host.ssh(f"docker ps --filter label=fs.app={name} --filter label=fs.role=service "
                           "--format '{{.Image}}'").stdout.split()
        assert sorted(running) == [f"{name}:{v1}"] * 2
        mine = subprocess.run(["docker", "ps", "-q", "--filter", f"label=fs.app={name}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert mine == []

        # When the same release is deployed again: nothing is built or pulled
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        log = _log(d)
        assert "Building Docker images" not in log and " pulled on " not in log

        # When v2 is deployed, then v1's image is removed on the server and v1 taken back
        make_source(str(tmp_path / "src"), 2)
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        v2 = host.ssh(f"readlink /opt/{name}/current").stdout.strip().rsplit("/", 1)[-1]
        assert v2 != v1 and _registry_tags(registry, name) == sorted([v1, v2])
        host.ssh(f"docker rmi {name}:{v1} {repository}@{digest}")
        r = d.run("rollback.yml")
        assert r.rc == 0, failed_tasks(r)
        log = _log(d)
        # Then the rollback pulled v1 again by the same digest, with no build
        assert f"Image of {v1} pulled on app1: {repository}@{digest}" in log, log
        assert "Building Docker images" not in log
        assert host.ssh(f"readlink /opt/{name}/current").stdout.strip().endswith(v1)
    finally:
        images = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repository],
                                capture_output=True, text=True, check=False).stdout.split()
        if images:
            subprocess.run(["docker", "rmi", "-f", *images], capture_output=True, check=False)
