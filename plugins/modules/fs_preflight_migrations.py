#!/usr/bin/python
"""Ansible module: check the app's Alembic migrations before a deploy."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: fs_preflight_migrations
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
  - Nothing lasting is changed; the module reports, the caller decides (RV(ok)).
version_added: "0.1.0"
author: field-service-deploy
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
attributes:
  check_mode:
    support: full
    description: Changes nothing lasting (the throwaway database is removed); runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, there is nothing to show.
  idempotent:
    support: full
    description: Never changes anything.
"""

EXAMPLES = r"""
- name: Check the migrations
  fs_preflight_migrations:
    path: /home/deploy/src/field-service
    command: ["{{ ansible_playbook_python }}", -m, alembic]
    from_revisions: ["0001"]
  delegate_to: localhost
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
"""

import os

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils import fs_preflight
except ImportError:  # pragma: no cover - direct import in unit tests
    import fs_preflight


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "command": {"type": "list", "elements": "str", "required": True},
            "from_revisions": {"type": "list", "elements": "str", "default": []},
            "check_heads": {"type": "bool", "default": True},
            "check_upgrade": {"type": "bool", "default": True},
            "database": {"type": "str", "choices": ["auto", "local", "docker", "none"], "default": "auto"},
            "image": {"type": "str", "default": "postgres:15"},
            "name_prefix": {"type": "str", "default": "fs"},
            "url_var": {"type": "str", "default": "DATABASE_URL"},
            "pg_bin_dirs": {"type": "list", "elements": "path", "default": []},
            "timeout": {"type": "int", "default": 300},
        },
        supports_check_mode=True,
    )
    p = module.params
    result = {"changed": False, "ok": True, "heads": [], "upgrade": "off", "database": None,
              "steps": [], "reason": "", "warning": ""}
    reasons = []
    env = dict(os.environ)

    if p["check_heads"]:
        rc, output = fs_preflight.run_alembic(p["command"], ["heads"], p["path"], env, p["timeout"])
        heads = fs_preflight.parse_heads(output) if rc == 0 else []
        result["heads"] = heads
        if rc != 0:
            result.update(ok=False, reason=f"'alembic heads' failed (exit {rc}): "
                          + " | ".join(fs_preflight._tail(output, 5)))
            module.exit_json(**result)
        if len(heads) != 1:
            result.update(ok=False, reason=(
                f"{len(heads)} Alembic heads ({', '.join(heads) or 'none'}), exactly one expected"
                + (": merge them (alembic merge heads)" if len(heads) > 1 else "")))
            module.exit_json(**result)
        reasons.append(f"single head {heads[0]}")

    if p["check_upgrade"]:
        database, why = fs_preflight.pick_backend(p["database"], p["image"], p["name_prefix"],
                                                  p["timeout"], p["pg_bin_dirs"])
        if database is None:
            result.update(upgrade="skipped", warning=f"upgrade not checked: {why}")
            reasons.append("upgrade not checked")
        else:
            result["database"] = database.name
            try:
                database.start()
                upgrade = fs_preflight.check_upgrade(database, p["command"], p["from_revisions"],
                                                     p["path"], p["timeout"], env, p["url_var"])
            except fs_preflight.CheckError as err:
                upgrade = {"ok": False, "steps": [],
                           "reason": f"the throwaway PostgreSQL ({database.name}) failed: {err}"}
            except Exception as err:  # noqa: BLE001 - reported, and the database removed below
                upgrade = {"ok": False, "steps": [], "reason": f"{type(err).__name__}: {err}"}
            finally:
                database.stop()
            result["steps"] = upgrade["steps"]
            result["upgrade"] = "passed" if upgrade["ok"] else "failed"
            reasons.append(upgrade["reason"] + (f" ({database.name} PostgreSQL)" if upgrade["ok"] else ""))
            if not upgrade["ok"]:
                result["ok"] = False
                result["reason"] = upgrade["reason"]
                module.exit_json(**result)
    result["reason"] = "; ".join(reasons)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
