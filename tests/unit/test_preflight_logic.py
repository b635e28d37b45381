"""The plain-Python logic of the pre-deploy checks (plugins/module_utils/preflight.py)."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import pytest

from ansible_collections.fieldservice.deploy.plugins.module_utils import preflight as pf
from ansible_collections.fieldservice.deploy.plugins.module_utils import source
from ansible_collections.fieldservice.deploy.plugins.plugin_utils import migrations_check as mc

# -- TODO markers ---------------------------------------------------------------


def scan(tmp_path, files: dict, pattern=pf.DEFAULT_TODO_PATTERN, exclude=source.DEFAULT_EXCLUDE):
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return pf.scan_markers(str(tmp_path), source.walk_source(str(tmp_path), exclude), pattern)


@pytest.mark.parametrize("line", [
    "# TODO(critical): close the pool",
    "x = 1  # FIXME(critical) data loss",
    "# todo(CRITICAL) lowercase still counts",
    "# TODO: critical - the spelled-out form",
    "# TODO:critical",
])
def test_critical_markers_are_found(tmp_path, line):
    hits, scanned = scan(tmp_path, {"app/mod.py": f"a = 1\n{line}\n"})
    assert scanned == 1
    assert hits == [{"path": "app/mod.py", "line": 2, "text": line.strip()}]


@pytest.mark.parametrize("line", [
    "# TODO: tidy this up",
    "# FIXME later",
    "# TODO(low): nice to have",
    "# criticalTODO(critical)",  # no word boundary before TODO
    "# TODO: criticality review",
])
def test_ordinary_markers_are_not_critical(tmp_path, line):
    hits, _ = scan(tmp_path, {"mod.py": line + "\n"})
    assert hits == []


def test_excluded_binary_and_large_files_are_not_read(tmp_path):
    files = {
        "__pycache__/x.py": "# TODO(critical)\n",
        "node_modules/lib.js": "// TODO(critical)\n",
        "img.bin": b"\0\0TODO(critical)",
        "ok.py": "# TODO(critical) here\n",
    }
    hits, scanned = scan(tmp_path, files)
    assert [h["path"] for h in hits] == ["ok.py"]
    assert scanned == 1
    big = tmp_path / "big.txt"
    big.write_text("TODO(critical)\n" + "x" * (pf.MAX_SCAN_BYTES + 1))
    hits, _ = pf.scan_markers(str(tmp_path), [("big.txt", str(big))])
    assert hits == []


def test_extra_excludes_and_custom_pattern(tmp_path):
    files = {"README.md": "TODO(critical) in docs\n", "a.py": "# XXX-BLOCKER\n"}
    hits, _ = scan(tmp_path, files, exclude=("*.md",))
    assert hits == []
    hits, _ = scan(tmp_path, files, pattern=r"XXX-BLOCKER", exclude=("*.md",))
    assert [(h["path"], h["line"]) for h in hits] == [("a.py", 1)]


def test_hits_are_listed_as_file_line_text_and_capped():
    hits = [{"path": f"m{i}.py", "line": i, "text": "# TODO(critical)"} for i in range(5)]
    assert pf.format_hits(hits, 2) == ["m0.py:0: # TODO(critical)", "m1.py:1: # TODO(critical)",
                                       "... and 3 more"]
    assert len(pf.format_hits(hits, 10)) == 5


# -- CHANGELOG --------------------------------------------------------------------

V1 = """# Changelog

## [Unreleased]
- something

