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
  - With O(app), the release that really serves is worked out from the record and the running
    containers (their C(fs.release) labels) together, and from the journal a switch keeps while it
    runs (C(<root>/.switch.json)); RV(serving) says whether they agree and, when not, what to do.
    Every playbook that needs "the serving release" goes by it (the role C(code_sync), C(read)).
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
  app:
    description:
      - The app's name (the containers' C(fs.app) label). When set, the running service containers
        are read too and RV(serving) compares them with the record. Without it, or when the engine
        does not answer (not installed yet), the record is all there is.
    type: str
  services:
    description: The services every release runs (to tell a complete release from a partial one).
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - fieldservice.deploy.common.docker
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
  description:
    - Id of the release activated before the serving one, or null. When the containers of a release
      the record does not name serve (RV(serving.state=reconcile)), it is the recorded one, the
      release that served before.
  returned: always
  type: str
serving:
  description: The record and the running containers compared.
  returned: always
  type: dict
  contains:
    state:
      description:
        - C(agree) (the containers that run are of the recorded release, or nothing was deployed, or
          the engine did not answer), C(stopped) (no container of the app runs), C(reconcile) (all the
          containers that run are of one other release, complete and healthy, so it serves),
          C(switching) (a switch runs on the server now), C(conflict) (anything else).
      type: str
      sample: agree
    serving:
      description: The release that takes the traffic as far as can be told.
      type: str
    recorded:
      description: The release the C(current) link names.
      type: str
    running:
      description: Services of the running containers per release.
      type: dict
      sample: {3f2a9c1d0b7e: [admin_bot, master_bot]}
    problem:
      description: What disagrees, in words naming both sides (empty when they agree).
      type: str
    fix:
      description: The command that puts it right (C(conflict), C(switching)).
      type: str
    switch:
      description: The journal of a switch (running, or left by an interrupted one), or null.
      type: dict
releases:
  description: All releases, newest first, each with its record (C(id), C(path) and the record's keys).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import release_store as store
from ansible_collections.fieldservice.deploy.plugins.module_utils.argspec import docker_spec
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerClient, DockerError


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "app": {"type": "str"},
            "services": {"type": "list", "elements": "str", "default": []},
            **docker_spec(),
        },
        supports_check_mode=True,
    )
    p = module.params
    containers = None
    if p["app"]:
        try:
            containers = DockerClient(docker_host=p["docker_host"]).list_containers({"fs.app": p["app"]})
        except (DockerError, OSError):
            containers = None  # no engine yet (before the first provisioning): the record is all there is
    try:
        info = store.serving_info(p["root"], containers, p["services"])
    except OSError as exc:
        module.fail_json(msg=f"cannot read the releases under {p['root']}: {exc}")
    module.exit_json(changed=False, **info)


if __name__ == "__main__":
    main()
