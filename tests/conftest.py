"""Shared by every test: the checkout is the collection fieldservice.deploy.

The link playbooks/collections/ansible_collections/fieldservice/deploy points
at the repository root, so with playbooks/collections on sys.path the plugins'
Python imports as Ansible imports it:
``ansible_collections.fieldservice.deploy.plugins.module_utils.<name>``.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, "playbooks", "collections")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)
