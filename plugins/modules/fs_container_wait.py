#!/usr/bin/python
"""Ansible module: wait until freshly started containers are ready."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fs_container_wait
short_description: Wait until containers run and report healthy, or fail with the reason
description:
  - Polls C(docker inspect) of each container until all of them run, are not restarting and,
    when they have a health check, report C(healthy).
  - Fails at once when a container is missing, has exited or restarts (a crash loop), and after
    O(timeout) seconds when one is still starting or unhealthy, with the last health-check
    output in the message.
  - Returns only the containers' state, never their configuration, so secrets in their
    environment never reach the output.
version_added: "0.1.0"
author: field-service-deploy
options:
  containers:
    description: Names of the containers to wait for.
    type: list
    elements: str
    required: true
  timeout:
    description: Seconds to wait for all of them.
    type: float
    default: 120
  interval:
    description: Seconds between two polls.
    type: float
    default: 1
  fail_on_timeout:
    description:
      - Fail the task when the containers are not ready. With V(false) the task succeeds and
        RV(ready) tells the outcome, so that a playbook can clean up before failing.
    type: bool
    default: true
  docker_host:
    description: Docker daemon address.
    type: str
    default: unix:///var/run/docker.sock
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Never changes anything.
"""

EXAMPLES = r"""
- name: Wait for the new release's containers
  fs_container_wait:
    containers: [field_service_admin_bot_3f2a9c1d0b7e, field_service_master_bot_3f2a9c1d0b7e]
    timeout: 120
"""

RETURN = r"""
ready:
  description: Whether every container became ready.
  returned: always
  type: bool
reason:
  description: Why they are not ready (empty when they are).
  returned: always
  type: str
containers:
  description: State of each container (status, health, restart_count, exit_code, last_check, ready).
  returned: always
  type: dict
elapsed:
  description: Seconds waited.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.fs_docker_api import DockerClient, DockerError
    from ansible.module_utils.fs_readiness import READY, wait_ready
except ImportError:  # pragma: no cover - direct import in unit tests
    from fs_docker_api import DockerClient, DockerError
    from fs_readiness import READY, wait_ready


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "containers": {"type": "list", "elements": "str", "required": True},
            "timeout": {"type": "float", "default": 120},
            "interval": {"type": "float", "default": 1},
            "fail_on_timeout": {"type": "bool", "default": True},
            "docker_host": {"type": "str", "default": "unix:///var/run/docker.sock"},
        },
        supports_check_mode=True,
    )
    p = module.params
    client = DockerClient(docker_host=p["docker_host"])
    try:
        ok, verdicts, reason, elapsed = wait_ready(
            client.inspect_container, p["containers"], p["timeout"], p["interval"]
        )
    except DockerError as exc:
        module.fail_json(msg=f"Docker error while waiting: {exc}", ready=False, reason=str(exc),
                         containers={}, elapsed=0.0)
    report = {v.name: {**v.details, "ready": v.state == READY} for v in verdicts}
    result = {"ready": ok, "reason": reason, "containers": report, "elapsed": round(elapsed, 2)}
    if not ok and p["fail_on_timeout"]:
        module.fail_json(msg=reason, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
