#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: read the releases of an app on the server."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: releases_info
short_description: Read the app's releases on the server - the serving one, the previous one, every record
description:
  - Each release is a directory C(<root>/releases/<id>/) with a C(REVISION) file and a
    C(RELEASE.json) record (id, source, image, backup, schema revisions, who, when, outcome).
  - The serving release is read from the C(<root>/current) link; the previous one is the most
    recently activated other release according to the records (never by directory mtime) whose
    deploy did not fail its health check.
  - Also answers whether the server is reachable at all (the deploy's first check runs it).
version_added: "0.3.0"
author: Field Service deploy contributors (@field-service-deploy)
seealso:
  - module: fieldservice.deploy.releases
    description: Unpacks, activates, records and prunes releases.
options:
  root:
    description: The app's root directory on the server. A root that does not exist has no releases.
    type: path
    required: true
extends_documentation_fragment:
  - fieldservice.deploy.common.read_only
"""

EXAMPLES = r"""
- name: Read the releases
  fieldservice.deploy.releases_info:
    root: /opt/field-service
  register: releases

- name: Say which release serves
  ansible.builtin.debug:
    msg: "{{ releases.current or 'nothing deployed yet' }} (previous: {{ releases.previous }})"
"""

RETURN = r"""
current:
  description: Id of the serving release (the target of the current link), or null.
  returned: always
  type: str
  sample: 3f2a9c1d0b7e
previous:
  description: Id of the release activated before the current one, or null.
  returned: always
  type: str
releases:
  description: All releases, newest first, each with its record (C(id), C(path) and the record's keys).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import release_store as store


def main() -> None:
    module = AnsibleModule(argument_spec={"root": {"type": "path", "required": True}},
                           supports_check_mode=True)
    try:
        info = store.info(module.params["root"])
    except OSError as exc:
        module.fail_json(msg=f"cannot read the releases under {module.params['root']}: {exc}")
    module.exit_json(changed=False, **info)


if __name__ == "__main__":
    main()
