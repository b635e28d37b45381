#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: check the health of the deployed services (PASSED or FAILED with the reason)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: health_check
short_description: Check that the deployed services are healthy; PASSED or FAILED with the reason
description:
  - For every service in O(services), checks that its container exists, is running, is not
    restarting and that its restart count does not rise during the check (a crash loop).
  - Checks that no line of the container's logs since it started (C(State.StartedAt)) matches
    one of O(critical_patterns); the first offending lines are reported.
  - Checks that the service's heartbeat row in O(heartbeat_table) is at most
    O(heartbeat_max_age) seconds old and, when the service's C(release) is given, that it was
    written by that release (a heartbeat of the old release does not count).
  - Checks that the database answers C(SELECT 1). The managed database is reached by running
    C(psql) in O(db_container) (local socket authentication), so no database port or password is
    needed; an external one (O(db_host)) by C(psql) in a throwaway container of O(db_image) on
    O(db_network), with O(db_password).
  - Failed checks are retried every O(interval) seconds until O(timeout) expires. Critical log
    lines and a crash loop cannot heal during one check and fail at once.
  - Talks to the Docker Engine API (v1.41, Docker 20.10 or later) over its unix socket; needs no
    Python library on the target besides the standard library.
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  services:
    description: The services to check.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the service, as written in the C(service) column of the heartbeats.
        type: str
        required: true
      container:
        description: Name or id of the service's container.
        type: str
        required: true
      release:
        description:
          - Release that must have written the service's heartbeat.
          - When not given, a heartbeat of any release counts.
        type: str
      releases:
        description:
          - Releases any of which may have written the heartbeat, instead of O(services[].release) alone (a
            polling service on several app servers - the fleet's one poller may still run on a server not
            switched yet).
        type: list
        elements: str
      heartbeat_key:
        description:
          - The C(service) value of the heartbeat row to read, when it is not the service's name (on several
            app servers each server's container writes its own row, C(<service>@<host>), named by the
            C(HEARTBEAT_KEY) variable the deploy sets).
        type: str
      heartbeat:
        description:
          - Whether its heartbeat is checked - C(required), C(off), or C(auto) (checked when
            O(heartbeat_table) exists and has a row of the service, of any release; else not used).
          - Without a heartbeat the service is healthy when its container runs, does not restart and
            logs no critical line, and the database answers.
        type: str
        choices: [auto, required, "off"]
        default: auto
  db_container:
    description:
      - Name or id of the PostgreSQL container C(psql) runs in (the managed database).
      - One of O(db_container) and O(db_host) is required.
    type: str
  db_host:
    description: Address of an external database (instead of O(db_container)).
    type: str
  db_port:
    description: Port of the external database.
    type: int
    default: 5432
  db_password:
    description: Password of O(db_user) on the external database.
    type: str
  db_image:
    description: Image with C(psql) of the throwaway probe container for an external database.
    type: str
    default: postgres:15
  db_network:
    description: Docker network the probe container joins to reach the external database.
    type: str
  db_user:
    description: Database user of C(psql -U).
    type: str
    default: postgres
  db_name:
    description: Database of C(psql -d).
    type: str
    default: postgres
  heartbeat_table:
    description:
      - Table of the heartbeat rows (columns C(service), C(release), C(beat_at)).
      - An unquoted SQL identifier, optionally schema-qualified.
    type: str
    default: heartbeats
  heartbeat_max_age:
    description: Seconds after which a heartbeat is stale.
    type: float
    default: 30
  critical_patterns:
    description: Regular expressions (Python syntax) that mark a critical log line.
    type: list
    elements: str
    default: ['\bCRITICAL\b', 'Traceback \(most recent call last\)', '\bFATAL\b']
  timeout:
    description: Seconds the check keeps retrying before it reports FAILED.
    type: float
    default: 60
  interval:
    description: Seconds between two attempts.
    type: float
    default: 2
  webhooks:
    description:
      - >-
        Bots to ask Telegram about (C(getWebhookInfo)). A webhook service fails when its webhook
        points elsewhere than its O(webhooks[].url), when Telegram reports a delivery error dated
        after the check began, or when more than O(webhook_max_pending) updates wait and their
        number grows during the check. A polling service fails when a webhook is set for its bot
        (its C(getUpdates) then fails with 409).
    type: list
    elements: dict
    default: []
    suboptions:
      service:
        description: The service's name.
        type: str
        required: true
      mode:
        description: How it receives updates.
        type: str
        choices: [webhook, polling]
        required: true
      token:
        description: Its bot token (never logged).
        type: str
        required: true
      url:
        description: The URL its webhook must point at (a webhook service).
        type: str
        default: ""
  telegram_api_base:
    description: Base URL of the Bot API as this host reaches it; required with O(webhooks).
    type: str
  webhook_max_pending:
    description: Updates that may wait for a webhook service before a growing number of them fails the check.
    type: int
    default: 100
  proxy_container:
    description:
      - >-
        The proxy's container; RV(refused_webhook_requests) then counts the webhook requests it
        refused (no valid C(X-Telegram-Bot-Api-Secret-Token)) in the last O(refused_window) seconds.
    type: str
  refused_window:
    description: Seconds of the proxy's logs in which refused webhook requests are counted.
    type: float
    default: 86400
  maintenance:
    description:
      - Maintenance mode is on (C(playbooks/maintenance.yml)) - a paused container (a polling bot
        the mode paused) is what it asks; its heartbeat is not checked and the report says
        C(paused for maintenance). With it off, a paused container fails the check.
    type: bool
    default: false
  fail_on_unhealthy:
    description:
      - "When true, the task fails with the message C(Health check: FAILED) followed by the reason
        in parentheses, and returns the report."
      - When false, the task succeeds and returns the report; check RV(status).
    type: bool
    default: true
