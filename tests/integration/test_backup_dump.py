"""The backup program's ``dump`` against a real Docker engine and PostgreSQL.

One ``postgres:15`` container (``fs_test_backup_<random>``, on its own
network) holds two databases: ``appdb`` (mixed rows: unicode, JSON, NULLs,
bytea, arrays, a view, sequences) and ``bigdb`` (~45 MB of SQL, for dumps
that must still be running when the test strikes). The program runs as a
subprocess exactly as Ansible and cron run it (the entry script
roles/backup/files/fs-backup); restores go through ``gunzip -c`` /
``zstd -dc`` into ``psql`` in a fresh database.

Slow dumps are made deterministic with a table lock: a psql session holding
``ACCESS EXCLUSIVE`` on a table makes pg_dump wait until it commits.

The pipeline itself (run_pipeline, no Docker) is tested by import in
tests/unit/test_backup_pipeline.py.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest
from backup_helpers import FS_BACKUP, PG_IMAGE, error_line

DB_USER = "fsuser"
DB_PASSWORD = "s3cret pass'word"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d fs_backup (INFO|WARNING|ERROR) \S")

APP_SQL = r"""
CREATE TABLE customers (
    id serial PRIMARY KEY,
    name text NOT NULL,
    note text,
    profile jsonb,
    raw json,
    tags text[],
    balance numeric(12, 2),
    created timestamptz NOT NULL DEFAULT now(),
    photo bytea
);
INSERT INTO customers (name, note, profile, raw, tags, balance, photo) VALUES
  ('Ёжик в тумане 🦔', E'multi\nline', '{"city": "Москва", "langs": ["ru", "en"], "vip": true}',
   '{"k": [1, 2.5, null], "s": "ü"}', ARRAY['a', 'б', 'c d'], 12.30, '\xdeadbeef'),
  ('汉字テスト', NULL, NULL, NULL, NULL, NULL, NULL),
  (E'tab\there "quotes" back\\slash', '', '{}', '[]', '{}', -0.01, ''),
  (E'copy \\. terminator \\N not null', E'\\N', 'null', 'null', ARRAY[NULL, 'x'], 0, NULL);
INSERT INTO customers (name, note, profile, balance)
  SELECT 'customer ' || g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'note ' || g END,
         jsonb_build_object('n', g, 'sq', g * g, 'name', 'Zoë ' || g), g * 1.5
  FROM generate_series(1, 2000) g;
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers (id),
    amount numeric(10, 2),
    status text CHECK (status IN ('new', 'done')),
    meta jsonb
);
INSERT INTO orders (customer_id, amount, status, meta)
  SELECT (g % 2000) + 1, g * 0.25, CASE WHEN g % 2 = 0 THEN 'new' ELSE 'done' END,
         CASE WHEN g % 5 = 0 THEN NULL ELSE jsonb_build_object('g', g, 'ключ', 'значение') END
  FROM generate_series(1, 5000) g;
CREATE INDEX orders_customer_idx ON orders (customer_id);
CREATE VIEW order_totals AS
  SELECT customer_id, sum(amount) AS total, count(*) AS n FROM orders GROUP BY customer_id;
"""

BIG_SQL = """
CREATE TABLE big AS
  SELECT g AS id, md5(g::text) || repeat(md5((g * 7)::text), 9) AS payload
  FROM generate_series(1, 150000) g;
