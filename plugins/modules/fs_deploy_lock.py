#!/usr/bin/python
"""Ansible module: the deploy lock of a server."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fs_deploy_lock
short_description: Take, release or inspect the deploy lock of a server
description:
  - Deploy, rollback and restore of one server never run at once. The lock is a JSON file
    created atomically (O_EXCL) that names its holder, so a second run is refused at once with
    who holds the lock and since when.
  - A lock whose holder is gone is stale. It is never broken silently; O(break_stale=true)
    releases it (the playbooks map this to C(-e deploy_lock_break=true)).
  - O(state=whoami) runs on the control node (C(delegate_to=localhost)) and tells the host
    name, the C(ansible-playbook) process id and whether O(probe_pid) still runs there.
version_added: "0.1.0"
author: field-service-deploy
options:
  path:
    description: The lock file on the server. Its directory is created when missing.
    type: path
  state:
    description:
      - C(present) takes the lock, C(absent) releases it (only for the same O(token)),
        C(info) reports the holder, C(whoami) describes the control-node process.
    type: str
    choices: [present, absent, info, whoami]
    default: info
  token:
    description: Identifies this run; the same token may take the lock again and release it.
    type: str
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
  probe_pid:
    description: With O(state=whoami), a process id whose liveness is reported as RV(probe_alive).
    type: int
    default: 0
attributes:
  check_mode:
    support: full
    description: Reports what would happen without taking or releasing the lock.
  diff_mode:
    support: none
  idempotent:
    support: full
    description: Taking a lock already held with the same token, or releasing a free one, changes nothing.
"""

EXAMPLES = r"""
- name: Describe this run on the control node
  fs_deploy_lock:
    state: whoami
  delegate_to: localhost
  register: me

- name: Take the deploy lock
  fs_deploy_lock:
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
host:
  description: Host name of the control node (state=whoami).
  returned: when state=whoami
  type: str
pid:
  description: Process id of ansible-playbook on the control node, 0 if not found (state=whoami).
  returned: when state=whoami
  type: int
user:
  description: User running the playbook (state=whoami).
  returned: when state=whoami
  type: str
probe_alive:
  description: Whether O(probe_pid) runs on the control node (state=whoami).
  returned: when state=whoami
  type: bool
broke:
  description: The stale holder that was released (state=present with break_stale), or null.
  returned: when state=present
  type: dict
"""

import getpass
import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils import fs_deploy_lock as lock
except ImportError:  # pragma: no cover - direct import in unit tests
    import fs_deploy_lock as lock


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path"},
            "state": {"type": "str", "choices": ["present", "absent", "info", "whoami"], "default": "info"},
            "token": {"type": "str", "no_log": False},
            "holder": {"type": "dict", "default": {}},
            "stale": {"type": "bool", "default": False},
            "break_stale": {"type": "bool", "default": False},
            "probe_pid": {"type": "int", "default": 0},
        },
        required_if=[
            ("state", "present", ("path", "token")),
            ("state", "absent", ("path", "token")),
            ("state", "info", ("path",)),
        ],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] == "whoami":
        module.exit_json(
            changed=False, host=socket.gethostname(), pid=lock.playbook_pid(),
            user=os.environ.get("USER") or getpass.getuser(),
            probe_alive=bool(p["probe_pid"]) and lock.pid_alive(p["probe_pid"]), holder=None,
        )
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
            out = lock.acquire(path, me, p["stale"], p["break_stale"])
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
