#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: does the serving release still run on the schema the deploy will migrate to?"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: serving_check
short_description: Start the serving release on the new schema, in isolation, before a deploy migrates
description:
  - In a Docker network of its own with no way out, starts a throwaway PostgreSQL of O(db_image) loaded
    with O(schema) (the schema the pending migrations make), the stand-in Bot API (O(bot_api_script), run
    by the serving image's own C(python3)) and the serving release's services from O(image), with their
    settings (O(services), O(secret_env)) but the database URL and C(TELEGRAM_API_BASE) pointed at those two.
  - >-
    The services must get ready as the switch judges it (M(fieldservice.deploy.switch)), each bot of
    O(bots) must take the test messages O(texts), and the health check (M(fieldservice.deploy.health_check))
    must pass: running, no critical log line (a handler that fails on the new schema logs its traceback),
    heartbeat fresh when used, the database answers.
  - When that fails and O(serving_schema) is given, the same runs on it; failing there too makes the
    verdict C(inconclusive) (the release does not run in isolation), passing there makes it C(refused).
  - Everything it starts is removed at the end; what a killed run left (older than an hour) is removed at
    the start. Nothing of the app's own containers, networks or database is touched.
version_added: "0.5.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  app:
    description: The app's name (C(app_name)); the check's containers are C(<app>_check_<random>_*).
    type: str
    required: true
  release:
    description: The serving release.
    type: str
    required: true
  image:
    description: The serving release's image.
    type: str
    required: true
  services:
    description: The services, as M(fieldservice.deploy.switch) takes them.
    type: list
    elements: dict
    required: true
  secret_env:
    description: Each service's secret environment, as M(fieldservice.deploy.switch) takes it. Never logged.
    type: dict
    default: {}
  bots:
    description:
      - The bots to send test messages to, each with C(name) (its service), C(mode) (C(polling) or
        C(webhook); others are left out), C(token_env) (the variable of its secret environment with its
        token), and for a webhook C(webhook_path) and C(webhook_secret_env) (the resolved services of the
        app have these keys).
    type: list
    elements: dict
    default: []
  texts:
    description: The test messages each bot is sent.
    type: list
    elements: str
    default: ["/start", "a test message from the deploy's check of the serving release"]
  schema:
    description: The new schema, a plain SQL dump. Not logged (it may hold rows the migrations insert).
    type: str
    required: true
  serving_schema:
    description: The schema the serving release runs on now, for the control run; empty skips it.
    type: str
    default: ""
  db_image:
    description: The PostgreSQL image of the throwaway database (the app's, C(app_db_image)).
    type: str
    required: true
  bot_api_script:
    description: The stand-in Bot API's source (C(roles/demo_telegram/files/fake_telegram.py)).
    type: str
    required: true
  healthcheck:
    description:
      - The services' health check, as M(fieldservice.deploy.switch) takes it; empty uses the
        image's.
    type: dict
    default: {}
  ready_timeout:
    description: Seconds the database, the Bot API and the services have to get ready.
    type: float
    default: 60
  update_timeout:
    description: Seconds the bots have to take their test messages once ready.
    type: float
    default: 15
  health_timeout:
    description: Seconds the health check may retry.
    type: float
    default: 20
  heartbeats:
    description: Each service's heartbeat check (C(auto), C(required), C(off)), by name; C(auto) by default.
    type: dict
    default: {}
  critical_patterns:
    description: Log lines that fail the health check (regular expressions).
    type: list
    elements: str
    default: [CRITICAL, Traceback, FATAL]
  heartbeat_table:
    description: The heartbeat table.
    type: str
    default: heartbeats
  heartbeat_max_age:
    description: Seconds a heartbeat may be old.
    type: float
    default: 30
extends_documentation_fragment:
  - fieldservice.deploy.common.docker
attributes:
  check_mode:
    support: full
    description: In check mode nothing is started; the verdict is C(skipped).
  diff_mode:
    support: none
    description: Nothing lasting is changed.
  idempotent:
    support: full
    description: Nothing lasting is changed; the task never reports a change.
"""

EXAMPLES = r"""
- name: Start the serving release on the new schema
  fieldservice.deploy.serving_check:
    app: field_service
    release: 3f2a9c1d0b7e
    image: field_service:3f2a9c1d0b7e
    services: "{{ services_as_the_switch_takes_them }}"
    secret_env: "{{ secret_env_as_the_switch_takes_it }}"
    bots: [{name: master_bot, mode: polling, token_env: BOT_TOKEN}]
    schema: "{{ migrations.schemas.head }}"
    serving_schema: "{{ migrations.schemas.serving }}"
    db_image: postgres:15
    bot_api_script: "{{ lookup('ansible.builtin.file', 'fake_telegram.py') }}"
  register: serving
"""

RETURN = r"""
verdict:
  description:
    - C(passed), C(refused) (fails on the new schema, runs on its own), C(inconclusive) or
      C(skipped).
  returned: always
  type: str
  sample: passed
reason:
  description: What was found, in a sentence.
  returned: always
  type: str
new_schema:
  description:
    - The run on the new schema, C(ok), C(stage) where it failed (database, bot_api, ready, updates,
      health, engine), C(reason), C(readiness) by service, C(updates) (sent and taken by service) and
      C(seconds).
  returned: always
  type: dict
own_schema:
  description: The control run on O(serving_schema) when the first one failed, as RV(new_schema).
  returned: always
  type: dict
leftovers_removed:
  description: Containers and networks of an earlier, killed check that were removed.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils.argspec import docker_spec
from ansible_collections.fieldservice.deploy.plugins.module_utils.detach import start_detached
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerClient, DockerError
from ansible_collections.fieldservice.deploy.plugins.module_utils.serving_check import ServingCheck
from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import Service, scrub


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "app": {"type": "str", "required": True},
            "release": {"type": "str", "required": True},
            "image": {"type": "str", "required": True},
            "services": {"type": "list", "elements": "dict", "required": True},
            "secret_env": {"type": "dict", "default": {}, "no_log": True},
            "bots": {"type": "list", "elements": "dict", "default": []},
            "texts": {"type": "list", "elements": "str",
                      "default": ["/start", "a test message from the deploy's check of the serving release"]},
            "schema": {"type": "str", "required": True, "no_log": True},
            "serving_schema": {"type": "str", "default": "", "no_log": True},
            "db_image": {"type": "str", "required": True},
            "bot_api_script": {"type": "str", "required": True},
            "healthcheck": {"type": "dict", "default": {}},
            "ready_timeout": {"type": "float", "default": 60},
            "update_timeout": {"type": "float", "default": 15},
            "health_timeout": {"type": "float", "default": 20},
            "heartbeats": {"type": "dict", "default": {}},
            "critical_patterns": {"type": "list", "elements": "str",
                                  "default": ["CRITICAL", "Traceback", "FATAL"]},
            "heartbeat_table": {"type": "str", "default": "heartbeats"},
            "heartbeat_max_age": {"type": "float", "default": 30},
            **docker_spec(),
        },
        supports_check_mode=True,
    )
    p = module.params
    if module.check_mode:
        module.exit_json(changed=False, verdict="skipped", reason="check mode", new_schema={}, own_schema={},
                         leftovers_removed=[])
    try:
        services = [Service.from_dict(s) for s in p["services"]]
    except (ValueError, KeyError) as exc:
        module.fail_json(msg=f"services: {exc}")
    check = ServingCheck(
        DockerClient(docker_host=p["docker_host"]), p["app"], p["release"], p["image"], services,
        p["secret_env"], p["bots"], p["db_image"], p["bot_api_script"], p["texts"],
        healthcheck=p["healthcheck"], ready_timeout=p["ready_timeout"], update_timeout=p["update_timeout"],
        health_timeout=p["health_timeout"],
        health={"critical_patterns": p["critical_patterns"], "heartbeat_table": p["heartbeat_table"],
                "heartbeat_max_age": p["heartbeat_max_age"], "interval": 0.5},
        heartbeats=p["heartbeats"],
        # the containers and the network of a run go in a detached process:
        # the deploy does not wait for them (a killed one's are removed by
        # the next check)
        cleanup=start_detached,
    )
    try:
        result = check.run(p["schema"], p["serving_schema"])
    except DockerError as exc:
        module.fail_json(msg=scrub(f"Docker error during the check of the serving release: {exc}"))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
