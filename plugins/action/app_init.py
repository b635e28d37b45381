# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: write what deploying an app needs, on the control node.

Documented in plugins/modules/app_init.py; the logic is
plugins/plugin_utils/app_init.py.
"""

from __future__ import annotations

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import app_init
from ansible_collections.fieldservice.deploy.plugins.plugin_utils.control_action import ControlNodeAction

ARGUMENT_SPEC = {
    "app_dir": {"type": "path", "required": True},
}


class ActionModule(ControlNodeAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, params: dict) -> dict:
        return app_init.run(params, check_mode=bool(self._task.check_mode))
