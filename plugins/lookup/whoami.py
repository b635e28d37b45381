# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup plugin: this run of ansible-playbook on the control node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: whoami
short_description: Describe this run of ansible-playbook (host, pid, user) on the control node
description:
  - Returns one dict with the control node's host name, the process id of the C(ansible-playbook)
    run (the outermost of its chain of processes, not a worker that ends with the task) and the
    user running it - what the deploy lock records about its holder.
  - With O(holder) (the holder of a deploy lock), also whether that holder is gone, as
    C(holder_stale) - its process no longer runs on this same control node, or the lock is older
    than O(max_age) seconds. Only the control node can see its own processes, so the deploy lock
    asks here.
  - A lookup runs on the control node itself, so no module process is started.
version_added: "0.2.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  holder:
    description:
      - A deploy lock's holder as the M(fieldservice.deploy.deploy_lock) module returns it (host, pid,
        since).
    type: dict
  max_age:
    description:
      - With O(holder), a lock older than this many seconds is stale even when it was taken on another
        control node (0 - never by age).
    type: int
    default: 0
"""

EXAMPLES = r"""
- name: Describe this run
  ansible.builtin.set_fact:
    me: "{{ query('fieldservice.deploy.whoami') | first }}"

- name: Is the run that holds the lock gone?
  ansible.builtin.debug:
    msg: "{{ (query('fieldservice.deploy.whoami', holder=lock.holder, max_age=7200) | first).holder_stale }}"
"""

RETURN = r"""
_raw:
  description: One dict - host, pid (0 when not found), user, and holder_stale when O(holder) is given.
  type: list
  elements: dict
"""

import getpass
import os
import socket
import time

from ansible.plugins.lookup import LookupBase

from ansible_collections.fieldservice.deploy.plugins.module_utils.deploy_lock import (
    Holder,
    is_stale,
    pid_alive,
    playbook_pid,
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        me = {
            "host": socket.gethostname(),
            "pid": playbook_pid(),
            "user": os.environ.get("USER") or getpass.getuser(),
        }
        holder = self.get_option("holder")
        if holder:
            me["holder_stale"] = is_stale(Holder.from_dict(holder), me["host"], pid_alive,
                                          int(self.get_option("max_age") or 0), time.time())
        return [me]
