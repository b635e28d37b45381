#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: run the migrations in a one-off container, schema revision before and after."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: migrate
short_description: Run a command (the migrations) in a one-off container of a release
description:
  - Reads the schema revision (O(revision_query) with C(psql) in the database container), runs
    O(command) in a throwaway container of O(image) on the app network, reads the revision again,
    and removes the container whatever happened.
  - The task does not fail when the command fails - RV(status) and RV(output) tell, so that the
    playbook can say it its way (the serving release keeps serving).
  - Credentials in URLs are masked in the output; O(secret_env) is never returned or logged.
version_added: "0.2.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  name:
    description: Name of the one-off container (one of the same name left by a killed run is removed).
    type: str
    required: true
  image:
    description: Image to run (C(repository:tag)), on the server.
    type: str
    required: true
  command:
    description: Command (argv).
    type: list
    elements: str
    required: true
  network:
    description: Docker network the container joins (the database's).
    type: str
    required: true
  env:
    description: Environment (not secret).
    type: dict
    default: {}
  secret_env:
    description: Secret environment (the database URL), added to O(env). Never returned or logged.
    type: dict
    default: {}
  labels:
    description: Labels of the container.
    type: dict
    default: {}
  timeout:
    description: Seconds the command may run; then the container is stopped and the task fails.
    type: float
    default: 600
  revision_query:
    description: SQL that answers the schema revision (empty - not read).
    type: str
    default: SELECT version_num FROM alembic_version
extends_documentation_fragment:
  - fieldservice.deploy.common.database
  - fieldservice.deploy.common.docker
attributes:
  check_mode:
    support: partial
    description: Runs in check mode.
    details: Reads the schema revision; the command does not run.
  diff_mode:
    support: none
    description: The command's output is returned in RV(output); there is no before and after.
  idempotent:
    support: none
    description: Runs the command every time (migrations are idempotent themselves).
"""

EXAMPLES = r"""
- name: Run the migrations
  fieldservice.deploy.migrate:
    name: field_service_migrate_3f2a9c1d0b7e
    image: field_service:3f2a9c1d0b7e
    command: [alembic, upgrade, head]
    network: field_service_net
    secret_env:
      DATABASE_URL: "postgresql://field_service:{{ vault_db_password }}@field_service_db:5432/field_service"
    database: {container: field_service_db, user: field_service, name: field_service}
  register: migrate
"""

RETURN = r"""
status:
  description: Exit status of the command (-1 when it did not run).
  returned: always
  type: int
output:
  description: Last 200 lines of its output (stdout and stderr).
  returned: always
  type: str
revision_before:
  description: Schema revision before (empty when it could not be read).
  returned: always
  type: str
revision_after:
  description: Schema revision after (empty when it could not be read).
  returned: always
  type: str
revision_error:
  description: Why the revision could not be read before, if so.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils.argspec import database_spec, docker_spec
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerClient, DockerError
from ansible_collections.fieldservice.deploy.plugins.module_utils.oneoff import (
    oneoff_body,
    query_revision,
    run_oneoff,
)
from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import scrub


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "image": {"type": "str", "required": True},
            "command": {"type": "list", "elements": "str", "required": True},
            "network": {"type": "str", "required": True},
            "env": {"type": "dict", "default": {}},
            "secret_env": {"type": "dict", "default": {}, "no_log": True},
            "labels": {"type": "dict", "default": {}},
            "timeout": {"type": "float", "default": 600},
            **database_spec(),
            "revision_query": {"type": "str", "default": "SELECT version_num FROM alembic_version"},
            **docker_spec(),
        },
        supports_check_mode=True,
    )
    p = module.params
    client = DockerClient(docker_host=p["docker_host"])
    db = p["database"]

    def revision() -> tuple[str, str]:
        if not db or not p["revision_query"]:
            return "", "not read"
        return query_revision(client, db["container"], db["user"], db["name"], p["revision_query"])

    before, error = revision()
    result = {"changed": False, "status": -1, "output": "", "revision_before": before,
              "revision_after": before, "revision_error": error}
    if module.check_mode:
        module.exit_json(**result)
    env = {**p["env"], **p["secret_env"]}
    body = oneoff_body(p["image"], p["command"], env, p["network"], p["labels"])
    try:
        status, output = run_oneoff(client, p["name"], body, p["timeout"])
    except DockerError as exc:
        result["output"] = scrub(str(exc))
        module.fail_json(msg=scrub(f"the one-off container {p['name']} did not run: {exc}"), **result)
    result.update(changed=True, status=status, output=output, revision_after=revision()[0])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
