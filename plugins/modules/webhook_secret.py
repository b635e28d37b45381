#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the secret Telegram sends back to each webhook service."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: webhook_secret
short_description: The webhook secret of each webhook service, from Vault or made once on the server
description:
  - >-
    Telegram sends a webhook's C(secret_token) back in the C(X-Telegram-Bot-Api-Secret-Token)
    header of every delivery; the proxy refuses a request without it, and the service is given it
    too. This module answers it for each of O(services).
  - >-
    A service with a secret in O(given) (from Ansible Vault) gets that one. Any other gets the
    one kept in C(<directory>/<service>.secret) (0600, its folder 0700), made once from 32 random
    bytes when missing, so it stays the same from one deploy to the next.
  - >-
    The answer holds the secrets: call it with C(no_log) set.
version_added: "0.6.0"
author: Field Service deploy contributors (@field-service-deploy)
seealso:
  - module: fieldservice.deploy.telegram_webhook
    description: Registers the webhooks with these secrets.
options:
  services:
    description: Names of the webhook services.
    type: list
    elements: str
    required: true
  given:
    description: Secrets from Vault, by service name; 1-256 characters C(A-Z a-z 0-9 _ -).
    type: dict
    default: {}
  directory:
    description: Folder of the secrets made on the server.
    type: path
    required: true
attributes:
  check_mode:
    support: full
    description: A missing secret is made up but not written.
  diff_mode:
    support: none
    description: A secret is never shown.
  idempotent:
    support: full
    description: A secret is made only when there is none.
"""

EXAMPLES = r"""
- name: Read (or make) the webhook secrets
  fieldservice.deploy.webhook_secret:
    services: [admin_bot]
    given: "{{ webhook_secrets }}"
    directory: /opt/field-service/shared/webhooks
  register: secrets
  no_log: true
"""

RETURN = r"""
secrets:
  description: The secret of each service, by name.
  returned: always
  type: dict
made:
  description: The services whose secret was made by this call.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import telegram


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "services": {"type": "list", "elements": "str", "required": True},
            "given": {"type": "dict", "default": {}, "no_log": True},
            "directory": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    out, made = {}, []
    for name in p["services"]:
        try:
            given = str((p["given"] or {}).get(name) or "")
            secret, changed = telegram.ensure_secret(p["directory"], name, given, module.check_mode)
        except (OSError, ValueError) as exc:
            module.fail_json(msg=f"webhook secret of {name}: {exc}")
        out[name] = secret
        if changed:
            made.append(name)
    module.exit_json(changed=bool(made), secrets=out, made=made)


if __name__ == "__main__":
    main()
