# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by the collection's modules.

They mirror plugins/doc_fragments/common.py (the fragments ``docker`` and
``database``): a module that takes one of these options uses both.
"""

from __future__ import annotations

import copy

from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DEFAULT_DOCKER_HOST

_DOCKER = {
    "docker_host": {"type": "str", "default": DEFAULT_DOCKER_HOST},
}

_DATABASE = {
    "database": {
        "type": "dict",
        "options": {
            "container": {"type": "str", "required": True},
            "user": {"type": "str", "required": True},
            "name": {"type": "str", "required": True},
        },
    },
}


def docker_spec() -> dict:
    """The ``docker_host`` option (a copy: a module may change its own)."""
    return copy.deepcopy(_DOCKER)


def database_spec() -> dict:
    """The ``database`` option with its suboptions (a copy)."""
    return copy.deepcopy(_DATABASE)
