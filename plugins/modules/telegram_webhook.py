#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: register a webhook service with Telegram when it is missing or differs."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: telegram_webhook
short_description: Register a bot's webhook with Telegram (setWebhook) when it is missing or differs
description:
  - >-
    Asks Telegram (C(getWebhookInfo)) what the bot's webhook is and calls C(setWebhook) with
    O(url), O(secret), O(allowed_updates) and the O(certificate) only when it is missing, points
    elsewhere, or was registered with another secret, update types or certificate (a fingerprint
    of the last registration is kept in C(<directory>/<service>.registered), 0600: Telegram never
    tells the secret back). Pending updates are never dropped.
  - >-
    The bot token is part of every Bot API URL; it never appears in an answer or an error.
version_added: "0.6.0"
author: Field Service deploy contributors (@field-service-deploy)
seealso:
  - module: fieldservice.deploy.webhook_secret
    description: The secret registered here.
options:
  api_base:
    description: Base URL of the Bot API as this host reaches it (C(https://api.telegram.org)).
    type: str
    required: true
  token:
    description: The bot's token.
    type: str
    required: true
  service:
    description: The service's name (names the fingerprint file and the messages).
    type: str
    required: true
  url:
    description: The public HTTPS URL Telegram posts the updates to.
    type: str
    required: true
  secret:
    description: The C(secret_token) Telegram sends back in C(X-Telegram-Bot-Api-Secret-Token).
    type: str
    required: true
  allowed_updates:
    description: The update types to receive; not sent when not given (Telegram keeps what it had).
    type: list
    elements: str
  max_connections:
    description: Most simultaneous deliveries Telegram makes (1-100); not sent when not given.
    type: int
  certificate:
    description: A PEM certificate on this host to upload with the registration (a self-signed one).
    type: path
  directory:
    description: Folder of the fingerprint file.
    type: path
    required: true
  timeout:
    description: Seconds each Bot API call may take.
    type: float
    default: 10
attributes:
  check_mode:
    support: full
    description: Says whether it would register, and why, without calling C(setWebhook).
  diff_mode:
    support: none
    description: The reasons are in RV(reasons).
  idempotent:
    support: full
    description: Registers only when something differs.
"""

EXAMPLES = r"""
- name: Register the admin bot's webhook
  fieldservice.deploy.telegram_webhook:
    api_base: https://api.telegram.org
    token: "{{ vault_admin_bot_token }}"
    service: admin_bot
    url: https://bot.example.com/admin_bot/webhook
    secret: "{{ secrets.secrets.admin_bot }}"
    directory: /opt/field-service/shared/webhooks
  no_log: true
"""

RETURN = r"""
reasons:
  description: Why it was (or, in check mode, would be) registered; empty when nothing differed.
  returned: always
  type: list
  elements: str
url:
  description: The URL registered.
  returned: always
  type: str
pending_update_count:
  description: Updates Telegram holds for the bot, before the registration.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import telegram


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "api_base": {"type": "str", "required": True},
            "token": {"type": "str", "required": True, "no_log": True},
            "service": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
            "secret": {"type": "str", "required": True, "no_log": True},
            "allowed_updates": {"type": "list", "elements": "str"},
            "max_connections": {"type": "int"},
            "certificate": {"type": "path"},
            "directory": {"type": "path", "required": True},
            "timeout": {"type": "float", "default": 10},
        },
        supports_check_mode=True,
    )
    p = module.params
    cert = None
    if p["certificate"]:
        try:
            with open(p["certificate"], "rb") as fh:
                cert = fh.read()
        except OSError as exc:
            module.fail_json(msg=f"{p['service']}: cannot read the certificate {p['certificate']}: "
                                 f"{exc.strerror}")
    try:
        result = telegram.ensure_webhook(
            p["api_base"], p["token"], p["service"], p["url"], p["secret"], p["directory"],
            allowed_updates=p["allowed_updates"], certificate=cert, max_connections=p["max_connections"],
            check_mode=module.check_mode,
            api=lambda base, token, method, params=None, files=None: telegram.call(
                base, token, method, params, files, timeout=p["timeout"]),
        )
    except telegram.TelegramError as exc:
        module.fail_json(msg=f"{p['service']}: registering its webhook with Telegram failed: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"{p['service']}: cannot keep the registration in {p['directory']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
