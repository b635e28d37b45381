#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: free disk space for the needs of a deploy, per filesystem."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight_disk
short_description: Check the free disk space the deploy needs, per filesystem
description:
  - Each need names a path and the megabytes it needs; a path that does not exist yet (a first
    deploy) is measured on its closest existing parent.
  - Needs of paths on the same filesystem are added up, and each sum is compared with the space
    free for unprivileged users there (C(statvfs) C(f_bavail), as C(df) reports it).
  - A need's path may be C(@docker_root) - Docker's data root as the engine reports it (or
    O(docker_root_fallback)).
  - With O(database), the size of the app's database is read (psql in its container) and a need
    with O(needs[].db_size_times) gets that many times the size added (room for a backup of it).
  - Read-only; the module reports, the caller decides (RV(ok)).
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
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
        description: A directory on the host (C(~) is expanded), or C(@docker_root).
        type: path
        required: true
      need_mb:
        description: Free megabytes needed for it.
        type: int
        required: true
      db_size_times:
        description: Add this many times the database's size (O(database)) to O(needs[].need_mb).
        type: int
        default: 0
  docker_root_fallback:
    description: Path measured for C(@docker_root) when the engine does not say.
    type: path
    default: /var/lib/docker
extends_documentation_fragment:
  - fieldservice.deploy.common.database
  - fieldservice.deploy.common.docker
  - fieldservice.deploy.common.read_only
"""

EXAMPLES = r"""
- name: Check the free space
  fieldservice.deploy.preflight_disk:
    needs:
      - {name: app_root, path: /opt/field-service, need_mb: 512}
      - {name: backups, path: /opt/backups, need_mb: 1024}
      - {name: Docker data, path: "@docker_root", need_mb: 2048}
      - {name: backups, path: /opt/backups, need_mb: 256, db_size_times: 2}
    database: {container: field_service_db, user: field_service, name: field_service}
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
db_mb:
  description: The database's size in MB (0 without O(database), or when it cannot be read).
  returned: success
  type: int
docker_root:
  description: The path measured for C(@docker_root).
  returned: success
  type: str
summary:
  description: Free and needed megabytes per filesystem, in a line.
  returned: success
  type: str
  sample: "/: 79083 MB free, 2816 MB needed"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import preflight
from ansible_collections.fieldservice.deploy.plugins.module_utils.argspec import database_spec, docker_spec
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerClient


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
                    "db_size_times": {"type": "int", "default": 0},
                },
            },
            **database_spec(),
            "docker_root_fallback": {"type": "path", "default": "/var/lib/docker"},
            **docker_spec(),
        },
        supports_check_mode=True,
    )
    p = module.params
    client = DockerClient(docker_host=p["docker_host"])
    needs = p["needs"]
    root = p["docker_root_fallback"]
    if any(n["path"] == "@docker_root" for n in needs):
        root = preflight.docker_root(client, p["docker_root_fallback"])
    db = p["database"]
    db_mb = preflight.database_size_mb(client, db["container"], db["user"], db["name"]) if db else 0
    needs = [{"name": n["name"],
              "path": root if n["path"] == "@docker_root" else n["path"],
              "need_mb": n["need_mb"] + n["db_size_times"] * db_mb} for n in needs]
    try:
        result = preflight.check_disk(needs)
    except OSError as err:
        module.fail_json(msg=f"preflight_disk: {err}")
    module.exit_json(changed=False, db_mb=db_mb, docker_root=root, **result)


if __name__ == "__main__":
    main()
