"""Schema changes that cannot break the release that is still serving
(docs/migrations.md), through the real deploy playbook.

Given the deployment of conftest.py after test_rollback (same xdist group,
it runs last): v1 of the sample app was deployed, then v2 (an additive
migration) under traffic, then rolled back to v1 and its schema 0001. The v2
deploy ran both checks. Each deploy below brings one more kind of migration
on top of v2's: a column drop, a rename, a column drop the serving code still
needs with the lint turned off, and an index built under a lock on a big
table are refused before anything on the server changed (the same release
serves, the same containers, no new release, no backup, the same schema,
and the check's containers go) with the migration's file and line; the
index deploys as a warning by the setting, with the one on a small table
allowed; a code-only deploy runs neither check; a contract step after the
code stopped using the column deploys.
"""

from __future__ import annotations

import os
import re
import sys

import pytest
from harness import Deployment, add_changelog_entry, docker, failed_tasks, make_source, wait_for

pytestmark = pytest.mark.integration

DB_PY = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "field-service", "field_service",
                     "db.py")


def migration(revision: str, down: str, body: str, marker: str = "") -> str:
    return (f'"""{revision}\n\nRevision ID: {revision}\nRevises: {down}\n"""\n{marker}'
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f'revision = "{revision}"\ndown_revision = "{down}"\n'
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {body}\n\n\ndef downgrade():\n    pass\n")


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` that holds ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def db_py_without_text() -> str:
    """The sample app's db.py, writing no processed_updates.text (the release
    that stops using the column before a later one drops it)."""
    with open(DB_PY, encoding="utf-8") as fh:
        text = fh.read()
    old = ("INSERT INTO processed_updates (service, update_id, chat_id, text, release)\n"
           "        VALUES (%s, %s, %s, %s, %s)")
    assert old in text
    text = text.replace(old, "INSERT INTO processed_updates (service, update_id, chat_id, release)\n"
                             "        VALUES (%s, %s, %s, %s)")
    return text.replace("(service, update_id, chat_id, text, release),",
                        "(service, update_id, chat_id, release),")


class App:
    """The deployment and the versions deployed so far (each needs a newer CHANGELOG entry)."""

    def __init__(self, d: Deployment):
        self.d = d
        self.versions: list[str] = []
        self.files: dict = {}

    def source(self, version: str, files: dict) -> None:
        src = self.d.extravars["code_sync_source_dir"]
        make_source(src, 2)
        for rel, text in {**self.files, **files}.items():
            path = os.path.join(src, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
        for v in [*self.versions, version]:
            add_changelog_entry(src, v)

    def deploy(self, version: str, files: dict, **extra):
        self.source(version, files)
        r = self.d.run("deploy.yml", **extra)
        deploys = [p for p in self.d.logs() if os.path.basename(p).startswith("deploy_")]
        with open(deploys[-1], encoding="utf-8") as fh:  # (rollback_*.log of test_rollback beside them)
            log = fh.read()
        if r.status == "successful":  # deployed: what it brought stays in the source
            self.versions.append(version)
            self.files.update(files)
        return r, log

    def state(self) -> tuple:
        d = self.d
        backups = sorted(os.path.join(f, n) for f, _, names in os.walk(d.backup_root) for n in names)
        return (d.current_release(), sorted(os.listdir(os.path.join(d.app_root, "releases"))),
                sorted(c["Names"] for c in d.containers(all_=True)), backups,
                d.psql("SELECT version_num FROM alembic_version"))

    def check_leftovers(self) -> str:
        return docker("ps", "-aq", "--filter", "label=fs.check.of=" + self.d.name) + \
            docker("network", "ls", "-q", "--filter", "label=fs.check.of=" + self.d.name)

    def refused(self, version: str, files: dict, **extra) -> tuple[str, str]:
        before = self.state()
        r, log = self.deploy(version, files, **extra)
        assert r.status == "failed", log
        msgs = [m for m in failed_tasks(r) if "Pre-deploy check 'migrations' failed" in m]
        assert msgs, failed_tasks(r)
        assert "Nothing on the server was changed" in msgs[0]
        assert self.state() == before
        # the check's containers and network go (removed in the background)
        assert wait_for(lambda: self.check_leftovers() == "", timeout=30), self.check_leftovers()
        return msgs[0], log


@pytest.fixture(scope="module")
def app(v1_then_v2_under_traffic):
    """v1 serves again (test_rollback restored its schema, 0001)."""
    d = v1_then_v2_under_traffic["d"]
    assert d.current_release() == v1_then_v2_under_traffic["v1"]
    assert d.psql("SELECT version_num FROM alembic_version") == "0001"
    return App(d)


def test_the_v2_deploy_ran_the_serving_release_on_its_schema_first(v1_then_v2_under_traffic):
    """v2 (a nullable column, an index on a small table) was deployed under
    traffic (test_zero_downtime: no request failed, no update lost)."""
    with open(v1_then_v2_under_traffic["v2_log"], encoding="utf-8") as fh:
        log = fh.read()
    # the lint ran on 0001 -> 0002 and allowed the index (a few rows)
    assert re.search(r"Migrations lint: migrations/versions/0002_processed_updates_index.py:\d+: builds "
                     r"an index without CONCURRENTLY.* - allowed: processed_updates is small", log), log
    # v1 was started on the new schema, in isolation, and took its test messages
    v1 = v1_then_v2_under_traffic["v1"]
    assert re.search(rf"Migrations: the serving release {v1} runs on the new schema and took its test "
                     r"messages \(\d+(\.\d+)? s\)", log), log
    assert "lint of 5 statement(s) from 0001: nothing refused" in log


def test_a_column_drop_is_refused_with_its_file_and_line(app):
    drop = migration("0003", "0002", 'op.drop_column("processed_updates", "text")')
    msg, dummy = app.refused("3.0.0", {"migrations/versions/0003_drop_text.py": drop})
    line = line_of(drop, "op.drop_column")
    assert (f"migrations/versions/0003_drop_text.py:{line}: "
            "drops a column the serving release may still use") in msg
    assert "ALTER TABLE processed_updates DROP COLUMN text" in msg
    assert "fieldservice.deploy: contract" in msg and "-e preflight_migrations_lint=false" in msg


def test_a_rename_is_refused(app):
    rename = migration("0003", "0002", 'op.alter_column("processed_updates", "text", new_column_name="body")')
    msg, dummy = app.refused("3.0.0", {"migrations/versions/0003_rename.py": rename})
    assert (f"0003_rename.py:{line_of(rename, 'op.alter_column')}: renames a column the serving release "
            "uses by its old name") in msg


def test_a_drop_the_serving_code_still_needs_is_refused_by_the_serving_release_itself(app):
    serving = app.d.current_release()
    # with the lint off (the deploy log says so), the serving release is
    # started on the new schema: it still writes processed_updates.text
    msg, log = app.refused("3.0.0", {"migrations/versions/0003_drop_text.py": migration(
        "0003", "0002", 'op.drop_column("processed_updates", "text")')}, preflight_migrations_lint=False)
    assert ("Migrations lint: OFF (preflight_migrations_lint=false): the pending migrations from 0001 "
            "were not checked") in log
    assert f"the serving release {serving} fails on the new schema" in msg, msg
    assert "and runs on its own: an automatic rollback would put back a release that cannot run" in msg
    assert "took 0 of 2 test message(s)" in msg  # each bot: the INSERT fails, the update is retried
    assert "-e preflight_serving_check=false" in msg


def test_an_index_without_concurrently_by_the_size_of_its_table(app):
    # 12 MB of rows in processed_updates (of a service no bot has)
    app.d.psql("INSERT INTO processed_updates (service, update_id, chat_id, text) SELECT 'filler', i, "
               "i % 50, repeat(md5(i::text), 2) FROM generate_series(1, 90000) AS i")
    size = int(app.d.psql("SELECT pg_total_relation_size('processed_updates')"))
    assert size > 10 * 1024 * 1024
    indexes = migration("0003", "0002",
                        'op.create_index("ix_pu_text", "processed_updates", ["text"])\n'
                        '    op.create_index("ix_offsets_next", "bot_offsets", ["next_offset"])')
    files = {"migrations/versions/0003_indexes.py": indexes}
    big, small = line_of(indexes, '"ix_pu_text"'), line_of(indexes, '"ix_offsets_next"')
    msg, dummy = app.refused("3.0.0", files)
    assert f"0003_indexes.py:{big}: builds an index without CONCURRENTLY" in msg
    assert f"(processed_updates: {size / 1024 / 1024:.1f} MB on the server)" in msg
    assert "bot_offsets" not in msg  # a tiny table: allowed
    # the same as a warning, by the setting: it deploys, the log says why
    r, log = app.deploy("3.0.0", files, preflight_migrations_lint_locks="warn")
    assert r.status == "successful", failed_tasks(r)
    assert re.search(rf"Migrations lint: WARNING - migrations/versions/0003_indexes.py:{big}: builds an "
                     r"index without CONCURRENTLY.*processed_updates: \d+\.\d MB on the server", log), log
    assert re.search(rf"Migrations lint: migrations/versions/0003_indexes.py:{small}: .* - allowed: "
                     r"bot_offsets is small", log), log
    app.d.psql("DELETE FROM processed_updates WHERE service = 'filler'")


def test_a_code_only_deploy_runs_neither_check(app):
    # the release that stops writing processed_updates.text (expand: no migration)
    r, log = app.deploy("3.1.0", {"field_service/db.py": db_py_without_text()})
    assert r.status == "successful", failed_tasks(r)
    assert "Migrations lint" not in log and "runs on the new schema" not in log
    assert "Migrations: single head 0003; upgrade 0003 -> head works" in log  # and nothing else


def test_a_contract_step_after_the_code_stopped_using_the_column_deploys(app):
    serving = app.d.current_release()
    drop = migration("0004", "0003", 'op.drop_column("processed_updates", "text")',
                     marker="# fieldservice.deploy: contract\n")
    r, log = app.deploy("4.0.0", {"migrations/versions/0004_drop_text.py": drop})
    assert r.status == "successful", failed_tasks(r)
    assert re.search(rf"Migrations lint: migrations/versions/0004_drop_text.py:"
                     rf"{line_of(drop, 'op.drop_column')}: drops a column .* - allowed: "
                     r"its migration is marked '# fieldservice.deploy: contract'", log), log
    assert f"the serving release {serving} runs on the new schema" in log
    assert app.d.psql("SELECT count(*) FROM information_schema.columns WHERE table_name = "
                      "'processed_updates' AND column_name = 'text'") == "0"


def test_the_migrations_check_in_a_container_of_the_servers_image(tmp_path):
    """``preflight_migrations_database: docker`` (a control node without
    PostgreSQL's server binaries): the upgrade and the dumps for the serving
    release's check, in a throwaway container of the database image."""
    from ansible_collections.fieldservice.deploy.plugins.plugin_utils import migrations_check as mc

    src = make_source(str(tmp_path / "src"), 2)
    params = {"path": src, "command": [sys.executable, "-m", "alembic"], "from_revisions": ["0001"],
              "check_heads": True, "check_upgrade": True, "database": "docker", "image": "postgres:15",
              "name_prefix": "fs_test_mc", "url_var": "DATABASE_URL", "pg_bin_dirs": [], "timeout": 120,
              "lint": False, "dump_schemas": True}
    result = mc.run_check(params, dict(os.environ))
    assert result["ok"] and result["database"] == "docker" and result["upgrade"] == "passed", result
    assert "answered_by" in result["schemas"]["head"] and "answered_by" not in result["schemas"]["serving"]
    assert "SET " not in "".join(line[:4] for line in result["schemas"]["head"].splitlines())
    assert docker("ps", "-aq", "--filter", "label=fs.role=preflight") == ""