## [1.0.0] - 2026-01-01
### Added
- first
"""
V2 = V1.replace("## [1.0.0]", "## [2.0.0] - 2026-02-01\n- second\n\n## [1.0.0]")


def test_versions_are_read_from_the_headings():
    assert pf.changelog_versions(V2) == ["2.0.0", "1.0.0"]
    assert pf.changelog_versions("## 1.2\n## v3.0.0-rc.1 (soon)\n### 9.9.9\n") == ["1.2", "3.0.0-rc.1"]
    assert pf.newest_version("# Changelog\n\nnothing yet\n") is None


@pytest.mark.parametrize("older,newer", [
    ("1.0.0", "2.0.0"),
    ("1.9.0", "1.10.0"),
    ("1.0", "1.0.1"),
    ("2.0.0-rc.1", "2.0.0"),
    ("2.0.0-rc.2", "2.0.0-rc.10"),
    ("2.0.0-alpha", "2.0.0-beta"),
])
def test_semantic_version_order(older, newer):
    assert pf.version_key(older) < pf.version_key(newer)


def test_newest_is_the_highest_not_the_first():
    assert pf.newest_version("## [1.0.0]\n## [1.2.0]\n## [1.1.0]\n") == "1.2.0"


def test_a_new_entry_passes():
    result = pf.check_changelog(V2, V1)
    assert result["ok"] and result["newest"] == "2.0.0" and result["serving_newest"] == "1.0.0"


@pytest.mark.parametrize("new", [V1, V1.replace("1.0.0", "0.9.0")])
def test_no_newer_entry_fails(new):
    result = pf.check_changelog(new, V1)
    assert not result["ok"]
    assert "no entry newer than 1.0.0" in result["reason"]


def test_first_deploy_needs_one_entry():
    assert pf.check_changelog(V1, None)["ok"]
    assert not pf.check_changelog("# Changelog\n## [Unreleased]\n", None)["ok"]
    missing = pf.check_changelog(None, None)
    assert not missing["ok"] and "no CHANGELOG.md" in missing["reason"]


def test_serving_changelog_without_versions_counts_as_none():
    assert pf.check_changelog(V1, "# Changelog\n")["ok"]


# -- disk -------------------------------------------------------------------------------


def test_nearest_existing_walks_up(tmp_path):
    assert pf.nearest_existing(str(tmp_path / "a" / "b")) == str(tmp_path)
    assert pf.nearest_existing(str(tmp_path)) == str(tmp_path)


def fake_fs(mapping):
    """mapping: path prefix -> (dev, free_mb)."""
    def owner(path):
        best = max((p for p in mapping if path == p or path.startswith(p.rstrip("/") + "/")), key=len)
        return mapping[best]

    def stat(path):
        return SimpleNamespace(st_dev=owner(path)[0])

    def statvfs(path):
        return SimpleNamespace(f_bavail=owner(path)[1] * 256, f_blocks=100000 * 256, f_frsize=4096)
    return stat, statvfs


def test_needs_on_one_filesystem_add_up(tmp_path):
    stat, statvfs = fake_fs({"/": (1, 1000)})
    needs = [{"name": "app_root", "path": str(tmp_path), "need_mb": 300},
             {"name": "Docker data", "path": str(tmp_path), "need_mb": 800}]
    result = pf.check_disk(needs, statvfs=statvfs, stat=stat)
    assert not result["ok"]
    assert len(result["filesystems"]) == 1
    assert "has 1000 MB free, needs 1100 MB" in result["short"][0]
    needs[1]["need_mb"] = 700
    assert pf.check_disk(needs, statvfs=statvfs, stat=stat)["ok"]


def test_filesystems_are_checked_separately(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    stat, statvfs = fake_fs({"/": (1, 5000), str(b): (2, 100)})
    needs = [{"name": "app_root", "path": str(a), "need_mb": 300},
             {"name": "backups", "path": str(b / "backups"), "need_mb": 200}]
    result = pf.check_disk(needs, statvfs=statvfs, stat=stat)
    assert not result["ok"]
    assert len(result["filesystems"]) == 2
    assert result["short"] == [
        f"the filesystem of {b} has 100 MB free, needs 200 MB for backups {b}/backups (200 MB)"]


def test_real_disk_is_measured(tmp_path):
    result = pf.check_disk([{"name": "x", "path": str(tmp_path / "new"), "need_mb": 0}])
    assert result["ok"] and result["filesystems"][0]["free_mb"] > 0


# -- migrations --------------------------------------------------------------------------


def test_heads_are_parsed():
    assert mc.parse_heads("0002 (head)\n") == ["0002"]
    assert mc.parse_heads("INFO something\n0003a (head)\n0003b (head)\n") == ["0003a", "0003b"]
    assert mc.parse_heads("") == []
    assert mc.parse_heads("abc (effective head)\n") == ["abc"]


class FakeDatabase:
    name = "fake"

    def __init__(self):
        self.created = []

    def create_db(self, name):
        self.created.append(name)
        return f"postgresql://fake/{name}"


# A stand-in for alembic: records "<url> <target>" and fails on a chosen target.
FAKE_ALEMBIC = """
import os, sys
target = sys.argv[2]
with open(os.environ["LOG"], "a") as fh:
    fh.write(os.environ["DATABASE_URL"] + " " + target + "\\n")
if target == os.environ.get("FAIL_ON"):
    print("sqlalchemy.exc.ProgrammingError: boom")
    sys.exit(1)
