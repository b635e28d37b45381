# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: the app's own Python environment, on the control node.

Documented in plugins/modules/app_env.py; the logic is
plugins/plugin_utils/app_env.py.
"""

from __future__ import annotations

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import app_env
from ansible_collections.fieldservice.deploy.plugins.plugin_utils.control_action import ControlNodeAction

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "python": {"type": "str", "default": "auto"},
    "venv_dirs": {"type": "list", "elements": "str", "default": [".venv"]},
    "requirements": {"type": "list", "elements": "str", "default": ["requirements.txt"]},
    "extra_packages": {"type": "list", "elements": "str", "default": ["pytest"]},
    "base_python": {"type": "str", "default": "python3"},
    "pip_args": {"type": "list", "elements": "str", "default": []},
    "cache_dir": {"type": "path", "default": "~/.cache/fieldservice-deploy/app-venvs"},
    "timeout": {"type": "int", "default": 900},
}


class ActionModule(ControlNodeAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, params: dict) -> dict:
        return app_env.run(params)
