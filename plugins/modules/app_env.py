#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the action plugin fieldservice.deploy.app_env
(plugins/action/app_env.py): it runs on the control node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_env
short_description: Find or make the app's own Python environment on the control node
description:
  - The pre-deploy tests and the migrations check run in the app's environment, not in the
    tool's, so they can import the app's libraries.
  - In order - O(python) when it is not C(auto); the app's own virtualenv (C(<path>/.venv/bin/python),
    or another directory of O(venv_dirs)); else a virtualenv made from the app's requirements files
    (those of O(requirements) that exist) plus O(extra_packages), kept in O(cache_dir) under a hash
    of the files, the extras, O(pip_args) and the version of O(base_python), and reused while they
    do not change.
  - The cached virtualenv is built under a lock and used only once pip succeeded; an interrupted
    build is built again.
  - With none of them, the task fails and the message names the settings to use.
  - An action that runs on the control node, whatever host the task is for; the task needs no
    C(delegate_to).
version_added: "0.4.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The app's source directory on this host.
    type: path
    required: true
  python:
    description: The interpreter to use, or C(auto) to look for one as described above.
    type: str
    default: auto
  venv_dirs:
    description: Directories under O(path) that may hold the app's own virtualenv.
    type: list
    elements: str
    default: [.venv]
  requirements:
    description: The app's requirements files, relative to O(path); those that exist are installed.
    type: list
    elements: str
    default: [requirements.txt]
  extra_packages:
    description: Packages installed besides the requirements (the test runner).
    type: list
    elements: str
    default: [pytest]
  base_python:
    description: The Python the cached virtualenv is made with (C(<base_python> -m venv)).
    type: str
    default: python3
  pip_args:
    description: More arguments of C(pip install), e.g. an index URL.
    type: list
    elements: str
    default: []
  cache_dir:
    description: Where the cached virtualenvs are kept.
    type: path
    default: ~/.cache/fieldservice-deploy/app-venvs
  timeout:
    description: Seconds the making of the virtualenv and each pip run may take.
    type: int
    default: 900
attributes:
  action:
    support: full
    description: Runs on the control node, as an action plugin.
  async:
    support: none
    description: It waits for its own time limit.
  check_mode:
    support: full
    description: Runs in check mode too; it changes nothing but its own cache on the control node.
  diff_mode:
    support: none
    description: Nothing to show.
  platform:
    support: full
    platforms: posix
    description: The control node.
"""

EXAMPLES = r"""
- name: Find the app's environment
  fieldservice.deploy.app_env:
    path: /home/deploy/src/field-service
    requirements: [requirements.txt, requirements-dev.txt]
  register: app_env

- name: Run the app's tests in it
  ansible.builtin.command:
    argv: ["{{ app_env.python }}", -m, pytest, -q]
    chdir: /home/deploy/src/field-service
  changed_when: false
"""

RETURN = r"""
python:
  description: The interpreter to run the app's tests and Alembic with.
  returned: success
  type: str
  sample: /root/.cache/fieldservice-deploy/app-venvs/3f2a9c1b0d4e5f6a7b8c/bin/python
source:
  description: Where it came from - C(setting) (O(python)), C(venv) (the app's own) or C(cache).
  returned: success
  type: str
  sample: cache
venv:
  description: The virtualenv's directory (empty for C(setting)).
  returned: success
  type: str
built:
  description: Whether the cached virtualenv was built by this run (also the task's C(changed)).
  returned: success
  type: bool
key:
  description: The cache entry's name (a hash of what it is made of), empty unless C(cache).
  returned: success
  type: str
files:
  description: The requirements files it was made from.
  returned: success
  type: list
  elements: str
seconds:
  description: Seconds the lookup (and a build) took.
  returned: success
  type: float
"""
