#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the deploy lock of a server."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: Take or release the deploy lock of a server
description:
  - Deploy, rollback and restore of one server never run at once. The lock is a JSON file
    created atomically (O_EXCL) that names its holder, so a second run is refused at once with
    who holds the lock and since when.
  - A lock whose holder is gone is stale. It is never broken silently; O(break_stale=true)
    releases it (the playbooks map this to C(-e deploy_lock_break=true)).
  - Whether a holder is gone is for the control node to say, since its processes are there. The
    lookup C(fieldservice.deploy.whoami) answers it, and the caller passes the answer as O(stale).
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The lock file on the server. Its directory is created when missing.
    type: path
    required: true
  state:
    description:
      - C(present) takes the lock, C(absent) releases it (only for the same O(token)).
    type: str
    choices: [present, absent]
    default: present
  token:
    description: Identifies this run; the same token may take the lock again and release it.
    type: str
    required: true
  holder:
    description: Who takes the lock (host, pid, user, playbook), recorded in the lock file.
    type: dict
    default: {}
  stale:
    description: The caller established that the current holder is gone.
    type: bool
    default: false
  break_stale:
    description: Release a stale lock before taking it.
    type: bool
    default: false
  left:
    description:
      - How the server looks now (which release serves, whether a switch is in progress or was
        interrupted), said in the message about a stale lock (what the gone run left behind).
    type: str
    default: ""
attributes:
  check_mode:
    support: full
    description: Reports what would happen without taking or releasing the lock.
  diff_mode:
    support: none
    description: The lock file lives only for the run; RV(holder) says who holds it.
  idempotent:
    support: full
    description: Taking a lock already held with the same token, or releasing a free one, changes nothing.
"""

EXAMPLES = r"""
- name: Describe this run on the control node
  ansible.builtin.set_fact:
    me: "{{ query('fieldservice.deploy.whoami') | first }}"

- name: Take the deploy lock
  fieldservice.deploy.deploy_lock:
    path: /opt/field-service/.deploy.lock
    state: present
    token: "{{ me.host }}-{{ me.pid }}"
    holder: {host: "{{ me.host }}", pid: "{{ me.pid }}", user: "{{ me.user }}", playbook: deploy.yml}
"""

RETURN = r"""
holder:
  description: The holder of the lock (host, pid, user, playbook, since, since_iso, token), or null.
  returned: always
  type: dict
broke:
  description: The stale holder that was released (state=present with break_stale), or null.
  returned: when state=present
  type: dict
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import deploy_lock as lock


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "token": {"type": "str", "required": True, "no_log": False},
            "holder": {"type": "dict", "default": {}},
            "stale": {"type": "bool", "default": False},
            "break_stale": {"type": "bool", "default": False},
            "left": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    current = lock.read_holder(path)
    result = {"changed": False, "holder": current.as_dict() if current else None}
    try:
        if p["state"] == "present":
            directory = os.path.dirname(path)
            if module.check_mode:
                if current and current.token != p["token"] and not (p["stale"] and p["break_stale"]):
                    raise lock.LockError(f"Another run holds the deploy lock: {current.describe()}.")
                result["changed"] = current is None or current.token != p["token"]
                module.exit_json(broke=None, **result)
            os.makedirs(directory, mode=0o755, exist_ok=True)
            h = p["holder"]
            me = lock.Holder(
                host=str(h.get("host", "?")), pid=int(h.get("pid", 0) or 0), user=str(h.get("user", "?")),
                playbook=str(h.get("playbook", "?")), since=time.time(), token=p["token"],
            )
            out = lock.acquire(path, me, p["stale"], p["break_stale"], p["left"])
            new = lock.read_holder(path)
            result.update(
                changed=out["changed"], holder=new.as_dict() if new else None,
                broke=out["broke"].as_dict() if out["broke"] else None,
            )
        elif p["state"] == "absent":
            if current is not None and current.token != p["token"]:
                raise lock.LockError(
                    f"The deploy lock is held by another run ({current.describe()}); not released.")
            if current is not None:
                result["changed"] = True
                if not module.check_mode:
                    lock.release(path, p["token"])
                result["holder"] = None
    except lock.LockError as exc:
        module.fail_json(msg=str(exc), **result)
    except OSError as exc:
        module.fail_json(msg=f"deploy lock {path}: {exc}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
