#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the server's audit trail (append a line, or read the last ones)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: audit
short_description: Append to the server's audit trail of the tool's actions, or read its last lines
description:
  - Every action of the tool on a server (deploy, rollback, restore, a backup by hand, a cleanup,
    maintenance on or off, a deploy lock broken) appends one line to an audit log on the server
    (default C(<app_root>/audit.log)) - the time (UTC), who (C(user@host) of the control node),
    what, the release, the outcome, the seconds it took and a short detail - as a JSON object.
  - The file is only ever appended to, one C(write) of one line with C(O_APPEND), so the lines of
    runs at once never mix; the tool never rewrites or truncates it. It is created C(0640); its
    folder is not created - when it is missing (nothing of the app is on the server yet, as when
    a first deploy is refused by its checks) nothing is written and RV(written) is false. To have
    the kernel refuse anything but appends, C(chattr +a) it.
  - O(state=read) returns the last O(lines) entries, oldest first (C(playbooks/audit.yml)).
version_added: "0.4.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The audit log on the server.
    type: path
    required: true
  state:
    description: C(append) one line, or C(read) the last O(lines).
    type: str
    choices: [append, read]
    default: append
  action:
    description: What was done (C(deploy), C(rollback), C(restore), C(backup), C(cleanup), C(lock_break)...).
    type: str
  outcome:
    description: How it ended (C(success), C(failure), C(rolled_back), C(refused)...).
    type: str
  who:
    description: Who did it, C(user@host) of the control node.
    type: str
    default: ""
  release:
    description: The release it concerned.
    type: str
    default: ""
  seconds:
    description: How long it took.
    type: float
  detail:
    description: A short detail (the reason of a failure); made one line, at most 2000 characters.
    type: str
    default: ""
  lines:
    description: With O(state=read), how many of the last entries.
    type: int
    default: 20
attributes:
  check_mode:
    support: full
    description: With O(state=append) nothing is written (RV(written) says what would be).
  diff_mode:
    support: none
    description: The line appended is returned as RV(entry).
  idempotent:
    support: none
    description: Every append is a new line, as every action is a new event.
"""

EXAMPLES = r"""
- name: Note the deploy in the audit trail
  fieldservice.deploy.audit:
    path: /opt/field-service/audit.log
    action: deploy
    outcome: success
    who: ada@laptop
    release: 3f2a9c1b7d4e
    seconds: 41.2

- name: Read the last 20 lines
  fieldservice.deploy.audit:
    path: /opt/field-service/audit.log
    state: read
  register: audit
"""

RETURN = r"""
written:
  description: Whether the line was appended (false in check mode and when the folder is missing).
  returned: when O(state=append)
  type: bool
entry:
  description: The line appended (O(state=append)).
  returned: when O(state=append)
  type: dict
  sample: {"time": "2026-12-07T12:00:41Z", "who": "ada@laptop", "action": "deploy",
           "release": "3f2a9c1b7d4e", "outcome": "success", "seconds": 41.2, "detail": ""}
entries:
  description: The last entries, oldest first (a line that is not JSON as a dict of C(unreadable), its text).
  returned: when O(state=read)
  type: list
  elements: dict
lines:
  description: The same entries as one line of text each.
  returned: when O(state=read)
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import audit


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["append", "read"], "default": "append"},
            "action": {"type": "str"},
            "outcome": {"type": "str"},
            "who": {"type": "str", "default": ""},
            "release": {"type": "str", "default": ""},
            "seconds": {"type": "float"},
            "detail": {"type": "str", "default": ""},
            "lines": {"type": "int", "default": 20},
        },
        required_if=[("state", "append", ("action", "outcome"))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["state"] == "read":
            entries = audit.tail(p["path"], p["lines"])
            module.exit_json(changed=False, entries=entries, lines=[audit.line_text(e) for e in entries])
        record = audit.entry(p["action"], p["outcome"], who=p["who"], release=p["release"],
                             seconds=p["seconds"], detail=p["detail"])
        folder = os.path.dirname(os.path.abspath(p["path"]))
        if module.check_mode:
            written = False
        else:
            written = audit.append(p["path"], record)
    except OSError as exc:
        module.fail_json(msg=f"audit log {p['path']}: {exc.strerror or exc}")
    module.exit_json(changed=written or (module.check_mode and os.path.isdir(folder)), written=written,
                     entry=record)


if __name__ == "__main__":
    main()
