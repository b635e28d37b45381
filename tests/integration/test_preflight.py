"""The pre-deploy checks through the real deploy playbook.

Given v2 of the sample app serving (the deployment test_zero_downtime
checked; test_rollback uses it after), when the next deploy's source (or the
server) fails one of the seed's checklist items, then the deploy stops on
the control node with a message that names the check and the switch that
skips it, and nothing on the server changed: the same release serves, with
the same containers, no new release directory, no new backup.
"""

from __future__ import annotations

import os

import pytest
from harness import Deployment, add_changelog_entry, failed_tasks, make_source

pytestmark = pytest.mark.integration

SECOND_HEAD = '''"""a second head, forked from 0001 beside 0002

Revision ID: 0002b
Revises: 0001
"""
revision = "0002b"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''
FAILING_UPGRADE = '''"""v3 that cannot upgrade

Revision ID: 0003
Revises: 0002
"""
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("ALTER TABLE no_such_table ADD COLUMN x int")


def downgrade():
    pass
'''


@pytest.fixture(scope="module")
def serving(v1_then_v2_under_traffic):
    """The deployment of conftest.py, after test_zero_downtime (same xdist
    group, it runs first): v2 serves. Every deploy here is refused and
    changes nothing; test_rollback runs after."""
    return v1_then_v2_under_traffic["d"]


def server_state(d: Deployment) -> tuple:
    backups = []
    for folder, _, files in os.walk(d.backup_root):
        backups += [os.path.join(folder, f) for f in files]
    return (d.current_release(), sorted(os.listdir(os.path.join(d.app_root, "releases"))),
            sorted(c["Names"] for c in d.containers(all_=True)), sorted(backups),
            d.psql("SELECT version_num FROM alembic_version"))


def source(d: Deployment, files: dict, version: str | None = "3.0.0") -> str:
    """v2 of the sample app plus files, with a CHANGELOG entry for `version` unless None."""
    src = os.path.join(d.workdir, "src")
    make_source(src, 2)
    for rel, text in files.items():
        path = os.path.join(src, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    if version:
        add_changelog_entry(src, version)
    return src


def refused(d: Deployment, check: str, switch: str, **extra) -> str:
    """Run the deploy; it must fail on `check`, naming `switch`; return the message."""
    before = server_state(d)
    r = d.run("deploy.yml", **extra)
    assert r.status == "failed"
    msgs = failed_tasks(r)
    hit = [m for m in msgs if f"Pre-deploy check '{check}' failed" in m]
    assert hit, msgs
    assert switch in hit[0], hit[0]
    assert "Nothing on the server was changed" in hit[0] or "nothing on the server was changed" in hit[0]
    assert server_state(d) == before
    return hit[0]


def test_critical_todo_marker_is_listed_with_file_and_line(serving):
    source(serving, {"field_service/billing.py": "x = 1\n\n# TODO(critical): charge the card twice?\n"})
    msg = refused(serving, "TODO markers", "-e preflight_check_todo=false")
    assert "field_service/billing.py:3" in msg


def test_changelog_without_a_new_entry(serving):
    source(serving, {"field_service/VERSION": "2.0.1\n"}, version=None)
    msg = refused(serving, "CHANGELOG", "-e preflight_check_changelog=false")
    assert "2.0.0" in msg


def test_two_alembic_heads(serving):
    source(serving, {"migrations/versions/0002b_fork.py": SECOND_HEAD})
    msg = refused(serving, "migrations", "-e preflight_check_migrations=false")
    assert "0002b" in msg and "0002" in msg


def test_a_migration_that_cannot_upgrade_is_caught_before_the_server(serving):
    source(serving, {"migrations/versions/0003_broken.py": FAILING_UPGRADE})
    msg = refused(serving, "migrations", "-e preflight_check_migrations=false")
    assert "no_such_table" in msg


def test_not_enough_disk(serving):
    source(serving, {})
    msg = refused(serving, "disk", "-e preflight_check_disk=false", preflight_min_free_docker_mb=10**9)
    assert "Docker data" in msg


def test_unreachable_server(serving):
    source(serving, {})
    before = server_state(serving)
    r = serving.run("deploy.yml", ansible_connection="ssh", ansible_host="127.0.0.1", ansible_port=1)
    assert r.status == "failed"
    msgs = failed_tasks(r)
    assert any("Pre-deploy check 'reachable' failed" in m for m in msgs), msgs
    assert server_state(serving) == before


def test_a_source_that_passes_every_check_deploys(v1_then_v2_under_traffic):
    # v2's deploy (conftest.py) ran every check and passed them
    with open(v1_then_v2_under_traffic["v2_log"], encoding="utf-8") as fh:
        log = fh.read()
    assert "Pre-deploy checks: TODO markers, CHANGELOG, disk, migrations: PASSED" in log
    assert log.rstrip().endswith("DEPLOYMENT SUCCESS")
