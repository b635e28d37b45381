"""Fault injection against a real deploy: each fault leaves the service up and
no committed row lost.

One app is deployed once for the whole module (v2 of the sample app, with its
backups on a small tmpfs so that a full disk can be made on purpose); every
test then throws one fault at it and checks that the serving release still
serves, or that the automatic rollback put it back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import uuid

import pytest
from harness import ROOT, Deployment, docker, failed_tasks, make_source
from traffic import webhook_load, webhook_outcome

pytestmark = pytest.mark.integration

TOKEN = "100002:demo-master-token"  # master_bot's token in the local inventory


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def overlay(tmp_path, name: str, files: dict) -> str:
    base = tmp_path / name
    for rel, text in files.items():
        write(str(base / rel), text)
    return str(base)


MASTER_MAIN = "field_service/bots/master_bot/main.py"
CRITICAL_AFTER_START = '''"""master_bot that reports a critical error shortly after it started."""
import logging
import sys
import threading

from field_service.runner import run_bot
from field_service.updates import default_reply


def main() -> int:
    threading.Timer(3.0, lambda: logging.getLogger("field_service").critical(
        "payment gateway unreachable")).start()
    return run_bot("master_bot", "polling", default_reply)


if __name__ == "__main__":
    sys.exit(main())
'''
CRASH_AT_START = '''"""master_bot that crashes at start."""
import sys

print("CRITICAL cannot load the tariff table", flush=True)
sys.exit(3)
'''
MIGRATION_0003 = '''"""v3: a column the crashing release needs

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("processed_updates", sa.Column("tariff", sa.Text()))


def downgrade():
    op.drop_column("processed_updates", "tariff")
