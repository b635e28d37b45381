"""Lookup plugin: this run of ansible-playbook on the control node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: fs_whoami
short_description: Describe this run of ansible-playbook (host, pid, user) on the control node
description:
  - Returns one dict with the control node's host name, the process id of the C(ansible-playbook)
    run (the outermost of its chain of processes, not a worker that ends with the task) and the
    user running it - what the deploy lock records about its holder.
  - A lookup runs on the control node itself, so no module process is started (the C(whoami)
    state of the C(fs_deploy_lock) module gives the same answer at the cost of a task).
version_added: "0.2.0"
author: field-service-deploy
"""

EXAMPLES = r"""
- name: Describe this run
  ansible.builtin.set_fact:
    me: "{{ query('fs_whoami') | first }}"
"""

RETURN = r"""
_raw:
  description: One dict - host, pid (0 when not found), user.
  type: list
  elements: dict
"""

import getpass
import importlib.util
import os
import socket
import sys

from ansible.plugins.lookup import LookupBase

_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils",
                      "fs_deploy_lock.py")


def _lock_utils():
    """module_utils/fs_deploy_lock.py (the modules' import path is not the controller's)."""
    name = "_fs_deploy_lock_utils"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _UTILS)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look themselves up there
        spec.loader.exec_module(module)
    return sys.modules[name]


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [{
            "host": socket.gethostname(),
            "pid": _lock_utils().playbook_pid(),
            "user": os.environ.get("USER") or getpass.getuser(),
        }]
