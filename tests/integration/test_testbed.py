"""The fleet test bed (tests/integration/testbed.py): its hosts are separate servers over SSH.

Two hosts are made, each a network namespace with its own Docker engine and
sshd; what one host writes (a file under /opt, a crontab line, a container)
the other host and the machine do not see, a container published on one host
answers at that host's address, and Ansible reaches both over SSH. ``down``
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import load
import pytest
import testbed
from harness import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bed():
    why = testbed.problem()
    if why:
        pytest.skip(why)
    hosts = testbed.up(["a", "b"])
    try:
        yield hosts
    finally:
        testbed.down()


def test_each_host_is_a_server_of_its_own(bed, tmp_path):
    a, b = bed
    # its own engine: three data roots (a, b, the machine's)
    ids = {h.name: h.ssh("docker info --format '{{.DockerRootDir}}'").stdout.strip() for h in bed}
    mine = subprocess.run(["docker", "info", "--format", "{{.DockerRootDir}}"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert len({ids["a"], ids["b"], mine}) == 3 and all(ids.values()), ids
    # its own /opt and crontab
    a.ssh("mkdir -p /opt/field-service && echo a > /opt/field-service/marker")
    a.ssh("echo '17 * * * * true # fs bed' | crontab -")
    assert a.ssh("cat /opt/field-service/marker").stdout.strip() == "a"
    assert "fs bed" in a.ssh("crontab -l").stdout
    assert b.ssh("test -e /opt/field-service/marker", check=False).returncode == 1
    assert b.ssh("crontab -l", check=False).returncode == 1  # no crontab for root there
    assert not os.path.exists("/opt/field-service/marker")
    # its own address: each host sees itself, and the other one over the bridge
    assert a.address in a.ssh("ip -4 -o addr show eth0").stdout
    reach = f"python3 -c 'import socket; socket.create_connection((\"{a.address}\", 22), 3); print(\"ok\")'"
    assert b.ssh(reach).stdout.strip() == "ok"


def test_a_container_published_on_a_host_answers_at_its_address(bed):
    a, b = bed
    a.load_images("python:3.11-slim")
    # the image is on a only
    assert b.ssh("docker image inspect python:3.11-slim", check=False).returncode == 1
    a.ssh("docker run -d --name fs_bed_web -p 8080:8000 python:3.11-slim python -m http.server 8000")
    try:
        def page() -> str:
            try:
                with urllib.request.urlopen(f"http://{a.address}:8080/", timeout=2) as resp:
                    return resp.read().decode()
            except OSError:
                return ""

        assert "Directory listing" in wait_for(page, timeout=30, interval=0.2)
        # and from the other host too
        got = b.ssh(f"python3 -c \"import urllib.request; print(urllib.request.urlopen('http://{a.address}:8080/')"
                    f".status)\"").stdout.strip()
        assert got == "200"
        # the machine's engine does not have it
        mine = subprocess.run(["docker", "ps", "-q", "--filter", "name=fs_bed_web"], capture_output=True,
                              text=True, check=True).stdout.strip()
        assert mine == ""
    finally:
        a.ssh("docker rm -f fs_bed_web", check=False)


def test_ansible_reaches_every_host_over_ssh(bed, tmp_path):
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {h.name: h.inventory_vars() for h in bed}}}))
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    res = subprocess.run([ansible, "all", "-i", str(inventory), "-m", "ansible.builtin.command",
                          "-a", "cat /proc/net/fib_trie"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    for host in bed:
        section = res.stdout.split(f"{host.name} | CHANGED")[1].split(" | CHANGED")[0]
        assert host.address in section
        assert all(other.address not in section for other in bed if other is not host)


def test_down_leaves_nothing():
    hosts = testbed.up(["c"])
    c = hosts[0]
    assert c.ssh("true").returncode == 0
    testbed.down()
    assert not os.path.exists(f"/var/run/netns/{c.netns}")
    assert not os.path.exists(c.state) and not os.path.exists(c.run)
    assert subprocess.run(["ip", "link", "show", testbed.BRIDGE], capture_output=True).returncode != 0
    assert subprocess.run(["ssh", *testbed.ssh_options(), f"root@{c.address}", "true"],
                          capture_output=True).returncode != 0


def test_the_load_generator_targets_the_bed_s_hosts_and_no_other_network():
    assert load.TEST_BED_NETWORK == f"{testbed.PREFIX}.0/24"
    load.LoadGenerator(url=f"http://{testbed.PREFIX}.13/admin_bot/webhook")
    load.LoadGenerator(url="http://127.0.0.1:18082/admin_bot/webhook")
    for url in ("http://10.231.1.5/x", "http://192.0.2.10/x", "http://example.org/x"):
        with pytest.raises(ValueError, match="loopback"):
            load.LoadGenerator(url=url)
