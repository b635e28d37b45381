#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: the release id of a source tree, from its content, and its archive."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: source_digest
short_description: Compute the release id of a source tree from its content and archive it
description:
  - Walks the source directory O(path) and computes a sha256 digest of what would be shipped
    (for each kept file, sorted by relative path - the path, the owner's executable bit, and the
    content or the symlink target). Modification times, other mode bits, owners and empty
    directories do not count, so deploying the same code again gives the same release id.
  - The release id is the first 12 hex characters of the digest.
  - With O(archive), also writes a deterministic C(.tar.gz) of the kept files (sorted entries,
    mtime 0, owner 0:0 without names, modes 0644/0755, symlinks kept as symlinks), so the same
    content gives a byte-identical archive. It is written atomically (temporary file, then
    rename) and only when its bytes differ from the existing archive.
  - "Meant to run on the control node (C(delegate_to: localhost))."
  - Symlinks are kept as links; a symlink that is absolute or leads out of the tree is refused,
    and so are special files (fifos, sockets, devices), unless excluded.
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The source directory; it must exist and be a directory.
    type: path
    required: true
  exclude:
    description:
      - Names left out, as C(fnmatch) patterns (case-sensitive) matched against every
        component of a relative path and against the whole relative path (with C(/));
        an excluded directory is left out with everything in it.
      - Setting it replaces the default list.
    type: list
    elements: str
    default:
      - .git
      - .hg
      - __pycache__
      - "*.pyc"
      - "*.pyo"
      - .pytest_cache
      - .mypy_cache
      - .ruff_cache
      - .venv
      - venv
      - .tox
      - node_modules
      - deployment_logs
      - .DS_Store
  follow:
    description:
      - Follow symlinks to regular files, wherever they lead, and keep each as the file it
        leads to (a link to a directory or to nothing is refused). For a tree that shares a
        file with another part of a repository by a link.
    type: bool
    default: false
  archive:
    description:
      - Where to write the C(.tar.gz) of the kept files (mode 0600; its directory is created
        when missing). Not written in check mode.
    type: path
attributes:
  check_mode:
    support: full
    description: Computes the digest and whether the archive would change, writes nothing.
  diff_mode:
    support: none
    description: RV(digest) and RV(release_id) tell what the content is; the archive is not shown.
  idempotent:
    support: full
    description: The same content gives the same digest and a byte-identical archive, which is not rewritten.
  platform:
    support: full
    platforms: posix
    description: Runs on the control node through C(delegate_to).
notes:
  - The archive is byte-identical for the same content with the same Python/zlib; another
    zlib may compress differently, which only makes the archive be rewritten once.
seealso:
  - module: fieldservice.deploy.releases
"""

EXAMPLES = r"""
- name: Compute the release id from the source content
  fieldservice.deploy.source_digest:
    path: /home/deploy/src/field-service
    archive: /home/deploy/.cache/field-service-deploy/source.tar.gz
  delegate_to: localhost
  run_once: true
  register: digest

- name: Digest only, keeping the docs out
  fieldservice.deploy.source_digest:
    path: "{{ playbook_dir }}/../app"
    exclude: [.git, __pycache__, "*.pyc", docs]
  delegate_to: localhost
  run_once: true
  register: digest
"""

RETURN = r"""
digest:
  description: Hex sha256 of the kept files (relative paths, executable bits, contents, symlink targets).
  returned: success
  type: str
  sample: 3f2a9c1d0b7e4c55a0e1f2d3c4b5a69788796a5b4c3d2e1f00112233445566aa
release_id:
  description: The release id, the first 12 characters of RV(digest).
  returned: success
  type: str
  sample: 3f2a9c1d0b7e
files:
  description: Number of files (and symlinks) kept.
  returned: success
  type: int
  sample: 412
bytes:
  description: Total size of the regular files kept, in bytes.
  returned: success
  type: int
  sample: 1843221
archive:
  description: Path of the archive, or null without O(archive).
  returned: success
  type: str
  sample: /home/deploy/.cache/field-service-deploy/source.tar.gz
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import source


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "exclude": {"type": "list", "elements": "str", "default": list(source.DEFAULT_EXCLUDE)},
            "archive": {"type": "path"},
            "follow": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    archive = module.params["archive"]

    try:
        files = source.walk_source(path, module.params["exclude"], follow=module.params["follow"])
        summary = source.digest_files(path, files)
        changed = False
        if archive:
            changed = source.update_archive(path, files, archive, check_mode=module.check_mode)
    except source.SourceError as err:
        module.fail_json(msg=f"source_digest: {err}")
    except OSError as err:
        where = err.filename or archive or path
        module.fail_json(msg=f"source_digest: {where}: {err.strerror or err}")

    module.exit_json(
        changed=changed,
        digest=summary["digest"],
        release_id=source.release_id(summary["digest"]),
        files=summary["files"],
        bytes=summary["bytes"],
        archive=archive or None,
    )


if __name__ == "__main__":
    main()
