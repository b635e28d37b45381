#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the action plugin fieldservice.deploy.app_init
(plugins/action/app_init.py): it runs on the control node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: app_init
short_description: Write the inventories (and a Dockerfile) that deploy an app, from what the app shows
description:
  - Reads the app in O(app_dir) - its bots (a C(Procfile), else the Python files that call
    C(run_polling), C(start_polling) or C(run_webhook), or use aiogram's C(SimpleRequestHandler)),
    their library (python-telegram-bot or aiogram), the environment variables their code reads,
    the C(Dockerfile), the requirements file and C(alembic.ini).
  - Writes C(deploy/inventory/production/) (C(hosts.yml), C(group_vars/all/app.yml) with the app's
    services, C(group_vars/all/main.yml), C(group_vars/all/vault.yml.example)) and
    C(deploy/inventory/local/) (this machine, with the stand-in Bot API; its C(app.yml) is a link to
    the production one), and a C(Dockerfile), a C(.dockerignore) and a first C(CHANGELOG.md) (a deploy
    wants an entry per release) when the app has none.
  - Never overwrites a file - RV(kept) lists the ones that exist. Every guessed value is a line
    ending in C(# CHANGE) followed by what to change, and RV(to_change) lists them with the lines
    of the app's own code that must change (a token written in the code, a Bot API address that
    cannot be pointed at the stand-in).
  - An action that runs on the control node; the task needs no C(delegate_to).
version_added: "0.4.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  app_dir:
    description: The app's directory (its repository).
    type: path
    required: true
attributes:
  action:
    support: full
    description: Runs on the control node, as an action plugin.
  async:
    support: none
    description: It takes well under a second.
  check_mode:
    support: full
    description: Says what it would write and writes nothing.
  diff_mode:
    support: none
    description: Nothing to show.
  platform:
    support: full
    platforms: posix
    description: The control node.
"""

EXAMPLES = r"""
- name: Write the deploy folder of the app
  fieldservice.deploy.app_init:
    app_dir: /home/me/src/notes-bot
  register: init

- name: Show what to change
  ansible.builtin.debug:
    var: init.to_change
"""

RETURN = r"""
app_name:
  description: The app's name (from its directory's name).
  returned: success
  type: str
  sample: notes_bot
services:
  description: The services found (name, command, mode, library, token_var, port).
  returned: success
  type: list
  elements: dict
found_in:
  description: Where the services were found - C(Procfile) or C(code).
  returned: success
  type: str
written:
  description: The files written, relative to O(app_dir).
  returned: success
  type: list
  elements: str
kept:
  description: The files that existed and were left as they were (none is ever overwritten).
  returned: success
  type: list
  elements: str
to_change:
  description: C(file:line - what to change), for the guesses init made and the app's own lines.
  returned: success
  type: list
  elements: str
  sample: ["deploy/inventory/production/hosts.yml:7: your server's name or address"]
alembic:
  description: Whether the app has C(alembic.ini) (its migrations run at each deploy).
  returned: success
  type: bool
"""
