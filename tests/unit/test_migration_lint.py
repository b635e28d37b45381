"""The migrations lint (plugin_utils/migration_lint.py): real Alembic renders
real migrations offline, the real squawk lints them, and each finding is
classified, located and judged."""

from __future__ import annotations

import os
import sys
import textwrap

import pytest

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import migration_lint as ml
from ansible_collections.fieldservice.deploy.plugins.plugin_utils import migrations_check as mc

pytest.importorskip("alembic", reason="Alembic is in the tool's virtualenv (scripts/setup)")
SQUAWK = ml.find_squawk()
if SQUAWK is None and os.environ.get("CI"):
    raise RuntimeError("squawk is not installed (requirements.txt has squawk-cli)")
needs_squawk = pytest.mark.skipif(SQUAWK is None, reason="squawk-cli is not installed")
ALEMBIC = [sys.executable, "-m", "alembic"]
BIG = 50 * 1024 * 1024

ENV_PY = '''
import os
from alembic import context
from sqlalchemy import create_engine, pool

url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with create_engine(url, poolclass=pool.NullPool).connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
'''
INITIAL = '''
"""notes"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table("notes", sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text),
                    sa.Column("chat_id", sa.BigInteger))


def downgrade():
    op.drop_table("notes")
'''


def migration(revision: str, down: str, body: str, header: str = "") -> str:
    return (f'"""{revision}"""\n{header}import sqlalchemy as sa\nfrom alembic import op\n\n'
            f'revision = "{revision}"\ndown_revision = "{down}"\n\n\ndef upgrade():\n'
            + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n\n\ndef downgrade():\n    pass\n")


def project(tmp_path, *later: str) -> str:
    """An Alembic project with 0001 (notes) and the later migrations given."""
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s/migrations\n")
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(ENV_PY)
    (tmp_path / "migrations" / "script.py.mako").write_text("")
    (versions / "0001_notes.py").write_text(INITIAL)
    for i, text in enumerate(later, start=2):
        (versions / f"{i:04d}_change.py").write_text(text)
    return str(tmp_path)


def run_lint(path, start="0001", sizes=None, **kw):
    return ml.lint(ALEMBIC, start, path, dict(os.environ), 60, {"notes": BIG} if sizes is None else sizes,
                   squawk=SQUAWK or "", **kw)


# -- the SQL --------------------------------------------------------------------

def test_statements_keep_their_line_and_migration():
    sql = textwrap.dedent("""\
        BEGIN;

        -- Running upgrade 0001 -> 0002

        ALTER TABLE notes ADD COLUMN x text DEFAULT 'a;b';

        CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;
        /* a comment; with a semicolon */
        -- Running upgrade 0002 -> 0003

        ALTER TABLE "We;ird" DROP COLUMN y;
        COMMIT;
        """)
    got = [(s.line, s.revision, s.text.split()[0]) for s in ml.split_statements(sql)]
    assert got == [(0, "", "BEGIN"), (4, "0002", "ALTER"), (6, "0002", "CREATE"), (10, "0003", "ALTER"),
                   (11, "0003", "COMMIT")]
    assert ml.table_of('ALTER TABLE "We;ird" DROP COLUMN y') == "We;ird"
    assert ml.table_of("ALTER TABLE IF EXISTS ONLY public.Notes ADD x int") == "notes"
    assert ml.table_of("CREATE UNIQUE INDEX i ON ONLY notes (a)") == "notes"


def test_log_lines_an_alembic_ini_sends_to_stdout_are_not_sql():
    out = ("2026-12-07 05:26:32,790 INFO alembic.runtime.migration: Context impl PostgresqlImpl.\n"
           "INFO  [alembic.runtime.migration] Will assume transactional DDL.\nBEGIN;\n")
    assert ml.clean_sql(out) == "BEGIN;"


def test_the_op_line_is_found_in_upgrade():
    source = migration("0002", "0001", """
        op.add_column("notes", sa.Column("title", sa.Text))
        op.drop_column("notes", "body")
        op.create_index("ix_notes_chat", "notes", ["chat_id"])
    """)
    lines = source.splitlines()
    drop = ml.locate(source, "ALTER TABLE notes DROP COLUMN body", "ban-drop-column")
    assert 'drop_column("notes", "body")' in lines[drop - 1]
    index = ml.locate(source, "CREATE INDEX ix_notes_chat ON notes (chat_id)",
                      "require-concurrent-index-creation")
    assert "create_index" in lines[index - 1]
    assert ml.locate("x = 1\n", "DROP TABLE notes", "ban-drop-table") == 0


# -- the lint of real migrations --------------------------------------------------

@needs_squawk
def test_an_additive_migration_passes(tmp_path):
    path = project(tmp_path, migration("0002", "0001", """
        op.add_column("notes", sa.Column("title", sa.Text, nullable=True))
        op.create_table("tags", sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("note_id", sa.Integer))
        op.create_index("ix_tags_note", "tags", ["note_id"])
    """))
    result = run_lint(path)
    assert result["ok"] and result["revisions"] == ["0002"], result
    # squawk knows that an index on a table the same SQL creates locks nothing
    assert result["findings"] == [] and result["statements"] == 6, result


@needs_squawk
@pytest.mark.parametrize("body, what", [
    ('op.drop_column("notes", "body")', "drops a column"),
    ('op.alter_column("notes", "body", new_column_name="text")', "renames a column"),
    ('op.rename_table("notes", "memos")', "renames a table"),
    ('op.alter_column("notes", "chat_id", type_=sa.Text)', "changes a column's type"),
    ('op.alter_column("notes", "body", nullable=False)', "sets NOT NULL on an existing column"),
    ('op.add_column("notes", sa.Column("owner", sa.Integer, nullable=False))',
     "adds a NOT NULL column without a default"),
    ('op.drop_table("notes")', "drops a table"),
])
def test_a_change_that_breaks_the_serving_release_is_refused_with_its_file_and_line(tmp_path, body, what):
    path = project(tmp_path, migration("0002", "0001", body))
    result = run_lint(path)
    assert not result["ok"], result
    [message] = result["refused"]
    assert message.startswith("migrations/versions/0002_change.py:10: "), message  # the op's line
    assert what in message and "The safe way:" in message and "docs/migrations.md#" in message


@needs_squawk
def test_a_marked_contract_step_passes(tmp_path):
    path = project(tmp_path, migration("0002", "0001", 'op.drop_column("notes", "body")',
                                       header="# fieldservice.deploy: contract (the code stopped using body "
                                              "in 1.3)\n"))
    result = run_lint(path)
    assert result["ok"], result
    [allowed] = result["allowed"]
    assert "drops a column" in allowed and "contract step" in allowed


@needs_squawk
def test_an_index_without_concurrently_by_the_size_of_its_table(tmp_path):
    path = project(tmp_path, migration("0002", "0001",
                                       'op.create_index("ix_notes_chat", "notes", ["chat_id"])'))
    big = run_lint(path)
    assert not big["ok"]
    assert "builds an index without CONCURRENTLY" in big["refused"][0]
    assert "(notes: 50.0 MB on the server)" in big["refused"][0]
    warned = run_lint(path, locks="warn")
    assert warned["ok"] and warned["refused"] == [] and "notes: 50.0 MB" in warned["warned"][0]
    small = run_lint(path, sizes={"notes": 16384})
    assert small["ok"] and small["warned"] == []
    assert "notes is small (16.0 kB on the server" in small["allowed"][0]
    unknown = run_lint(path, sizes={})
    assert not unknown["ok"] and "(notes: size unknown)" in unknown["refused"][0]


@needs_squawk
def test_our_own_rules_where_squawk_has_none(tmp_path):
    path = project(tmp_path, migration("0002", "0001", 'op.execute("VACUUM FULL notes")'),
                   migration("0003", "0002", 'op.execute("DROP SCHEMA legacy CASCADE")'))
    result = run_lint(path)
    assert not result["ok"]
    assert any("VACUUM FULL" in m and "0002_change.py" in m for m in result["refused"]), result
    assert any("drops a schema" in m and "0003_change.py" in m for m in result["refused"]), result


@needs_squawk
def test_only_the_pending_migrations_are_linted(tmp_path):
    path = project(tmp_path, migration("0002", "0001", 'op.drop_column("notes", "body")'),
                   migration("0003", "0002", 'op.add_column("notes", sa.Column("t", sa.Text))'))
    assert run_lint(path, start="0002")["ok"]  # 0002 already ran on the server
    assert not run_lint(path, start="0001")["ok"]


def test_an_env_py_without_offline_mode_is_a_clear_error(tmp_path):
    path = project(tmp_path, migration("0002", "0001", 'op.drop_column("notes", "body")'))
    (tmp_path / "migrations" / "env.py").write_text(
        "from alembic import context\nif context.is_offline_mode():\n"
        "    raise SystemExit('no offline mode')\n")
    with pytest.raises(ml.LintError, match=r"offline mode.*docs/migrations.md#the-lint"):
        ml.render_sql(ALEMBIC, "0001", path, dict(os.environ), 60)


def test_no_squawk_names_the_settings(tmp_path):
    with pytest.raises(ml.LintError, match="preflight_migrations_squawk.*preflight_migrations_lint=false"):
        ml.lint(ALEMBIC, "0001", str(tmp_path), {}, 60, {}, squawk=str(tmp_path / "no-squawk"))


# -- in the migrations check --------------------------------------------------------

def test_pending_means_a_serving_revision_that_is_not_the_head():
    assert mc.pending_from(["0001"], ["0002"]) == "0001"
    assert mc.pending_from(["0002"], ["0002"]) == ""
    assert mc.pending_from([""], ["0002"]) == ""  # nothing serves: nothing to break
    assert mc.pending_from(["0002", "0001"], ["0002"]) == "0001"


@needs_squawk
def test_the_check_lints_only_with_pending_migrations_and_names_the_setting(tmp_path):
    path = project(tmp_path, migration("0002", "0001", 'op.drop_column("notes", "body")'))
    params = {"path": path, "command": ALEMBIC, "from_revisions": ["0002"], "check_heads": True,
              "check_upgrade": False, "lint": True, "lint_locks": "refuse", "small_table_bytes": 1024,
              "table_sizes": {}, "squawk": "", "pg_version": "", "url_var": "DATABASE_URL", "timeout": 60,
              "dump_schemas": False}
    none = mc.run_check(params, dict(os.environ))
    assert none["ok"] and none["lint"] == {"ran": False, "why": "no pending migrations"}
    refused = mc.run_check(dict(params, from_revisions=["0001"]), dict(os.environ))
    assert not refused["ok"] and refused["skip_with"] == "preflight_migrations_lint"
    assert "0002_change.py:10: drops a column" in refused["reason"]


@needs_squawk
def test_what_squawk_cannot_read_is_refused_not_passed(tmp_path):
    statements = ml.split_statements("ALTER TABLE notes FROBNICATE body;\n")
    findings = ml.classify(statements, ml.run_squawk(SQUAWK, "ALTER TABLE notes FROBNICATE body;\n"))
    ml.judge(findings, statements, {}, {}, {}, 1024, "warn")
    assert [(f.kind, f.verdict) for f in findings] == [("unread", "refused")]
    assert "cannot be read by squawk" in findings[0].message()


@needs_squawk
def test_a_server_version_with_its_distro_suffix_is_understood_and_a_failing_squawk_is_an_error(tmp_path):
    sql = "CREATE INDEX ix ON notes (chat_id);\n"
    found = ml.run_squawk(SQUAWK, sql, pg_version="15.18 (Debian 15.18-0+deb12u1)")
    assert [f["rule_name"] for f in found if f["rule_name"] == "require-concurrent-index-creation"]
    fake = tmp_path / "squawk"
    fake.write_text("#!/bin/sh\necho 'error: invalid value' >&2\nexit 2\n")
    fake.chmod(0o755)
    with pytest.raises(ml.LintError, match=r"failed \(exit 2\): error: invalid value"):
        ml.run_squawk(str(fake), sql)
