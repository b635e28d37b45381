#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Documentation of the action plugin fieldservice.deploy.preflight_migrations
(plugins/action/preflight_migrations.py): it runs on the control node."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: preflight_migrations
short_description: Check the app's Alembic migrations against a throwaway PostgreSQL
description:
  - Runs C(<command> heads) in the source directory and requires exactly one head.
  - Then starts a throwaway PostgreSQL on this host, for each revision in O(from_revisions) creates a
    fresh database, runs C(<command> upgrade <revision>) and C(<command> upgrade head) with the
    database URL in the environment variable O(url_var), and removes the server again.
  - The throwaway server is a temporary cluster made with C(initdb) and C(pg_ctl) when PostgreSQL
    server binaries are found (C(PATH), then C(/usr/lib/postgresql/*/bin), then O(pg_bin_dirs); as
    root it runs as the C(postgres) user), else a C(docker run) of O(image) when a Docker engine
    answers. With neither, the upgrade part is skipped and RV(warning) says so; it never passes
    without running.
  - Nothing lasting is changed; the action reports, the caller decides (RV(ok)).
  - An action that runs on the control node, whatever host the task is for (the source and the
    throwaway database are there); the task needs no C(delegate_to).
version_added: "0.1.0"
author: Field Service deploy contributors (@field-service-deploy)
options:
  path:
    description: The app's source directory (holding C(alembic.ini)) on this host.
    type: path
    required: true
  command:
    description: The Alembic command line, without a subcommand.
    type: list
    elements: str
    required: true
  from_revisions:
    description:
      - Revisions the databases are at before the deploy (the serving schema); each is tested on a
        database of its own. An empty string or an empty list means an empty database.
    type: list
    elements: str
    default: []
  check_heads:
    description: Require exactly one head.
    type: bool
    default: true
  check_upgrade:
    description: Run the upgrade against a throwaway PostgreSQL.
    type: bool
    default: true
  database:
    description: Where the throwaway PostgreSQL comes from.
    type: str
    choices: [auto, local, docker, none]
    default: auto
  image:
    description: PostgreSQL image for O(database=docker) (and C(auto) without local binaries).
    type: str
    default: postgres:15
  name_prefix:
    description: Prefix of the throwaway container's name.
    type: str
    default: fs
  url_var:
    description: Environment variable that carries the database URL (C(postgresql://...)) to Alembic.
    type: str
    default: DATABASE_URL
  pg_bin_dirs:
    description: More directories searched for C(initdb) and C(pg_ctl).
    type: list
    elements: path
    default: []
  timeout:
    description: Seconds each Alembic command, and the start of the database, may take.
    type: int
    default: 300
  env:
    description: Environment of the Alembic runs, added to the control node's own.
    type: dict
    default: {}
  lint:
    description:
      - Lint the SQL of the pending migrations (from the serving revision, the first of O(from_revisions)
        that is not the head, to head), rendered with C(<command> upgrade --sql <revision>:head), with
        squawk and rules of the collection's own.
      - >-
        A change that breaks the serving release (a column or table dropped or renamed, a type changed,
        C(NOT NULL) added) is refused unless its migration file holds the comment
        C(# fieldservice.deploy: contract); a long lock on an existing table is refused or warned
        (O(lint_locks)) unless the table is under O(small_table_bytes) or created by the same migrations.
      - Nothing is linted when no migration is pending.
    type: bool
    default: false
  lint_locks:
    description: What a long lock on an existing table does, C(refuse) the deploy or C(warn).
    type: str
    choices: [refuse, warn]
    default: refuse
  small_table_bytes:
    description: A table smaller than this (its size in O(table_sizes)) may be locked or rewritten.
    type: int
    default: 10485760
  table_sizes:
    description: The tables' sizes in bytes on the server (C(pg_total_relation_size)), by name.
    type: dict
    default: {}
  squawk:
    description: The squawk binary; empty looks beside the control node's Python, then on C(PATH).
    type: str
    default: ""
  pg_version:
    description: The server's PostgreSQL version for squawk's rules (e.g. C(15.4)); empty is squawk's default.
    type: str
    default: ""
  dump_schemas:
    description:
      - With pending migrations, dump the throwaway database at the serving revision and at head
        (RV(schemas)), for the check of the serving release on the new schema
        (M(fieldservice.deploy.serving_check)).
    type: bool
    default: false
extends_documentation_fragment:
  - fieldservice.deploy.common.read_only
attributes:
  action:
    support: full
    description: Runs on the control node, as an action plugin.
  async:
    support: none
    description: The check waits for its own time limits.
  platform:
    support: full
    platforms: posix
    description: The control node.
"""

EXAMPLES = r"""
- name: Check the migrations
  fieldservice.deploy.preflight_migrations:
    path: /home/deploy/src/field-service
    command: ["{{ ansible_playbook_python }}", -m, alembic]
    from_revisions: ["0001"]
    env:
      PYTHONPATH: /home/deploy/src/field-service
  register: migrations
"""

RETURN = r"""
ok:
  description: Whether every check that ran passed.
  returned: success
  type: bool
  sample: true
heads:
  description: The head revisions found (empty when O(check_heads) is false).
  returned: success
  type: list
  elements: str
  sample: ["0002"]
upgrade:
  description: C(passed), C(failed), C(skipped) (no throwaway database could be had) or C(off).
  returned: success
  type: str
  sample: passed
database:
  description: The throwaway database used (C(local) or C(docker)), or null.
  returned: success
  type: str
  sample: local
steps:
  description: Each Alembic upgrade run (from, target, rc, last output lines).
  returned: success
  type: list
  elements: dict
reason:
  description: What was found, in a sentence.
  returned: success
  type: str
  sample: "single head 0002; upgrade 0001 -> head works"
warning:
  description: Why the upgrade was skipped, or an empty string.
  returned: success
  type: str
  sample: ""
pending_from:
  description: The serving revision the pending migrations start from; empty when none is pending.
  returned: success
  type: str
  sample: "0001"
lint:
  description:
    - The lint; C(ran) says whether it ran and C(why) why not. When it ran, C(refused), C(warned) and
      C(allowed) hold a message per finding (file:line, what, the table's size, the safe way),
      C(findings) the details, C(statements) how many statements were linted and C(seconds) its time.
  returned: success
  type: dict
  sample: {"ran": true, "refused": [], "warned": [], "allowed": [], "statements": 3, "seconds": 0.9}
skip_with:
  description: The setting of the preflight role that deploys without the part that failed.
  returned: success
  type: str
  sample: preflight_migrations_lint
schemas:
  description: With O(dump_schemas) and pending migrations, C(serving) and C(head), plain SQL dumps.
  returned: success
  type: dict
  sample: {}
"""
