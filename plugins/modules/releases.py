#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: unpack, activate, record and prune the releases of an app on the server."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: releases
short_description: Unpack, activate, record and prune the app's releases on the server
description:
  - Each release is a directory C(<root>/releases/<id>/) with a C(REVISION) file and a
    C(RELEASE.json) record (id, source, image, backup, schema revisions, who, when, outcome).
  - The serving release is read from the C(<root>/current) link; the previous one is the most
    recently activated other release according to the records, never by directory mtime.
  - C(state=prune) deletes the oldest releases so that at most O(keep) remain; the current and
    the previous release are never deleted.
  - C(state=unpack) puts an uploaded source archive in place as C(<root>/releases/<id>/), through a
    C(<id>.partial) directory renamed only when it is complete (with its C(REVISION) file), and
    removes the archive; a release already there is left as it is.
  - C(state=activate) points C(<root>/current) at the release atomically (a new link renamed over
    the old one, so C(current) is never missing).
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
seealso:
  - module: fieldservice.deploy.releases_info
    description: Reads the releases, the serving and the previous one.
options:
  root:
    description: The app's root directory on the server.
    type: path
    required: true
  state:
    description:
      - C(record) merges O(data) into the record of O(release_id).
      - C(prune) deletes old releases beyond O(keep).
      - C(unpack) unpacks O(archive) as release O(release_id).
      - C(activate) switches the C(current) link to O(release_id).
    type: str
    choices: [record, prune, unpack, activate]
    required: true
  release_id:
    description: The release to record, unpack or activate.
    type: str
  archive:
    description: The uploaded source archive (tar, optionally gzipped) on the server (O(state=unpack)).
    type: path
  revision:
    description: Text of the release's C(REVISION) file (O(state=unpack)).
    type: str
    default: ""
  data:
    description:
      - Keys to set in the release record; null values are ignored.
      - With O(state=activate), merged into the record of the release made current, in the same run
        right after the link is switched (its activation time, what it replaced, who deployed it).
    type: dict
    default: {}
  keep:
    description: Releases kept by O(state=prune), the current and previous always among them.
    type: int
    default: 5
  protect:
    description:
      - Releases O(state=prune) never deletes, besides the current and the previous one (those whose
        containers run).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Reports what would be recorded or deleted without writing.
  diff_mode:
    support: full
    description: Shows the record before and after, or the releases before and after a prune.
  idempotent:
    support: full
    description: Recording the same data or pruning an already pruned tree changes nothing.
"""

EXAMPLES = r"""
- name: Record the outcome of a deploy
  fieldservice.deploy.releases:
    root: /opt/field-service
    state: record
    release_id: 3f2a9c1d0b7e
    data:
      outcome: success
      activated_at: "2025-10-10T15:33:15Z"

- name: Keep the last five releases
  fieldservice.deploy.releases:
    root: /opt/field-service
    state: prune
    keep: 5

- name: Unpack an uploaded release
  fieldservice.deploy.releases:
    root: /opt/field-service
    state: unpack
    release_id: 3f2a9c1d0b7e
    archive: /opt/field-service/releases/.3f2a9c1d0b7e.tar.gz
    revision: "3f2a9c1d0b7e"

- name: Serve it from the current link, and record when
  fieldservice.deploy.releases:
    root: /opt/field-service
    state: activate
    release_id: 3f2a9c1d0b7e
    data:
      activated_at: "2025-10-10T15:33:15Z"
"""

RETURN = r"""
current:
  description: Id of the serving release (the target of the current link), or null.
  returned: always
  type: str
previous:
  description: Id of the release activated before the current one, or null.
  returned: always
  type: str
releases:
  description: All releases, newest first, each with its record.
  returned: always
  type: list
  elements: dict
record:
  description: The record after the change.
  returned: when state=record, or state=activate with data
  type: dict
removed:
  description: Ids of the releases deleted (or that would be, in check mode).
  returned: when state=prune
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import release_store as store


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["record", "prune", "unpack", "activate"],
                      "required": True},
            "archive": {"type": "path"},
            "revision": {"type": "str", "default": ""},
            "release_id": {"type": "str"},
            "data": {"type": "dict", "default": {}},
            "keep": {"type": "int", "default": 5},
            "protect": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[("state", "record", ("release_id",)), ("state", "unpack", ("release_id", "archive")),
                     ("state", "activate", ("release_id",))],
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False}
    try:
        if p["state"] == "record":
            before, after = store.merged_record(p["root"], p["release_id"], p["data"])
            result["record"] = after
            if before != after:
                result["changed"] = True
                result["diff"] = {"before": before, "after": after}
                if not module.check_mode:
                    store.write_record(p["root"], p["release_id"], after)
        elif p["state"] == "unpack":
            result["changed"] = store.unpack(p["root"], p["release_id"], p["archive"], p["revision"],
                                             check=module.check_mode)
        elif p["state"] == "activate":
            before = store.current_id(p["root"])
            result["changed"] = store.activate(p["root"], p["release_id"], check=module.check_mode)
            if result["changed"]:
                result["diff"] = {"before": f"current -> {before}\n",
                                  "after": f"current -> {p['release_id']}\n"}
            if p["data"]:
                rec_before, rec_after = store.merged_record(p["root"], p["release_id"], p["data"])
                result["record"] = rec_after
                if rec_before != rec_after:
                    result["changed"] = True
                    if not module.check_mode:
                        store.write_record(p["root"], p["release_id"], rec_after)
        elif p["state"] == "prune":
            doomed = store.plan_prune(p["root"], p["keep"], p["protect"])
            result["removed"] = doomed
            if doomed:
                before = [r.id for r in store.list_releases(p["root"])]
                result["changed"] = True
                result["diff"] = {
                    "before": "\n".join(before) + "\n",
                    "after": "\n".join(r for r in before if r not in doomed) + "\n",
                }
                if not module.check_mode:
                    store.prune(p["root"], doomed)
        result.update(store.info(p["root"]))
    except (store.ReleaseStoreError, OSError) as exc:
        module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
