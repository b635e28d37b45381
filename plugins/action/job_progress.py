# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: wait for an async job with a line of progress.

Documented in plugins/modules/job_progress.py. It passes the module the
remote shell's async directory unless the task gives one, as
``async_status``'s action does.
"""

from __future__ import annotations

from ansible.plugins.action import ActionBase
from ansible.utils.vars import merge_hash


class ActionModule(ActionBase):
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        if not args.get("async_dir"):
            args["async_dir"] = self.get_shell_option("async_dir", default="~/.ansible_async")
        args["async_dir"] = self._remote_expand_user(args["async_dir"])
        return merge_hash(result, self._execute_module(module_name="fieldservice.deploy.job_progress",
                                                       module_args=args, task_vars=task_vars))
