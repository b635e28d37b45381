# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shape of the collection's actions that run on the control node: the
task's arguments checked against ``ARGUMENT_SPEC``, then ``act(params)``,
whose dict is the result. No connection, no file transfer."""

from __future__ import annotations

from ansible.plugins.action import ActionBase


class ControlNodeAction(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    ARGUMENT_SPEC: dict = {}

    def act(self, params: dict) -> dict:
        raise NotImplementedError

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        dummy, params = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC)
        result.update(self.act(params))
        return result
