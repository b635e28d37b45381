"""playbooks/rollback.yml after a real v1 -> v2 deploy.

Given v1 then v2 (a schema change) deployed (the deployment that
test_zero_downtime deployed v2 to under traffic), When the rollback runs, Then v1's
containers serve again from its kept image (no rebuild), the current link
points at v1, the records say what happened, and the rollback log reads
START ROLLBACK ... ROLLBACK SUCCESS. With rollback_restore_db=auto the
database goes back to v1's schema from the pre-deploy backup, after a safety
backup that still holds the rows written since the deploy.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import time

import pytest
from harness import changed_tasks, docker, failed_tasks

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def v1_then_v2(v1_then_v2_under_traffic):
    """v1 then v2 deployed: the deployment test_zero_downtime checked (it
    runs first, on the same worker: conftest.py), rolled back here."""
    d = v1_then_v2_under_traffic["d"]
    d.rel1, d.rel2 = v1_then_v2_under_traffic["v1"], v1_then_v2_under_traffic["v2"]
    assert d.current_release() == d.rel2
    return d


def messages(path):
    with open(path, encoding="utf-8") as fh:
        return [re.sub(r"^\[[^]]+\] ", "", line) for line in fh.read().splitlines()]


def serving(d):
    return sorted(c["Names"] for c in d.containers())


def test_rollback_code_only_is_quick_and_needs_no_build(v1_then_v2):
    d = v1_then_v2
    images_before = docker("images", "--format", "{{.ID}}", f"{d.name}").split()
    time.sleep(1.1)
    start = time.monotonic()
    r = d.run("rollback.yml", rollback_restore_db="never")
    elapsed = time.monotonic() - start
    assert r.status == "successful", failed_tasks(r)
    assert d.current_release() == d.rel1
    assert serving(d) == [f"{d.name}_admin_bot_{d.rel1}", f"{d.name}_master_bot_{d.rel1}"]
    # no rebuild: the same images, and the build task did not change anything
    assert docker("images", "--format", "{{.ID}}", f"{d.name}").split() == images_before
    assert not any("Build the release image" in t for t in changed_tasks(r))
    # schema untouched (never), v1 runs on the additive v2 schema
    assert d.psql("SELECT version_num FROM alembic_version") == "0002"
    log = [p for p in d.logs() if os.path.basename(p).startswith("rollback_")]
    assert log, d.logs()
    msgs = messages(log[-1])
    assert msgs[0] == "START ROLLBACK" and msgs[-1] == "ROLLBACK SUCCESS"
    assert "Health check: PASSED" in msgs
    with open(os.path.join(d.app_root, "releases", d.rel2, "RELEASE.json"), encoding="utf-8") as fh:
        assert json.load(fh)["outcome"] == "rolled_back"
    print(f"\nrollback (no database restore) took {elapsed:.1f} s")
    # forward again for the next test
    time.sleep(1.1)
    r = d.run("rollback.yml", release=d.rel2, rollback_restore_db="never")
    assert r.status == "successful", failed_tasks(r)
    assert d.current_release() == d.rel2


def test_unknown_release_is_refused_before_anything_changes(v1_then_v2):
    d = v1_then_v2
    r = d.run("rollback.yml", release="nosuchrelease")
    assert r.status == "failed"
    assert any("nosuchrelease is not on the server" in t for t in failed_tasks(r)), failed_tasks(r)
    assert d.current_release() == d.rel2


def test_rollback_auto_restores_the_schema_after_a_safety_backup(v1_then_v2):
    d = v1_then_v2
    assert d.current_release() == d.rel2
    # rows written after the v2 deploy
    d.psql("INSERT INTO processed_updates (service, update_id, text, release) "
           "VALUES ('master_bot', 990001, 'written-after-deploy', 'v2')")
    time.sleep(1.1)
    r = d.run("rollback.yml")  # rollback_restore_db=auto: the deploy changed the schema
    assert r.status == "successful", failed_tasks(r)
    assert d.current_release() == d.rel1
    assert d.psql("SELECT version_num FROM alembic_version") == "0001"
    assert d.psql("SELECT count(*) FROM processed_updates WHERE update_id = 990001") == "0"
    safety = [f for f in os.listdir(os.path.join(d.backup_root, "safety")) if f.endswith(".sql.gz")]
    assert len(safety) == 1
    path = os.path.join(d.backup_root, "safety", safety[0])
    assert os.stat(path).st_mode & 0o777 == 0o600
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        assert "written-after-deploy" in fh.read()
    msgs = messages([p for p in d.logs() if os.path.basename(p).startswith("rollback_")][-1])
    assert any(m.startswith("Safety backup: ") and safety[0] in m for m in msgs), msgs
    # the writers stop BEFORE the safety backup: nothing they write is lost
    # between the two (the same procedure as restore.yml)
    order = ["Stopping services of release " + d.rel2, "Creating backup...", "Backup created: safety_",
             "Restoring database from ", "Database restored", "Graceful restart...", "Health check: PASSED"]
    pos = 0
    for want in order:
        while pos < len(msgs) and not msgs[pos].startswith(want):
            pos += 1
        assert pos < len(msgs), f"{want!r} missing or out of order in {msgs}"
    assert msgs[-1] == "ROLLBACK SUCCESS"
    assert serving(d) == [f"{d.name}_admin_bot_{d.rel1}", f"{d.name}_master_bot_{d.rel1}"]
