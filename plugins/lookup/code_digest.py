# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Lookup plugin: a digest of this collection's own code."""

from __future__ import annotations

DOCUMENTATION = r"""
---
name: code_digest
short_description: SHA-256 of this collection's roles and plugins
description:
  - Returns one string, the SHA-256 over the relative path and the content of every file under
    the collection's C(roles/) and C(plugins/) (byte code caches left out), in path order.
  - The same code gives the same digest wherever the collection is (a checkout, or installed
    with C(ansible-galaxy collection install)); any change of a task, template, module or the
    backup program changes it. The provisioning stamp (role C(fieldservice.deploy.provision))
    is made of it and of the settings provisioning reads.
version_added: "0.3.0"
author: Field Service deploy contributors (@field-service-deploy)
"""

EXAMPLES = r"""
- name: Show which code this is
  ansible.builtin.debug:
    msg: "{{ lookup('fieldservice.deploy.code_digest') }}"
"""

RETURN = r"""
_raw:
  description: One string, the hexadecimal SHA-256.
  type: list
  elements: str
"""

import hashlib
import os

from ansible.plugins.lookup import LookupBase

# plugins/lookup/code_digest.py -> the collection's root
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CACHE: dict[str, str] = {}


def code_digest(root: str = _ROOT) -> str:
    """The digest of ``<root>/roles`` and ``<root>/plugins``."""
    if root in _CACHE:
        return _CACHE[root]
    total = hashlib.sha256()
    for top in ("roles", "plugins"):
        for base, dirs, files in os.walk(os.path.join(root, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith((".pyc", ".pyo")):
                    continue
                path = os.path.join(base, name)
                with open(path, "rb") as fh:
                    content = hashlib.sha256(fh.read()).hexdigest()
                total.update(f"{os.path.relpath(path, root)}\0{content}\n".encode())
    _CACHE[root] = total.hexdigest()
    return _CACHE[root]


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [code_digest()]