extends_documentation_fragment:
  - fieldservice.deploy.common.docker
  - fieldservice.deploy.common.read_only
notes:
  - Heartbeat ages are computed by the database from its C(now) and C(beat_at), so the clocks of the
    Ansible controller and of the server do not matter.
  - A C(psql) command that outlives its time limit keeps running in the database container;
    the Engine API cannot stop an exec.
"""

EXAMPLES = r"""
- name: Check the services of release 3f2a9c1d0b7e
  fieldservice.deploy.health_check:
    services:
      - name: master_bot
        container: field_service_master_bot_3f2a9c1d0b7e
        release: 3f2a9c1d0b7e
      - name: worker
        container: field_service_worker_3f2a9c1d0b7e
        release: 3f2a9c1d0b7e
    db_container: field_service_db
    db_user: app
    db_name: field_service
    timeout: 90

- name: Only report, do not fail
  fieldservice.deploy.health_check:
    services: "{{ health_services }}"
    db_container: field_service_db
    fail_on_unhealthy: false
  register: health

- name: Show the verdict
  ansible.builtin.debug:
    msg: "Health check: {{ health.status }} ({{ health.reason }})"
"""

RETURN = r"""
status:
  description: C(PASSED) when every check passed, else C(FAILED).
  returned: always
  type: str
  sample: FAILED
reason:
  description: The first failure, naming the service and the check; C(all checks passed) when PASSED.
  returned: always
  type: str
  sample: "master_bot: heartbeat stale (45.2s > 30s)"
failures:
  description: All failures of the last attempt, most serious first.
  returned: always
  type: list
  elements: str
  sample: ["master_bot: heartbeat stale (45.2s > 30s)"]
services:
  description: Per service (by name) what was found.
  returned: always
  type: dict
  contains:
    container:
      description: The container checked.
      type: str
    exists:
      description: Whether the container exists.
      type: bool
    status:
      description: The container's state (C(running), C(exited), ... C(missing), C(unknown)).
      type: str
    running:
      description: C(State.Running).
      type: bool
    restarting:
      description: C(State.Restarting).
      type: bool
    restart_count:
      description: The container's restart count.
      type: int
    started_at:
      description: C(State.StartedAt).
      type: str
    critical_lines:
      description: The first (at most 5) critical log lines since the container started, truncated.
      type: list
      elements: str
    heartbeat_age:
      description: Age of the heartbeat in seconds, null when there is none or it was not read.
      type: float
    heartbeat_release:
      description: Release that wrote the heartbeat, null when there is none.
      type: str
    heartbeat:
      description: C(checked), C(off), C(not checked) (database unreadable) or C(not used (...)) with why.
      type: str
    ok:
      description: Whether every check of this service passed.
      type: bool
  sample:
    master_bot:
      container: field_service_master_bot_3f2a9c1d0b7e
      exists: true
      status: running
      running: true
      restarting: false
      restart_count: 0
      started_at: "2025-10-10T15:33:15.123456789Z"
      critical_lines: []
      heartbeat_age: 45.2
      heartbeat_release: 3f2a9c1d0b7e
      ok: false
