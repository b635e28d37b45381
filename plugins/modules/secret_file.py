#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: hand a secret to a background job in a 0600 file."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: secret_file
short_description: Write a secret to a new 0600 file for a background job to read
description:
  - An async job's arguments are written to disk on the remote host (in the module file and in
    its job file), so a secret (a database password, an age private key) must not be among
    them. This module writes it to a new file that only its owner reads, for the job to read by
    path and delete once read (the backup program's C(--remove-secret-files)).
  - The content travels in this module's own arguments, which never reach a log (C(no_log));
    with pipelining (this collection's C(ansible.cfg)) they are never on the remote disk either.
    Put O(path) on a memory file system (C(/dev/shm)) so that the secret never is.
  - The file must not exist (it is created exclusively); the caller removes it, or its folder,
    when the job has ended.
version_added: "0.5.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The file to create, in an existing folder.
    type: path
    required: true
  content:
    description: The secret; a newline is added when it has none.
    type: str
    required: true
attributes:
  check_mode:
    support: full
    description: Writes nothing in check mode.
  diff_mode:
    support: none
    description: A secret is never shown.
  idempotent:
    support: none
    description: The file is for one job; a second call with the same path fails.
"""

EXAMPLES = r"""
- name: Hand the database password to the backup program
  fieldservice.deploy.secret_file:
    path: "{{ run_dir.path }}/password"
    content: "{{ app_db_password }}"
"""

RETURN = r"""
path:
  description: The file written.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule


def write_secret(path: str, content: str) -> None:
    """Create ``path`` (0600, exclusively) holding ``content`` and a final newline."""
    data = content if content.endswith("\n") else content + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data.encode("utf-8"))
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "content": {"type": "str", "required": True, "no_log": True},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    if not module.check_mode:
        try:
            write_secret(path, module.params["content"])
        except OSError as exc:
            module.fail_json(msg=f"cannot write the secret file {path}: {exc.strerror or exc}", path=path)
    module.exit_json(changed=True, path=path)


if __name__ == "__main__":
    main()