'''
BROKEN_0003 = '''"""broken half way"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("processed_updates", sa.Column("half", sa.Text()))
    op.execute("SELECT no_such_function()")


def downgrade():
    pass
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """v2 of the sample app deployed once, backups on a 24 MB tmpfs."""
    d = Deployment.isolated("fs_fault", lambda n: str(tmp_path_factory.mktemp(n)))
    d.extravars.update({
        "health_check_timeout": 20,
        "graceful_restart_ready_timeout": 40,
        # The faults below are those that get past the control node's
        # pre-deploy checks (a migration that only fails on the server's
        # data, a crash that only happens there, ...): the checks that would
        # stop them earlier, or that a 24 MB backup disk fails on purpose,
        # are skipped here, as a user can (tests/integration/test_preflight.py
        # covers them).
        "preflight_check_migrations": False,
        "preflight_check_changelog": False,
        "preflight_check_disk": False,
        # few releases kept, so that the deploys below prune some (and
        # their pre-deploy backups: see the last test)
        "code_sync_keep_releases": 2,
    })
    os.makedirs(d.backup_root, mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", d.backup_root],
                             capture_output=True).returncode == 0
    d.mounted = mounted
    try:
        make_source(d.extravars["code_sync_source_dir"], 2)
        r = d.run("deploy.yml")
        assert r.status == "successful", failed_tasks(r)
        yield d
    finally:
        if mounted:
            subprocess.run(["umount", "-l", d.backup_root], check=False)
        d.destroy()


def serving(d: Deployment) -> list[str]:
    return sorted(c["Names"] for c in d.containers())


def assert_serves(d: Deployment, release: str) -> None:
    assert d.current_release() == release
    assert serving(d) == [f"{d.name}_admin_bot_{release}", f"{d.name}_master_bot_{release}"]
    # and it still works: an update sent now is answered by the serving release
    text = "ping-" + uuid.uuid4().hex[:6]
    d.telegram("POST", f"/_control/{TOKEN}/updates", {"text": text, "chat_id": 7})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if text in str(d.telegram("GET", f"/_control/{TOKEN}/sent")["result"]):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"no answer to {text} from release {release}")
    rows = d.psql(f"SELECT release FROM processed_updates WHERE text = '{text}'").split()
    assert rows == [release]
    # no committed row lost: every row seen by an earlier check is still
    # there, and this check's own update is one more
    count = committed_rows(d)
    assert count >= getattr(d, "rows_seen", 0) + 1, (count, getattr(d, "rows_seen", 0))
    d.rows_seen = count


def committed_rows(d: Deployment) -> int:
    return int(d.psql("SELECT count(*) FROM processed_updates"))


def last_log(d: Deployment) -> list[str]:
    with open(d.logs()[-1], encoding="utf-8") as fh:
        return [re.sub(r"^\[[^]]+\] ", "", line) for line in fh.read().splitlines()]


def plain_v2(d: Deployment, version: str) -> None:
    """The source back to plain v2, with a new version number (a new release)."""
    src = os.path.join(d.workdir, "src")
    make_source(src, 2)
    write(os.path.join(src, "field_service", "VERSION"), version + "\n")


def new_log_name():
    time.sleep(1.1)  # deploy logs are named by the second


def test_failed_migration_leaves_schema_and_release(served, tmp_path):
    d = served
    rel = d.current_release()
    before = committed_rows(d)
    make_source(os.path.join(d.workdir, "src"), 2,
                overlays=(overlay(tmp_path, "m", {"migrations/versions/0003_broken.py": BROKEN_0003}),))
    new_log_name()
    r = d.run("deploy.yml")
    assert r.status == "failed"
    assert any("Migrations failed" in t for t in failed_tasks(r)), failed_tasks(r)
    assert d.psql("SELECT version_num FROM alembic_version") == "0002"
    cols = d.psql("SELECT column_name FROM information_schema.columns WHERE table_name='processed_updates'")
    assert "half" not in cols.split()
    # the never-activated release was removed, the old one serves on
    assert sorted(os.listdir(os.path.join(d.app_root, "releases"))) == [rel]
    assert last_log(d)[-1] == "DEPLOYMENT FAILED"
    assert_serves(d, rel)
    assert committed_rows(d) >= before + 1


def test_critical_log_line_triggers_automatic_rollback(served, tmp_path):
    d = served
    rel = d.current_release()
    make_source(os.path.join(d.workdir, "src"), 2,
                overlays=(overlay(tmp_path, "c", {MASTER_MAIN: CRITICAL_AFTER_START}),))
    new_log_name()
    r = d.run("deploy.yml")
    assert r.status == "failed"
    log = last_log(d)
    failed = [m for m in log if m.startswith("Health check: FAILED (master_bot:")]
    assert failed and "critical" in failed[0].lower(), log
    assert f"Rolling back to {rel}..." in log and f"Rollback complete: {rel} is serving" in log
    assert log[-1] == "DEPLOYMENT FAILED"
    assert_serves(d, rel)
    bad = [x for x in os.listdir(os.path.join(d.app_root, "releases")) if x != rel]
    assert len(bad) == 1
    import json
    with open(os.path.join(d.app_root, "releases", bad[0], "RELEASE.json"), encoding="utf-8") as fh:
        assert json.load(fh)["outcome"] == "rolled_back"


def test_new_container_that_never_gets_ready(served):
    d = served
    rel = d.current_release()
    plain_v2(d, "2.0.1")
    new_log_name()
    load = webhook_load(d, 50, first_update_id=5_000_000).start()
    r = d.run("deploy.yml", graceful_restart_ready_timeout=10,
              graceful_restart_healthcheck={"test": ["CMD", "false"], "interval": "1s", "retries": 1})
    time.sleep(1)
    web = webhook_outcome(d, load.stop(), first_id=5_000_000)
    assert r.status == "failed"
    assert any("did not become ready" in t for t in failed_tasks(r)), failed_tasks(r)
    # under load all along, not one webhook request failed, none was lost
    assert web["requests_sent"] >= 250 and web["requests_failed"] == 0, web
    assert web["answered_not_stored"] == 0, web
    assert sorted(c["Names"] for c in d.containers(all_=True)) == [
        f"{d.name}_admin_bot_{rel}", f"{d.name}_master_bot_{rel}"]
    assert_serves(d, rel)


def test_two_deploys_at_once_one_is_refused(served):
    d = served
    plain_v2(d, "2.0.2")
    new_log_name()
    first = d.popen("deploy.yml", "first.out")
    time.sleep(4)  # the first holds the lock by now (preflight is skipped)
    second = d.popen("deploy.yml", "second.out")
    assert second.wait(timeout=300) != 0
    assert first.wait(timeout=600) == 0, d.output("first.out")[-3000:]
    refused = d.output("second.out")
    assert "Another run holds the deploy lock: deploy.yml by" in refused and "since" in refused
    assert "stale" not in refused  # the holder runs: it must not be offered for breaking
    assert d.current_release() and len(serving(d)) == 2
    assert_serves(d, d.current_release())


def test_cron_backup_during_a_deploy_is_serialized(served):
    d = served
    plain_v2(d, "2.0.3")
    new_log_name()
    deploy = d.popen("deploy.yml", "deploy.out")
    # a scheduled backup starts while the deploy runs; both take the same lock
    time.sleep(3)
    cron = subprocess.run(
        ["python3", os.path.join(ROOT, "roles", "backup", "files", "fs-backup"), "dump",
         "--db-container", f"{d.name}_db", "--db-user", "field_service", "--db-name", "field_service",
         "--dest-dir", os.path.join(d.backup_root, "daily"),
         "--name-format", "field_service_%Y%m%d_%H%M%S.sql.gz",
         "--lock-file", os.path.join(d.backup_root, ".fs_backup.lock"), "--lock-timeout", "300", "--json"],
        capture_output=True, text=True, timeout=400)
    assert cron.returncode == 0, cron.stderr
    assert deploy.wait(timeout=600) == 0, d.output("deploy.out")[-3000:]
    assert os.listdir(os.path.join(d.backup_root, "daily"))
    assert_serves(d, d.current_release())


def test_disk_full_during_the_pre_deploy_backup(served):
    d = served
    if not getattr(d, "mounted", False):
        pytest.skip("could not mount a tmpfs for the backups")
    rel = d.current_release()
    releases_before = sorted(os.listdir(os.path.join(d.app_root, "releases")))
    filler = os.path.join(d.backup_root, "filler")
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"], capture_output=True)
    try:
        plain_v2(d, "2.0.4")
        new_log_name()
        r = d.run("deploy.yml")
        assert r.status == "failed"
        assert any("disk full" in t or "No space left" in t for t in failed_tasks(r)), failed_tasks(r)
        # aborted before anything changed: no upload, no new container, same release
        assert sorted(os.listdir(os.path.join(d.app_root, "releases"))) == releases_before
        assert not any(f.endswith(".partial") for f in os.listdir(os.path.join(d.backup_root, "deploy")))
        assert_serves(d, rel)
    finally:
        os.unlink(filler)


# "Creating backup...": the backup is an async job that outlives the killed run
@pytest.mark.parametrize("kill_at", ["Creating backup...", "Uploading code...", "Graceful restart..."])
def test_killed_deploy_then_next_deploy_completes(served, kill_at):
    d = served
    plain_v2(d, f"2.1.{len(kill_at)}")
    new_log_name()
    old_logs = set(d.logs())
    proc = d.popen("deploy.yml", "killed.out")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        mine = sorted(set(d.logs()) - old_logs)  # this run's log only
        if mine and kill_at in open(mine[-1], encoding="utf-8").read():
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the deploy ended before the kill point"
    # kill -9 of the whole run (ansible-playbook and its workers), as when a
    # terminal or the CI runner dies
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    # the next deploy is refused: the lock of the killed run is stale ...
    new_log_name()
    r = d.run("deploy.yml")
    assert r.status == "failed"
    assert any("stale lock" in t and "deploy_lock_break=true" in t for t in failed_tasks(r)), failed_tasks(r)
    # ... and completes when told to release it
    new_log_name()
    r = d.run("deploy.yml", deploy_lock_break=True)
    assert r.status == "successful", failed_tasks(r)
    rel = d.current_release()
    assert_serves(d, rel)
    releases = os.listdir(os.path.join(d.app_root, "releases"))
    assert not [x for x in releases if x.endswith(".partial") or x.startswith(".")]
    assert not os.path.exists(os.path.join(d.app_root, ".current.new"))


def test_crash_at_start_after_a_migration_keeps_the_old_release(served, tmp_path):
    d = served
    rel = d.current_release()
    before = committed_rows(d)
    make_source(os.path.join(d.workdir, "src"), 2, overlays=(overlay(tmp_path, "x", {
        "migrations/versions/0003_tariff.py": MIGRATION_0003, MASTER_MAIN: CRASH_AT_START}),))
    new_log_name()
    r = d.run("deploy.yml")
    assert r.status == "failed"
    assert any("did not become ready" in t for t in failed_tasks(r)), failed_tasks(r)
    assert d.psql("SELECT version_num FROM alembic_version") == "0003"  # additive: old code runs on it
    assert_serves(d, rel)
    assert committed_rows(d) >= before + 1


def test_pre_deploy_backups_are_kept_with_their_releases(served):
    """After the deploys above pruned releases, the pre-deploy backups left are
    those the kept releases were deployed after, and the newest one."""
    import json
    d = served
    releases = [r for r in os.listdir(os.path.join(d.app_root, "releases")) if not r.startswith(".")]
    assert 1 <= len(releases) <= 2
    logs = [open(p, encoding="utf-8").read() for p in d.logs()]
    taken = sum(text.count("Backup created: ") for text in logs)
    assert taken >= 4, "the deploys above should have taken several pre-deploy backups"
    wanted = set()
    for rel in releases:
        with open(os.path.join(d.app_root, "releases", rel, "RELEASE.json"), encoding="utf-8") as fh:
            backup = json.load(fh).get("backup")
        if backup:
            wanted.add(backup)
    folder = os.path.join(d.backup_root, "deploy")
    backups = sorted(f for f in os.listdir(folder) if f.startswith("backup_") and not f.endswith(".sha256"))
    assert wanted <= set(backups)
    assert set(backups) <= wanted | {backups[-1]}, (backups, wanted)
    assert len(backups) < taken  # some were pruned with their releases
    for name in backups:  # each with its checksum, and no orphan checksum
        assert os.path.exists(os.path.join(folder, name + ".sha256"))
    assert {f[:-7] for f in os.listdir(folder) if f.endswith(".sha256")} == set(backups)



def test_a_failed_automatic_rollback_is_reported_as_such(served, tmp_path):
    """The new release fails its health check and the release that served
    before cannot come back (its image and the Dockerfile to rebuild it are
    gone): the deploy says that the automatic rollback failed, where, and
    what to run, not "Deploy failed at ...". (Last: it leaves the bad
    release serving.)"""
    d = served
    rel = d.current_release()
    # the new release: v2 with the schema's newest migration (the crash test
    # above left the database at 0003) and a critical line after start
    make_source(os.path.join(d.workdir, "src"), 2, overlays=(overlay(tmp_path, "f", {
        "migrations/versions/0003_tariff.py": MIGRATION_0003, MASTER_MAIN: CRITICAL_AFTER_START,
        "field_service/VERSION": "2.0.9\n"}),))
    assert d.psql("SELECT version_num FROM alembic_version") == "0003"
    docker("rmi", "-f", f"{d.name}:{rel}")  # the running containers keep theirs
    os.unlink(os.path.join(d.app_root, "releases", rel, "Dockerfile"))
    new_log_name()
    r = d.run("deploy.yml")
    assert r.status == "failed"
    reasons = failed_tasks(r)
    final = [t for t in reasons if "the automatic rollback to " + rel + " failed at '" in t]
    assert final, reasons
    assert final[-1].split(": ", 1)[1].startswith("Health check: FAILED (master_bot:"), final
    assert "playbooks/rollback.yml -e release=" + rel in final[-1]
    assert not any("Deploy failed at" in t for t in reasons), reasons
    log = last_log(d)
    assert f"Rolling back to {rel}..." in log and f"Rollback complete: {rel} is serving" not in log
    assert log[-1] == "DEPLOYMENT FAILED"
