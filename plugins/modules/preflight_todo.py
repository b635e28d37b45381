#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: find critical TODO markers in the app's source (pre-deploy check)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight_todo
short_description: Find critical TODO markers in the app's source
description:
  - Reads every text file of a source tree, skipping the paths that match O(exclude) (as
    C(code_sync_exclude) does for the upload), binary files, symlinks and files over 2 MB, and
    lists each line that matches O(pattern) as C(file:line text).
  - Read-only; the pre-deploy checks (role C(preflight)) fail the deploy when O(pattern) matches.
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The source tree, on the host the module runs on (the control node).
    type: path
    required: true
  pattern:
    description:
      - Python regular expression searched in each line. The default matches C(TODO(critical)),
        C(FIXME(critical)) and C(TODO:critical) (any spaces after the colon), in any case.
    type: str
    default: '(?i)\b(?:TODO|FIXME)(?:\(critical\)|:\s*critical\b)'
  exclude:
    description: fnmatch patterns of paths not read, matched on the relative path and on each component.
    type: list
    elements: str
    default: []
  max_listed:
    description: Hits listed in RV(lines); the rest is counted.
    type: int
    default: 20
extends_documentation_fragment:
  - fieldservice.deploy.common.read_only
"""

EXAMPLES = r"""
- name: Find critical TODO markers
  fieldservice.deploy.preflight_todo:
    path: /home/deploy/src/field-service
    exclude: [.git, __pycache__, "*.md"]
  delegate_to: localhost
  register: todo

- name: Stop on a marker
  ansible.builtin.fail:
    msg: "{{ todo.lines | join('; ') }}"
  when: todo.count > 0
"""

RETURN = r"""
count:
  description: Number of matching lines.
  returned: success
  type: int
  sample: 1
hits:
  description: The matches (up to O(max_listed)), each with path, line and text.
  returned: success
  type: list
  elements: dict
  sample: [{path: field_service/db.py, line: 12, text: "# TODO(critical): close the pool"}]
lines:
  description: The matches as C(file:line text), capped at O(max_listed) plus a count of the rest.
  returned: success
  type: list
  elements: str
  sample: ["field_service/db.py:12: # TODO(critical): close the pool"]
files_scanned:
  description: Number of text files read.
  returned: success
  type: int
  sample: 42
"""

import re

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import preflight, source


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "pattern": {"type": "str", "default": preflight.DEFAULT_TODO_PATTERN},
            "exclude": {"type": "list", "elements": "str", "default": []},
            "max_listed": {"type": "int", "default": 20},
        },
        supports_check_mode=True,
    )
    params = module.params
    try:
        re.compile(params["pattern"])
    except re.error as err:
        module.fail_json(msg=f"preflight_todo: pattern {params['pattern']!r} is not a valid regex: {err}")
    try:
        files = source.walk_source(params["path"], params["exclude"])
        hits, scanned = preflight.scan_markers(params["path"], files, params["pattern"])
    except (source.SourceError, OSError) as err:
        module.fail_json(msg=f"preflight_todo: {err}")
    limit = max(params["max_listed"], 0)
    module.exit_json(changed=False, count=len(hits), hits=hits[:limit],
                     lines=preflight.format_hits(hits, limit), files_scanned=scanned)


if __name__ == "__main__":
    main()