database:
  description: Whether the database answered, and the error when it did not.
  returned: always
  type: dict
  contains:
    reachable:
      description: Whether C(SELECT 1) answered.
      type: bool
    error:
      description: The error, null when none.
      type: str
  sample: {reachable: true, error: null}
webhooks:
  description: Per bot of O(webhooks) (by service name) what Telegram said of its webhook.
  returned: always
  type: dict
  contains:
    url:
      description: The URL Telegram posts to (empty, none).
      type: str
    pending_update_count:
      description: Updates waiting for it.
      type: int
    last_error_message:
      description: Telegram's last delivery error (empty, none).
      type: str
    ok:
      description: Whether its webhook is as it should be.
      type: bool
  sample:
    admin_bot: {url: "https://bot.example.com/admin_bot/webhook", pending_update_count: 0,
                last_error_message: "", ok: true}
refused_webhook_requests:
  description: Webhook requests the proxy refused in the last O(refused_window) seconds (null, logs unread).
  returned: when O(proxy_container) is given
  type: int
  sample: 3
attempts:
  description: Number of attempts made.
  returned: always
  type: int
  sample: 3
elapsed:
  description: Seconds the check took.
  returned: always
  type: float
  sample: 4.021
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils.argspec import docker_spec
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerClient
from ansible_collections.fieldservice.deploy.plugins.module_utils.health import (
    DEFAULT_CRITICAL_PATTERNS,
    FAILED,
    run_health_check,
)

ARGUMENT_SPEC = {
    "services": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "container": {"type": "str", "required": True},
            "release": {"type": "str"},
            "releases": {"type": "list", "elements": "str"},
            "heartbeat_key": {"type": "str", "no_log": False},
            "heartbeat": {"type": "str", "choices": ["auto", "required", "off"], "default": "auto"},
        },
    },
    "db_container": {"type": "str"},
    "db_host": {"type": "str"},
    "db_port": {"type": "int", "default": 5432},
    "db_password": {"type": "str", "no_log": True},
    "db_image": {"type": "str", "default": "postgres:15"},
    "db_network": {"type": "str"},
    "db_user": {"type": "str", "default": "postgres"},
    "db_name": {"type": "str", "default": "postgres"},
    "heartbeat_table": {"type": "str", "default": "heartbeats"},
    "heartbeat_max_age": {"type": "float", "default": 30},
    "critical_patterns": {"type": "list", "elements": "str", "default": list(DEFAULT_CRITICAL_PATTERNS)},
    "timeout": {"type": "float", "default": 60},
    "interval": {"type": "float", "default": 2},
    "fail_on_unhealthy": {"type": "bool", "default": True},
    "webhooks": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "service": {"type": "str", "required": True},
            "mode": {"type": "str", "choices": ["webhook", "polling"], "required": True},
            "token": {"type": "str", "required": True, "no_log": True},
            "url": {"type": "str", "default": ""},
        },
    },
    "telegram_api_base": {"type": "str"},
    "webhook_max_pending": {"type": "int", "default": 100},
    "proxy_container": {"type": "str"},
    "refused_window": {"type": "float", "default": 86400},
    "maintenance": {"type": "bool", "default": False},
    **docker_spec(),
}
REPORT_KEYS = ("status", "reason", "failures", "services", "database", "webhooks", "attempts", "elapsed")


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    try:
        client = DockerClient(p["docker_host"])
        report = run_health_check(client, {k: v for k, v in p.items() if k not in ("fail_on_unhealthy",)})
    except ValueError as exc:
        module.fail_json(msg=f"Invalid parameters: {exc}", changed=False)
    result = {"changed": False}
    result.update({k: report[k] for k in REPORT_KEYS})
    if "refused_webhook_requests" in report:
        result["refused_webhook_requests"] = report["refused_webhook_requests"]
    if report["status"] == FAILED and p["fail_on_unhealthy"]:
        module.fail_json(msg=f"Health check: FAILED ({report['reason']})", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
