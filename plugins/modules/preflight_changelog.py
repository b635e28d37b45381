#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: does the new CHANGELOG.md have an entry newer than the serving release's?"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight_changelog
short_description: Compare the newest CHANGELOG entry of a new release with the serving one's
description:
  - Reads the version headings of a Keep-a-Changelog C(CHANGELOG.md) (C(## [1.2.0] - 2026-01-01),
    C(## 1.2.0), C(## [v1.2.0-rc.1]); C(## [Unreleased]) is not a version) and compares the newest
    with the newest heading of O(serving_content) by semantic-version order.
  - RV(ok) is true when the new file's newest version is newer, or, with no O(serving_content)
    (first deploy), when the new file has at least one version entry.
  - Read-only; the module never fails on a missing or stale changelog, it reports it.
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The new release's C(CHANGELOG.md) on the host the module runs on (the control node).
    type: path
    required: true
  serving_content:
    description: Text of the serving release's C(CHANGELOG.md); omit it when nothing is serving.
    type: str
extends_documentation_fragment:
  - fieldservice.deploy.common.read_only
"""

EXAMPLES = r"""
- name: Compare the changelogs
  fieldservice.deploy.preflight_changelog:
    path: /home/deploy/src/field-service/CHANGELOG.md
    serving_content: "{{ serving_changelog.content | b64decode }}"
  delegate_to: localhost
  register: changelog
"""

RETURN = r"""
ok:
  description: Whether the new changelog has a newer entry (or any entry on a first deploy).
  returned: success
  type: bool
  sample: true
newest:
  description: Newest version heading of the new changelog, or null.
  returned: success
  type: str
  sample: 2.0.0
serving_newest:
  description: Newest version heading of the serving changelog, or null.
  returned: success
  type: str
  sample: 1.0.0
reason:
  description: What was found, in a sentence.
  returned: success
  type: str
  sample: 2.0.0 is newer than the serving 1.0.0
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import preflight


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "serving_content": {"type": "str"},
        },
        supports_check_mode=True,
    )
    new_text = None
    try:
        with open(module.params["path"], encoding="utf-8", errors="replace") as fh:
            new_text = fh.read()
    except FileNotFoundError:
        pass
    except OSError as err:
        module.fail_json(msg=f"preflight_changelog: {err}")
    result = preflight.check_changelog(new_text, module.params["serving_content"])
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
