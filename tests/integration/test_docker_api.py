"""module_utils/docker_api.py against the real Docker engine (no mocks)."""

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.fieldservice.deploy.plugins.module_utils import docker_api as d

DOCKER_HOST = os.environ.get("FS_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")

pytestmark = pytest.mark.integration


@pytest.fixture
def api():
    return d.DockerClient(DOCKER_HOST, timeout=30)


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_ping_and_version(api):
    assert api.ping() is True
    assert api.version()["ApiVersion"]


def test_unavailable_socket(tmp_path):
    with pytest.raises(d.DockerUnavailable):
        d.DockerClient(f"unix://{tmp_path}/docker.sock").inspect_container("x")


def test_inspect_container(api, service):
    c = service()
    info = api.inspect_container(c.name)
    assert info["Id"] == c.id
    assert info["State"]["Running"] is True
    assert info["RestartCount"] == 0
    assert api.inspect_container(c.id[:12])["Name"] == "/" + c.name
    assert api.inspect_container("fs_test_health_does_not_exist_" + c.id[:8]) is None


def test_list_containers_by_label(api, service, docker_sdk):
    c = service()
    stopped = service(exit_after=0, wait_running=False)
    wait_for(lambda: (stopped.reload() or stopped.status) == "exited", what="exit")
    by_name = {x["Names"][0].lstrip("/"): x for x in api.list_containers(labels={"fs_test_health": "1"})}
    assert c.name in by_name and stopped.name in by_name
    running_only = [x["Id"] for x in api.list_containers(labels={"fs_test_health": "1"}, all=False)]
    assert c.id in running_only and stopped.id not in running_only
    assert api.list_containers(labels={"fs_test_health": "no-such-value"}) == []
    assert c.name in {x["Names"][0].lstrip("/") for x in api.list_containers(labels={"fs_test_health": None})}


def test_logs_demultiplexed(api, service):
    c = service()
    wait_for(lambda: b"INFO tick 3" in c.logs(), what="4 ticks")
    text = api.container_logs(c.name)
    assert "INFO tick 0\n" in text
    assert "debug 0 on stderr\n" in text  # stderr frames kept, headers removed
    assert "\x00" not in text and "\x01" not in text
    only_out = api.container_logs(c.name, stderr=False)
    assert "INFO tick 1" in only_out and "stderr" not in only_out
    tail = api.container_logs(c.name, tail=2).splitlines()
    assert len(tail) == 2
    stamped = api.container_logs(c.name, timestamps=True, tail=1)
    assert stamped[:4].isdigit() and "T" in stamped.split(" ")[0] and stamped.split(" ")[0].endswith("Z")


def test_logs_since(api, service):
    c = service()
    wait_for(lambda: b"INFO tick 2" in c.logs(), what="3 ticks")
    later = time.time()
    wait_for(lambda: api.container_logs(c.name, since=later).count("INFO tick") >= 2, what="new ticks")
    recent = api.container_logs(c.name, since=later)
    assert "INFO tick 0\n" not in recent
    assert api.container_logs(c.name, since=time.time() + 3600) == ""


def test_logs_of_a_tty_container(api, service):
    c = service(tty=True)
    text = api.container_logs(c.name)
    assert "INFO tick 0" in text
    assert api.container_logs(c.name, tty=True).startswith("INFO tick 0")


def test_logs_of_missing_container(api):
    with pytest.raises(d.DockerAPIError) as exc:
        api.container_logs("fs_test_health_no_such_container", tty=False)
    assert exc.value.status == 404


def test_exec_run(api, service):
    c = service()
    code, out, err = api.exec_run(c.name, ["sh", "-c", "echo out; echo err >&2; echo more; exit 7"])
    assert (code, out, err) == (7, "out\nmore\n", "err\n")
    code, out, _ = api.exec_run(c.name, ["sh", "-c", "echo $FOO $(id -u)"], user="nobody", env={"FOO": "bar"})
    assert code == 0 and out == "bar 65534\n"
    code, out, _ = api.exec_run(c.name, ["python", "-c", "print('x' * 300000)"])
    assert code == 0 and len(out) == 300001


def test_exec_run_missing_command(api, service):
    c = service()
    code, out, err = api.exec_run(c.name, ["fs-no-such-command"])
    assert code in (126, 127)
    assert "fs-no-such-command" in out + err


def test_exec_run_timeout(api, service):
    c = service()
    start = time.monotonic()
    with pytest.raises(d.DockerTimeout):
        api.exec_run(c.name, ["sleep", "10"], timeout=1)
    assert time.monotonic() - start < 5


def test_exec_in_stopped_or_missing_container(api, service):
    c = service()
    c.stop(timeout=1)
    with pytest.raises(d.DockerAPIError) as exc:
        api.exec_run(c.name, ["true"])
    assert exc.value.status == 409
    assert "not running" in exc.value.message
    with pytest.raises(d.DockerAPIError) as exc:
        api.exec_run("fs_test_health_no_such_container", ["true"])
    assert exc.value.status == 404


def test_exec_psql_in_postgres(api, pg):
    code, out, err = api.exec_run(
        pg.name, ["psql", "-X", "-At", "-F", "|", "-U", "postgres", "-c", "SELECT 1, 'a'"]
    )
    assert (code, out, err) == (0, "1|a\n", "")


def test_create_start_copy_stop_remove(api, test_network):
    from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import tar_files

    name = f"fs_test_health_api_{os.getpid()}_{int(time.monotonic() * 1000) % 100000}"
    body = {"Image": "python:3.11-slim", "Cmd": ["python", "-c", "import time; time.sleep(300)"],
            "Labels": {"fs_test_health": "1"}, "StopTimeout": 1,
            "HostConfig": {"NetworkMode": test_network}}
    try:
        assert api.inspect_image("python:3.11-slim")["Id"]
        assert api.inspect_image("fs-no-such-image:never") is None
        api.create_container(name, body)
        api.start_container(name)
        api.start_container(name)  # already running: fine
        assert api.inspect_container(name)["State"]["Running"]
        api.put_archive(name, "/tmp", tar_files({"hello.conf": "set $x 1;\n"}))
        assert api.exec_run(name, ["cat", "/tmp/hello.conf"]) == (0, "set $x 1;\n", "")
        started = time.monotonic()
        api.stop_container(name, 1)  # SIGTERM is ignored by sleep as PID 1: SIGKILL after 1 s
        assert time.monotonic() - started < 15
        assert not api.inspect_container(name)["State"]["Running"]
        api.stop_container(name, 1)  # stopped: fine
    finally:
        api.remove_container(name, force=True)
    assert api.inspect_container(name) is None
    api.remove_container(name, force=True)  # gone: fine
    api.stop_container(name, 1)
