# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: the migrations pre-deploy check, on the control node.

Documented in plugins/modules/preflight_migrations.py; the logic is
plugins/plugin_utils/migrations_check.py.
"""

from __future__ import annotations

import os

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import migrations_check
from ansible_collections.fieldservice.deploy.plugins.plugin_utils.control_action import ControlNodeAction

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "command": {"type": "list", "elements": "str", "required": True},
    "from_revisions": {"type": "list", "elements": "str", "default": []},
    "check_heads": {"type": "bool", "default": True},
    "check_upgrade": {"type": "bool", "default": True},
    "database": {"type": "str", "choices": ["auto", "local", "docker", "none"], "default": "auto"},
    "image": {"type": "str", "default": "postgres:15"},
    "name_prefix": {"type": "str", "default": "fs"},
    "url_var": {"type": "str", "default": "DATABASE_URL"},
    "pg_bin_dirs": {"type": "list", "elements": "path", "default": []},
    "timeout": {"type": "int", "default": 300},
    "env": {"type": "dict", "default": {}},
    "lint": {"type": "bool", "default": False},
    "lint_locks": {"type": "str", "choices": ["refuse", "warn"], "default": "refuse"},
    "small_table_bytes": {"type": "int", "default": 10485760},
    "table_sizes": {"type": "dict", "default": {}},
    "squawk": {"type": "str", "default": ""},
    "pg_version": {"type": "str", "default": ""},
    "dump_schemas": {"type": "bool", "default": False},
}


class ActionModule(ControlNodeAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, params: dict) -> dict:
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in params["env"].items()})
        return migrations_check.run_check(params, env)
