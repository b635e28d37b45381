# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: write what deploying an app needs, on the control node.

Documented in plugins/modules/app_init.py; the logic is
plugins/plugin_utils/app_init.py.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import app_init

ARGUMENT_SPEC = {
    "app_dir": {"type": "path", "required": True},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, params = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        result.update(app_init.run(params, check_mode=bool(self._task.check_mode)))
        return result
