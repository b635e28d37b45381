#!/usr/bin/python
"""Ansible module: free disk space for the needs of a deploy, per filesystem."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fs_preflight_disk
short_description: Check the free disk space the deploy needs, per filesystem
description:
  - Each need names a path and the megabytes it needs; a path that does not exist yet (a first
    deploy) is measured on its closest existing parent.
  - Needs of paths on the same filesystem are added up, and each sum is compared with the space
    free for unprivileged users there (C(statvfs) C(f_bavail), as C(df) reports it).
  - Read-only; the module reports, the caller decides (RV(ok)).
version_added: "0.1.0"
author: field-service-deploy
options:
  needs:
    description: What the deploy needs.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Label used in the report.
        type: str
        required: true
      path:
        description: A directory on the host.
        type: path
        required: true
      need_mb:
        description: Free megabytes needed for it.
        type: int
        required: true
attributes:
  check_mode:
    support: full
    description: Reads only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything.
"""

EXAMPLES = r"""
- name: Check the free space
  fs_preflight_disk:
    needs:
      - {name: app_root, path: /opt/field-service, need_mb: 512}
      - {name: backups, path: /opt/backups, need_mb: 1024}
      - {name: Docker data, path: /var/lib/docker, need_mb: 2048}
  register: disk
"""

RETURN = r"""
ok:
  description: Whether every filesystem has the free space its needs add up to.
  returned: success
  type: bool
  sample: true
filesystems:
  description: One entry per filesystem (path measured, free_mb, size_mb, need_mb, holds, ok).
  returned: success
  type: list
  elements: dict
short:
  description: A sentence per filesystem short of space.
  returned: success
  type: list
  elements: str
summary:
  description: Free and needed megabytes per filesystem, in a line.
  returned: success
  type: str
  sample: "/: 79083 MB free, 2816 MB needed"
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils import fs_preflight
except ImportError:  # pragma: no cover - direct import in unit tests
    import fs_preflight


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "needs": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "name": {"type": "str", "required": True},
                    "path": {"type": "path", "required": True},
                    "need_mb": {"type": "int", "required": True},
                },
            },
        },
        supports_check_mode=True,
    )
    try:
        result = fs_preflight.check_disk(module.params["needs"])
    except OSError as err:
        module.fail_json(msg=f"fs_preflight_disk: {err}")
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
