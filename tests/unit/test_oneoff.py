"""One-off containers and the schema revision (plugins/module_utils/oneoff.py) on a fake engine."""

from __future__ import annotations

import pytest

from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import (
    DockerAPIError,
    DockerTimeout,
)
from ansible_collections.fieldservice.deploy.plugins.module_utils.oneoff import (
    oneoff_body,
    query_revision,
    run_oneoff,
)


class Engine:
    def __init__(self, exit_code=0, logs="ok\n", wait_error=None, psql=(0, "0002\n", "")):
        self.exit_code, self.logs, self.wait_error, self.psql = exit_code, logs, wait_error, psql
        self.calls = []
        self.exists = set()

    def remove_container(self, name, force=False, volumes=True):
        self.calls.append(("remove", name))
        self.exists.discard(name)

    def create_container(self, name, body):
        self.calls.append(("create", name))
        self.exists.add(name)

    def start_container(self, name):
        self.calls.append(("start", name))

    def request_json(self, method, path, timeout=None):
        self.calls.append(("wait", path, timeout))
        if self.wait_error:
            raise self.wait_error
        return {"StatusCode": self.exit_code}

    def container_logs(self, name, tail=None):
        return self.logs

    def exec_run(self, container, cmd, timeout=60):
        self.calls.append(("exec", container, cmd[-1]))
        if isinstance(self.psql, Exception):
            raise self.psql
        return self.psql


def test_runs_to_the_end_and_removes_the_container():
    eng = Engine(exit_code=3, logs="connecting to postgresql://u:secret@db/x\nfailed\n")
    body = oneoff_body("img:1", ["alembic", "upgrade", "head"], {}, "net", {})
    status, output = run_oneoff(eng, "m", body, 30)
    assert status == 3
    assert "secret" not in output and "postgresql://***@db/x" in output
    assert [c[0] for c in eng.calls] == ["remove", "create", "start", "wait", "remove"]
    assert eng.calls[3] == ("wait", "/containers/m/wait", 30) and not eng.exists


def test_a_timeout_still_removes_the_container():
    eng = Engine(wait_error=DockerTimeout("slow"))
    with pytest.raises(DockerTimeout, match="still ran after 5s"):
        run_oneoff(eng, "m", oneoff_body("img:1", ["sleep", "99"], {}, "net", {}), 5)
    assert eng.calls[-1] == ("remove", "m") and not eng.exists


def test_body_has_the_env_and_network():
    body = oneoff_body("img:1", ["a"], {"B": "2", "A": None}, "net", {"fs.role": "migrations"})
    assert body["Env"] == ["A=", "B=2"] and body["HostConfig"]["NetworkMode"] == "net"
    assert body["Labels"] == {"fs.role": "migrations"}


@pytest.mark.parametrize("psql,expected", [
    ((0, "0002\n", ""), ("0002", "")),
    ((0, "\n", ""), ("", "")),
    ((1, "", "no relation\n"), ("", "no relation")),
    (DockerAPIError(404, "No such container"), ("", "Docker API error 404: No such container")),
])
def test_query_revision(psql, expected):
    assert query_revision(Engine(psql=psql), "db", "u", "d", "SELECT 1") == expected
