#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the action plugin fieldservice.deploy.notify
(plugins/action/notify.py): it runs on the control node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: notify
short_description: Tell the team's channels (Telegram, Slack-style webhooks, a JSON webhook) what happened
description:
  - Sends one message for one event (a deploy started, succeeded, failed or was rolled back
    automatically; a rollback or a restore done or failed; a backup by hand failed) to every
    channel of O(channels) that wants it, from the control node. The message has the app, the
    server, the release (and the one before), who ran it, how long it took, the reason of a
    failure and the last O(log_lines) lines of this run's deploy log.
  - The scheduled backups, their verify and the dead-man check send theirs from the server
    with the same code (the backup program's C(notify.py)); see docs/operations.md.
  - A message that cannot be delivered is retried (network errors, HTTP 429 and 5xx; waiting
    1, 2, 4... seconds, or what a 429 asks) and then reported in RV(results); the task never
    fails for it. A channel that can never work as written (an unknown type, no token, no URL)
    fails the task with the setting to change.
  - The channels hold secrets (a bot token, a webhook URL); run the task with C(no_log) and read
    RV(results), which name each channel by its type and host only.
version_added: "0.4.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  channels:
    description:
      - The channels, each a dict with C(type) C(telegram) (C(bot_token), C(chat_id), optional
        C(api_base), default C(https://api.telegram.org)), C(slack) (C(url) of an incoming
        webhook of Slack, Mattermost or Rocket.Chat) or C(webhook) (C(url), optional C(headers);
        the event as JSON with its C(text)); each may list the C(events) it wants.
      - Empty - nothing is sent.
    type: list
    elements: raw
    default: []
  events:
    description: The events sent to a channel that does not list its own.
    type: list
    elements: str
    default: [backup_failure, backup_missing, deploy_failure, deploy_rolled_back, deploy_start,
              deploy_success, restore_failure, restore_success, rollback_failure, rollback_success,
              verify_failure]
  event:
    description:
      - The event - one of C(deploy_start), C(deploy_success), C(deploy_failure),
        C(deploy_rolled_back), C(rollback_success), C(rollback_failure), C(restore_success),
        C(restore_failure), C(backup_success), C(backup_failure), C(backup_missing),
        C(verify_success), C(verify_failure).
      - Empty - only O(channels) and O(events) are checked (at the start of a run, so that a
        wrong setting stops it before anything changes).
    type: str
    default: ""
  app:
    description: The app's name.
    type: str
    default: ""
  server:
    description: The server (its inventory name).
    type: str
    default: ""
  release:
    description: The release concerned.
    type: str
    default: ""
  previous:
    description: The release that served before.
    type: str
    default: ""
  who:
    description: Who ran it (C(user@host) of the control node).
    type: str
    default: ""
  seconds:
    description: How long it took.
    type: float
  reason:
    description: Why it failed.
    type: str
    default: ""
  log_lines:
    description: How many last lines of this run's deploy log the message carries (not for a start).
    type: int
    default: 10
  retries:
    description: How many more times an undelivered message is tried.
    type: int
    default: 3
  timeout:
    description: Seconds for each attempt.
    type: float
    default: 10
attributes:
  action:
    support: full
    description: Runs on the control node, as an action plugin.
  async:
    support: none
    description: Each attempt has its own time limit.
  check_mode:
    support: none
    description: A message is sent in check mode too (a check-mode deploy is an event as well).
  diff_mode:
    support: none
    description: Nothing on a host changes.
  platform:
    support: full
    platforms: posix
    description: The control node.
"""

EXAMPLES = r"""
- name: Tell the team the deploy failed
  fieldservice.deploy.notify:
    channels:
      - type: telegram
        bot_token: "{{ vault_notify_bot_token }}"
        chat_id: "-1001234567890"
      - type: slack
        url: "{{ vault_slack_webhook_url }}"
    event: deploy_failure
    app: field_service
    server: "{{ inventory_hostname }}"
    release: 3f2a9c1b7d4e
    previous: 9b1c2d3e4f5a
    who: ada@laptop
    seconds: 41.2
    reason: "Health check: FAILED (admin_bot: heartbeat stale)"
  no_log: true
  register: notified
"""

RETURN = r"""
results:
  description: Per channel that wanted the event - C(channel) (type and host), C(ok), C(attempts), C(error).
  returned: always
  type: list
  elements: dict
  sample: [{"channel": "telegram (api.telegram.org)", "ok": true, "attempts": 1, "error": ""}]
sent:
  description: How many channels got the message.
  returned: always
  type: int
undelivered:
  description: How many channels did not, after the retries.
  returned: always
  type: int
channels:
  description: How many channels are configured.
  returned: always
  type: int
config_error:
  description: Why a channel can never work as written (the task fails with it as C(msg) too).
  returned: when a setting is wrong
  type: str
summary:
  description: One line for the deploy log - each channel sent, or not delivered and why.
  returned: when a message was sent to a channel
  type: str
  sample: "Notifications (deploy_failure): telegram (api.telegram.org) sent"
"""