"""

FINGERPRINT_SQL = [
    "SELECT count(*), count(*) FILTER (WHERE note IS NULL), count(*) FILTER (WHERE note = '')"
    " FROM customers",
    "SELECT md5(string_agg(c::text, E'\\n' ORDER BY c.id)) FROM customers c",
    "SELECT count(*), count(*) FILTER (WHERE meta IS NULL) FROM orders",
    "SELECT md5(string_agg(o::text, E'\\n' ORDER BY o.id)) FROM orders o",
    "SELECT md5(string_agg(v::text, E'\\n' ORDER BY v.customer_id)) FROM order_totals v",
    "SELECT last_value FROM customers_id_seq",
    "SELECT last_value FROM orders_id_seq",
    "SELECT name || '|' || raw::text || '|' || array_to_string(tags, ',') FROM customers WHERE id = 1",
    "SELECT indexname FROM pg_indexes WHERE tablename = 'orders' ORDER BY 1",
]


def _files(directory) -> set[str]:
    return set(os.listdir(directory))


# ---------------------------------------------------------------------------
# Docker helpers


def docker(*args, check=True, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True,
                            timeout=timeout, check=False, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:3])} failed: {result.stderr}")
    return result


class Pg:
    def __init__(self, container: str, network: str):
        self.container = container
        self.network = network
        self._dbs = 0

    def psql(self, db: str, sql: str) -> str:
        result = docker("exec", "-i", self.container, "psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                        "-U", DB_USER, "-d", db, input=sql)
        return result.stdout

    def fingerprint(self, db: str) -> list[str]:
        return [self.psql(db, sql).strip() for sql in FINGERPRINT_SQL]

    def fresh_db(self) -> str:
        self._dbs += 1
        name = f"restore_{self._dbs}"
        self.psql("postgres", f'CREATE DATABASE "{name}" OWNER {DB_USER}')
        return name

    def restore(self, path: str, decompress: list[str] | None) -> str:
        """decompress | psql into a fresh database; return its name."""
        db = self.fresh_db()
        psql = ["docker", "exec", "-i", self.container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                "-U", DB_USER, "-d", db]
        if decompress is None:
            with open(path, "rb") as handle:
                result = subprocess.run(psql, stdin=handle, capture_output=True, timeout=120)
        else:
            source = subprocess.Popen([*decompress, path], stdout=subprocess.PIPE)
            result = subprocess.run(psql, stdin=source.stdout, capture_output=True, timeout=120)
            source.stdout.close()
            assert source.wait(timeout=30) == 0
        assert result.returncode == 0, result.stderr.decode()
        assert b"ERROR" not in result.stderr, result.stderr.decode()
        return db

    def dump_sessions(self, pid: int) -> int:
        """Server sessions of the pg_dump started by fs_backup process ``pid``."""
        return int(self.psql("postgres", "SELECT count(*) FROM pg_stat_activity "
                                         f"WHERE application_name LIKE 'fs_backup_{pid}_%'"))


@pytest.fixture(scope="module")
def pg():
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    try:
        info = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"Docker engine not answering: {exc}")
    if info.returncode != 0:
        pytest.skip(f"Docker engine not answering: {info.stderr.strip()}")
    if docker("image", "inspect", PG_IMAGE, check=False).returncode != 0:
        pytest.skip(f"image {PG_IMAGE} is not available locally (nothing can be pulled)")

    suffix = uuid.uuid4().hex[:10]
    container, network = f"fs_test_backup_{suffix}", f"fs_test_backup_net_{suffix}"
    docker("network", "create", network)
    try:
        docker("run", "-d", "--name", container, "--network", network,
               "-e", f"POSTGRES_USER={DB_USER}", "-e", f"POSTGRES_PASSWORD={DB_PASSWORD}",
               "-e", "POSTGRES_DB=appdb", PG_IMAGE)
        deadline = time.monotonic() + 90
        # TCP readiness: the entrypoint's temporary init server listens on no port.
        while docker("exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", DB_USER,
                     check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(docker("logs", container, check=False).stderr[-2000:])
            time.sleep(0.3)
        server = Pg(container, network)
        server.psql("appdb", APP_SQL)
        server.psql("postgres", "CREATE DATABASE bigdb")
        server.psql("bigdb", BIG_SQL)
        yield server
    finally:
        docker("rm", "-f", "-v", container, check=False)
        docker("network", "rm", network, check=False)


def run_dump(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, FS_BACKUP, "dump", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def start_dump(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, FS_BACKUP, "dump", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def db_args(pg: Pg, db: str = "appdb") -> list[str]:
    return ["--db-container", pg.container, "--db-user", DB_USER, "--db-name", db]


def mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def lock_holder(lock_file) -> int | None:
    try:
        with open(lock_file) as handle:
            return json.loads(handle.read() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class TableLock:
    """A psql session holding ACCESS EXCLUSIVE on a table: pg_dump waits for it."""

    def __init__(self, pg: Pg, db: str, table: str):
        self.proc = subprocess.Popen(
            ["docker", "exec", "-i", pg.container, "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
             "-U", DB_USER, "-d", db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            self.proc.stdin.write(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; "
                                  "SELECT 'locked';\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline().strip() == "locked"
        except BaseException:
            self.proc.kill()  # ends the session, and with it the lock
            self.proc.wait(timeout=30)
            raise

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)


@pytest.fixture
def procs():
    """Processes a test started: killed in the finalizer if still running."""
    started: list = []
    yield started
    for item in started:
        proc = item.proc if isinstance(item, TableLock) else item
        if isinstance(item, TableLock):
            try:
                item.release()
            except Exception:  # noqa: BLE001 - best effort
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


# ---------------------------------------------------------------------------
# Dumps


@pytest.mark.integration
def test_gzip_dump_restores_identically(pg, tmp_path):
    dest, state = tmp_path / "backups" / "deploy", tmp_path / "state"
    before = datetime.datetime.now().replace(microsecond=0)
    result = run_dump(*db_args(pg), "--dest-dir", str(dest), "--lock-file", str(state / ".lock"),
                      "--status-file", str(state / "status.json"), "--log-file", str(state / "log"),
                      "--json")
    after = datetime.datetime.now()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    name = summary["name"]
    # The default name format, in local time.
    match = re.fullmatch(r"backup_(\d{8}_\d{6})\.sql\.gz", name)
    assert match, name
    assert before <= datetime.datetime.strptime(match.group(1), "%Y%m%d_%H%M%S") <= after
    path = dest / name
    assert summary["path"] == str(path)
    assert summary["bytes"] == path.stat().st_size > 0
    assert summary["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["db"] == "appdb" and summary["compress"] == "gzip"
    assert summary["seconds"] >= 0
    assert _files(dest) == {name, name + ".sha256"}

    # Modes: everything 0600, created folders 0700.
    for file in (path, dest / (name + ".sha256"), state / "status.json", state / "log",
                 state / ".lock"):
        assert mode(file) == 0o600, file
    assert mode(dest) == 0o700 and mode(dest.parent) == 0o700

    assert subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=dest,
                          capture_output=True).returncode == 0
    assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0
    verify = subprocess.run([sys.executable, FS_BACKUP, "verify-checksum", str(path)],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and "OK" in verify.stdout, verify.stderr

    status = json.loads((state / "status.json").read_text())
    assert status["last_success"]["file"] == str(path)
    assert status["last_success"]["sha256"] == summary["sha256"]
    assert status["last_success"]["bytes"] == summary["bytes"]
    assert "last_failure" not in status
    log_lines = (state / "log").read_text().splitlines()
    assert log_lines and all(LOG_LINE.match(line) for line in log_lines), log_lines
    assert all(LOG_LINE.match(line) for line in result.stderr.splitlines()), result.stderr

    restored = pg.restore(str(path), ["gunzip", "-c"])
    assert pg.fingerprint(restored) == pg.fingerprint("appdb")
    assert "Ёжик в тумане 🦔" in pg.fingerprint(restored)[7]


@pytest.mark.integration
def test_verify_checksum_detects_a_changed_file(pg, tmp_path):
    result = run_dump(*db_args(pg), "--dest-dir", str(tmp_path), "--name", "a.sql.gz",
                      "--lock-file", str(tmp_path / "lock"))
    assert result.returncode == 0, result.stderr
    data = bytearray((tmp_path / "a.sql.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "a.sql.gz").write_bytes(bytes(data))
    verify = subprocess.run([sys.executable, FS_BACKUP, "verify-checksum", str(tmp_path / "a.sql.gz")],
                            capture_output=True, text=True)
    assert verify.returncode == 1
    assert "checksum mismatch" in error_line(verify.stderr)
    (tmp_path / "a.sql.gz.sha256").unlink()
    verify = subprocess.run([sys.executable, FS_BACKUP, "verify-checksum", str(tmp_path / "a.sql.gz")],
                            capture_output=True, text=True)
    assert verify.returncode == 1 and "no checksum sidecar" in error_line(verify.stderr)


@pytest.mark.integration
def test_zstd_dump_with_utc_name_restores_identically(pg, tmp_path):
    env = dict(os.environ, TZ="Asia/Tokyo")  # local time 9 hours from UTC
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0, tzinfo=None)
    result = run_dump(*db_args(pg), "--dest-dir", str(tmp_path), "--compress", "zstd", "--utc",
                      "--name-format", "db_%Y-%m-%dT%H%M%SZ.sql.zst",
                      "--lock-file", str(tmp_path / ".lock"), "--json", env=env)
    after = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert result.returncode == 0, result.stderr
    name = json.loads(result.stdout)["name"]
    stamp = datetime.datetime.strptime(name, "db_%Y-%m-%dT%H%M%SZ.sql.zst")
    assert before <= stamp <= after
    assert subprocess.run(["zstd", "-tq", str(tmp_path / name)]).returncode == 0
    assert subprocess.run(["sha256sum", "-c", name + ".sha256"], cwd=tmp_path,
                          capture_output=True).returncode == 0
    restored = pg.restore(str(tmp_path / name), ["zstd", "-dcq"])
    assert pg.fingerprint(restored) == pg.fingerprint("appdb")


@pytest.mark.integration
def _without_restrict_keys(sql: bytes) -> bytes:
    """A plain dump without the \\restrict/\\unrestrict lines that recent
    pg_dump releases write with a random key each run."""
    return b"\n".join(line for line in sql.split(b"\n")
                      if not line.startswith((b"\\restrict ", b"\\unrestrict ")))


def test_external_database_through_docker_run(pg, tmp_path, procs):
    args = ["--db-host", pg.container, "--db-port", "5432", "--network", pg.network,
            "--pg-image", PG_IMAGE, "--db-user", DB_USER, "--db-name", "appdb",
            "--dest-dir", str(tmp_path), "--compress", "none", "--lock-file", str(tmp_path / ".lock")]
    result = run_dump(*args, "--name", "ext.sql", env=dict(os.environ, PGPASSWORD=DB_PASSWORD))
    assert result.returncode == 0, result.stderr
    assert DB_PASSWORD not in result.stderr
    sql = (tmp_path / "ext.sql").read_bytes()
    assert b"-- PostgreSQL database dump complete" in sql[-1024:]
    assert b"OWNER TO" not in sql and b"GRANT " not in sql  # --no-owner --no-privileges
    restored = pg.restore(str(tmp_path / "ext.sql"), None)
    assert pg.fingerprint(restored) == pg.fingerprint("appdb")

    # the password on stdin instead (what the role does: never in a command line)
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    piped = subprocess.run([sys.executable, FS_BACKUP, "dump", *args, "--name", "stdin.sql",
                            "--db-password-stdin"], input=DB_PASSWORD + "\n", capture_output=True,
                           text=True, timeout=120, env=env)
    assert piped.returncode == 0, piped.stderr
    # the same dump, but for the random key of pg_dump's \restrict/\unrestrict lines
    assert _without_restrict_keys((tmp_path / "stdin.sql").read_bytes()) == _without_restrict_keys(sql)
    for name in ("stdin.sql", "stdin.sql.sha256"):
        os.unlink(tmp_path / name)

    # or in a file of the run's own, deleted once read (what the role does for a watched run),
    # with the bytes written kept in the progress file
    secret_dir = tmp_path / "run"
    secret_dir.mkdir(mode=0o700)
    (secret_dir / "secret").write_text(DB_PASSWORD + "\n")
    filed = subprocess.run([sys.executable, FS_BACKUP, "dump", *args, "--name", "file.sql", "--json",
                            "--db-password-file", str(secret_dir / "secret"), "--remove-secret-files",
                            "--progress-file", str(secret_dir / "progress")],
                           capture_output=True, text=True, timeout=120, env=env)
    assert filed.returncode == 0, filed.stderr
    assert sorted(os.listdir(secret_dir)) == ["progress"]  # the secret is gone
    progress = json.loads((secret_dir / "progress").read_text())
    assert progress["verb"] == "written" and progress["bytes"] == json.loads(filed.stdout)["bytes"] > 0
    assert _without_restrict_keys((tmp_path / "file.sql").read_bytes()) == _without_restrict_keys(sql)
    for name in ("file.sql", "file.sql.sha256"):
        os.unlink(tmp_path / name)
    shutil.rmtree(secret_dir)

    wrong = run_dump(*args, "--name", "wrong.sql", env=dict(os.environ, PGPASSWORD="nope"))
    assert wrong.returncode == 1
    line = error_line(wrong.stderr)
    assert line.startswith("fs_backup: ERROR: pg_dump exited 1: ")
    assert "password authentication failed" in line
    assert _files(tmp_path) == {"ext.sql", "ext.sql.sha256", ".lock"}

    # Stopped while pg_dump waits for a table lock: the one-off container goes.
    blocker = TableLock(pg, "appdb", "customers")
    procs.append(blocker)
    env = dict(os.environ, PGPASSWORD=DB_PASSWORD)
    dump = start_dump(*args, "--name", "slow.sql", env=env)
    procs.append(dump)
    wait_for(lambda: pg.dump_sessions(dump.pid) == 1, 30, "pg_dump to wait for the table lock", dump)
    dump.send_signal(signal.SIGTERM)
    _, err = dump.communicate(timeout=30)
    assert dump.returncode == 128 + signal.SIGTERM, err
    assert error_line(err) == "fs_backup: ERROR: interrupted by SIGTERM"
    wait_for(lambda: pg.dump_sessions(dump.pid) == 0, 10, "the pg_dump session to end")
    containers = docker("ps", "-aq", "--filter", f"name=fs_backup_{dump.pid}_").stdout
    assert containers.strip() == ""
    assert _files(tmp_path) == {"ext.sql", "ext.sql.sha256", ".lock"}
    blocker.release()


# ---------------------------------------------------------------------------
# The lock


@pytest.mark.integration
def test_second_dump_waits_and_a_short_timeout_fails(pg, tmp_path, procs):
    lock = tmp_path / "lock"
    common = [*db_args(pg), "--dest-dir", str(tmp_path / "b"), "--lock-file", str(lock)]
    blocker = TableLock(pg, "appdb", "orders")
    procs.append(blocker)
    first = start_dump(*common, "--name", "first.sql.gz")
    procs.append(first)
    wait_for(lambda: lock_holder(lock) == first.pid, 20, "the first dump to take the lock", first)

    second = start_dump(*common, "--name", "second.sql.gz", "--lock-timeout", "60")
    procs.append(second)
    started = time.monotonic()
    third = run_dump(*common, "--name", "third.sql.gz", "--lock-timeout", "1")
    assert third.returncode == 3, third.stderr
    assert 0.9 <= time.monotonic() - started < 10
    line = error_line(third.stderr)
    assert re.fullmatch(rf"fs_backup: ERROR: another backup is running \(pid {first.pid} since "
                        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d\); waited 1s", line), line
    assert second.poll() is None and first.poll() is None

    blocker.release()
    assert first.wait(timeout=60) == 0, first.communicate()
    _, second_err = second.communicate(timeout=60)
    assert second.returncode == 0, second_err
    assert f"another backup is running (pid {first.pid}" in second_err
    assert "waiting up to 60s" in second_err
    assert _files(tmp_path / "b") == {"first.sql.gz", "first.sql.gz.sha256",
                                      "second.sql.gz", "second.sql.gz.sha256"}
    assert (tmp_path / "b" / "first.sql.gz").stat().st_mtime <= \
        (tmp_path / "b" / "second.sql.gz").stat().st_mtime


# ---------------------------------------------------------------------------
# Failures


@pytest.mark.integration
def test_wrong_database_fails_and_keeps_older_backups(pg, tmp_path):
    dest, status = tmp_path / "dest", tmp_path / "status.json"
    common = ["--dest-dir", str(dest), "--lock-file", str(tmp_path / ".lock"),
              "--status-file", str(status)]
    ok = run_dump(*db_args(pg), *common, "--name", "old.sql.gz")
    assert ok.returncode == 0, ok.stderr
    old = (dest / "old.sql.gz").read_bytes()

    result = run_dump(*db_args(pg, "no_such_db"), *common, "--name", "new.sql.gz")
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith("fs_backup: ERROR: pg_dump exited 1: ")
    assert 'database "no_such_db" does not exist' in line
    assert _files(dest) == {"old.sql.gz", "old.sql.gz.sha256"}
    assert (dest / "old.sql.gz").read_bytes() == old
    state = json.loads(status.read_text())
    assert state["last_success"]["file"] == str(dest / "old.sql.gz")
    assert "does not exist" in state["last_failure"]["error"]
    assert mode(status) == 0o600


@pytest.mark.integration
def test_stopped_database_container_fails_clearly(pg, tmp_path):
    stopped = f"fs_test_backup_stopped_{uuid.uuid4().hex[:10]}"
    docker("create", "--name", stopped, PG_IMAGE)
    try:
        result = run_dump("--db-container", stopped, "--db-user", DB_USER, "--db-name", "appdb",
                          "--dest-dir", str(tmp_path), "--lock-file", str(tmp_path / ".lock"))
    finally:
        docker("rm", "-f", "-v", stopped, check=False)
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert line.startswith("fs_backup: ERROR: pg_dump exited ")
    assert "is not running" in line
    assert _files(tmp_path) == {".lock"}


@pytest.mark.integration
def test_sigterm_cleans_up_and_ends_the_pg_dump_session(pg, tmp_path, procs):
    lock, status = tmp_path / ".lock", tmp_path / "status.json"
    blocker = TableLock(pg, "appdb", "customers")
    procs.append(blocker)
    dump = start_dump(*db_args(pg), "--dest-dir", str(tmp_path), "--name", "t.sql.gz",
                      "--lock-file", str(lock), "--status-file", str(status))
    procs.append(dump)
    wait_for(lambda: (tmp_path / ".t.sql.gz.partial").exists() and pg.dump_sessions(dump.pid) == 1,
             20, "pg_dump to wait for the table lock", dump)
    dump.send_signal(signal.SIGTERM)
    _, err = dump.communicate(timeout=30)
    assert dump.returncode == 128 + signal.SIGTERM
    assert error_line(err) == "fs_backup: ERROR: interrupted by SIGTERM"
    assert _files(tmp_path) == {".lock", "status.json"}
    assert "interrupted by SIGTERM" in json.loads(status.read_text())["last_failure"]["error"]
    # Killing the docker exec client does not stop pg_dump in the container;
    # fs_backup ended its session (it would wait for the table lock forever).
    wait_for(lambda: pg.dump_sessions(dump.pid) == 0, 10, "the pg_dump session to end")
    blocker.release()


@pytest.mark.integration
def test_sigkill_mid_dump_leaves_no_backup_and_next_run_cleans(pg, tmp_path, procs):
    dest = tmp_path / "dest"
    common = ["--dest-dir", str(dest), "--lock-file", str(tmp_path / ".lock")]
    partial = dest / ".big.sql.gz.partial"
    dump = start_dump(*db_args(pg, "bigdb"), *common, "--name", "big.sql.gz",
                      "--level", "9", "--threads", "1")
    procs.append(dump)
    wait_for(lambda: partial.exists() and partial.stat().st_size > 0, 30,
             "compressed data in the partial file", dump)
    dump.send_signal(signal.SIGKILL)
    dump.wait(timeout=10)
    names = _files(dest)
    assert "big.sql.gz" not in names and "big.sql.gz.sha256" not in names
    assert ".big.sql.gz.partial" in names  # SIGKILL cannot clean up; only final names count

    result = run_dump(*db_args(pg), *common, "--name", "next.sql.gz")
    assert result.returncode == 0, result.stderr
    assert f"deleting stale partial file {partial}" in result.stderr
    assert _files(dest) == {"next.sql.gz", "next.sql.gz.sha256"}


@pytest.mark.integration
def test_disk_full_fails_cleanly(pg, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", str(full)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        started = time.monotonic()
        result = run_dump(*db_args(pg, "bigdb"), "--dest-dir", str(full), "--name", "big.sql.gz",
                          "--lock-file", str(tmp_path / ".lock"),
                          "--status-file", str(tmp_path / "status.json"))
        assert result.returncode == 1
        line = error_line(result.stderr)
        assert line.startswith(f"fs_backup: ERROR: disk full: cannot write {full}/.big.sql.gz.partial")
        assert "No space left on device" in line
        assert time.monotonic() - started < 30
        assert _files(full) == set()
        status = json.loads((tmp_path / "status.json").read_text())
        assert "disk full" in status["last_failure"]["error"]
    finally:
        subprocess.run(["umount", "-l", str(full)], check=False)
