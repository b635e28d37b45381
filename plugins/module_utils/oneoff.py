# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One-off containers of a release (the migrations) and the schema revision.

The logic of the ``migrate`` module: the schema revision is read before
and after (``psql`` in the database container), the command runs in a
throwaway container of the release's image on the app network, its exit
status and output are returned, and the container is removed whatever
happened. One Python process instead of four Ansible tasks. Plain stdlib,
unit tested with a fake engine.
"""

from __future__ import annotations

from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerError, DockerTimeout
from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import scrub


def query_revision(client, container: str, user: str, database: str, query: str) -> tuple[str, str]:
    """(revision, error): the first line psql answers ``query`` with in the
    database container; ("", reason) when it cannot be read (no table yet)."""
    try:
        rc, out, err = client.exec_run(container, ["psql", "-X", "-At", "-U", user, "-d", database,
                                                   "-c", query], timeout=60)
    except DockerError as exc:
        return "", str(exc)
    if rc != 0:
        return "", (err or out).strip() or f"psql exit {rc}"
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return (lines[0] if lines else ""), ""


def oneoff_body(image: str, command: list, env: dict, network: str, labels: dict) -> dict:
    return {
        "Image": image,
        "Cmd": [str(c) for c in command],
        "Env": [f"{k}={'' if v is None else v}" for k, v in sorted(env.items())],
        "Labels": dict(labels),
        "HostConfig": {"NetworkMode": network, "AutoRemove": False},
    }


def run_oneoff(client, name: str, body: dict, timeout: float, tail: int = 200) -> tuple[int, str]:
    """Run a container to its end; (exit status, last ``tail`` lines of output).

    A container of the same name left by a killed run is removed first; the
    container is removed at the end whatever happened. Raises DockerTimeout
    (after killing it) when it runs longer than ``timeout`` seconds.
    """
    client.remove_container(name, force=True)
    client.create_container(name, body)
    try:
        client.start_container(name)
        try:
            answer = client.request_json("POST", f"/containers/{name}/wait", timeout=timeout) or {}
        except DockerTimeout as exc:
            raise DockerTimeout(f"{name} still ran after {timeout:g}s; it was stopped") from exc
        status = int(answer.get("StatusCode", -1))
        output = client.container_logs(name, tail=tail)
    finally:
        client.remove_container(name, force=True)
    return status, scrub(output)