"""


def fake_command(tmp_path):
    script = tmp_path / "fake_alembic.py"
    script.write_text(FAKE_ALEMBIC)
    return [sys.executable, str(script)]


def test_upgrade_runs_from_each_serving_revision_on_its_own_database(tmp_path):
    log = tmp_path / "log"
    env = dict(os.environ, LOG=str(log))
    db = FakeDatabase()
    result = mc.check_upgrade(db, fake_command(tmp_path), ["0001", "", "0001"], str(tmp_path), 30, env)
    assert result["ok"], result
    assert db.created == ["preflight_0", "preflight_1"]
    assert log.read_text().splitlines() == [
        "postgresql://fake/preflight_0 0001",
        "postgresql://fake/preflight_0 head",
        "postgresql://fake/preflight_1 head",
    ]


def test_a_failing_upgrade_is_reported_with_its_output(tmp_path):
    env = dict(os.environ, LOG=str(tmp_path / "log"), FAIL_ON="head")
    result = mc.check_upgrade(FakeDatabase(), fake_command(tmp_path), ["0001"], str(tmp_path), 30, env)
    assert not result["ok"]
    assert "upgrading from 0001 to head failed (exit 1)" in result["reason"]
    assert "ProgrammingError: boom" in result["reason"]


def test_no_backend_is_a_skip_never_a_pass(monkeypatch):
    monkeypatch.setattr(mc, "find_pg_bin", lambda dirs=None: None)
    monkeypatch.setattr(mc.DockerPostgres, "usable", staticmethod(lambda docker="docker": False))
    db, why = mc.pick_backend("auto", "postgres:15", "fs", 10)
    assert db is None and "no PostgreSQL server binaries" in why
    db, why = mc.pick_backend("none", "postgres:15", "fs", 10)
    assert db is None and "none" in why


class _FakeEngine:
    def __init__(self, info=None, exec_result=None, error=None):
        self.info, self.exec_result, self.error = info, exec_result, error
        self.calls = []

    def request_json(self, method, path):
        self.calls.append((method, path))
        if self.error:
            raise self.error
        return self.info

    def exec_run(self, container, cmd, timeout=60):
        self.calls.append(("exec", container, cmd[-1]))
        if self.error:
            raise self.error
        return self.exec_result


def test_docker_root_comes_from_the_engine_or_the_fallback():
    engine = _FakeEngine(info={"DockerRootDir": "/srv/docker"})
    assert pf.docker_root(engine, "/var/lib/docker") == "/srv/docker"
    assert pf.docker_root(_FakeEngine(info={}), "/var/lib/docker") == "/var/lib/docker"
    assert pf.docker_root(_FakeEngine(error=OSError("no socket")), "/x") == "/x"


@pytest.mark.parametrize("result,mb", [
    ((0, "1\n", ""), 1),                    # rounded up
    ((0, str(3 * 1048576) + "\n", ""), 3),  # exact
    ((2, "", "database does not exist"), 0),
    ((0, "not a number", ""), 0),
])
def test_database_size_in_mb(result, mb):
    eng = _FakeEngine(exec_result=result)
    assert pf.database_size_mb(eng, "db", "u", "d") == mb
    assert eng.calls == [("exec", "db", "SELECT pg_database_size(current_database())")]


def test_database_size_is_zero_without_a_container():
    engine = _FakeEngine(error=RuntimeError("No such container"))
    assert pf.database_size_mb(engine, "db", "u", "d") == 0


def test_a_second_throwaway_cluster_is_copied_from_the_first_ones_fresh_data():
    # scripts/setup installs PostgreSQL's server binaries: without them this fails, not skips
    assert mc.LocalPostgres.usable(mc.find_pg_bin()), "no PostgreSQL server binaries (initdb, pg_ctl)"
    clusters = []
    try:
        for _ in range(2):
            cluster = mc.LocalPostgres(mc.find_pg_bin(), timeout=60)
            clusters.append(cluster)
            cluster.start()
            url = cluster.create_db("t")
            assert url.startswith("postgresql://postgres@127.0.0.1:")
        # the first may have made the template (or found one); the second used it
        assert clusters[1].from_template
        template = clusters[1]._template_path()
        assert template and os.path.isfile(os.path.join(template, "PG_VERSION"))
        assert not os.path.exists(os.path.join(template, "postmaster.pid"))  # never started
    finally:
        for cluster in clusters:
            cluster.stop()
