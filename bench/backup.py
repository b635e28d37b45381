#!/usr/bin/env python3
"""Benchmark: our backup and restore against plain pg_dump | gzip and psql.

    .venv/bin/python bench/backup.py [--size-mb 1100] [--small-mb 110]

Starts a PostgreSQL container (the image of a managed database, postgres:15),
fills it with realistic rows (orders: customer names and free text drawn
from a vocabulary, JSON documents, timestamps, amounts; not pgbench's blank
filler) up to ``--size-mb`` of database size, then, in one run, side by
side, each preceded by the same warm-up:

* ``floor_s``: ``pg_dump > /dev/null`` (what no backup can beat);
* ``baseline_s`` / ``baseline_bytes``: ``pg_dump | gzip -6 > file`` (what
  users write by hand);
* ``ours_s`` / ``ours_bytes``: ``fs-backup dump`` with gzip level 6
  (pigz when installed), age encryption to a public key and the SHA-256
  sidecar, written under a temporary name, fsynced and renamed;
* ``ours_zstd3_s`` / ``ours_zstd3_bytes``: the same with ``--compress zstd
  --level 3`` (the role's ``backup_compress: zstd``), the option for speed;
* ``gzip_levels``: ours with each gzip level of ``--levels`` (seconds,
  bytes, and both against the floor and the baseline), and
  ``chosen_level``: the best-compressing level that meets the goals (the
  role's default ``backup_level`` is set from it);
* ``restore_floor_s``: ``psql -v ON_ERROR_STOP=1 < plain.sql`` into a new
  database;
* ``restore_s``: ``fs-backup restore`` of our file (checksum, age
  decryption, gunzip, the same psql load into a new database, swap);
* ``peak_rss_mb``: the backup program's own peak resident memory (VmHWM
  of its process) at ``--size-mb``, and ``peak_rss_mb_small`` at
  ``--small-mb``, to show it does not grow with the database.

Goals: ours_s <= 2 x floor_s with ours_bytes <= 1.1 x baseline_bytes;
restore_s <= 1.1 x restore_floor_s; peak RSS flat and under 64 MB.
Writes ``bench/results/backup.json``. Removes the container and files.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from _support import ROOT, machine, write_result

FS_BACKUP = os.path.join(ROOT, "roles", "backup", "files", "fs-backup")
sys.path.insert(0, os.path.join(ROOT, "roles", "backup", "files"))
from fs_backup.compression import DEFAULT_LEVELS, default_threads  # noqa: E402 - the program's own defaults

DEFAULT_LEVEL = DEFAULT_LEVELS["gzip"]
PG_IMAGE = os.environ.get("FS_POSTGRES_IMAGE", "postgres:15")
USER, DB = "bench", "benchdb"
DUMP_ARGS = ["pg_dump", "-U", USER, "-d", DB, "--no-owner", "--no-privileges", "--encoding=UTF8"]

SCHEMA = """
CREATE TABLE vocab (id int PRIMARY KEY, word text NOT NULL);
INSERT INTO vocab
  SELECT i, (ARRAY['service','repair','order','master','client','install','address','phone',
                   'window','door','boiler','pipe','leak','urgent','tomorrow','morning','evening',
                   'payment','card','cash','warranty','visit','call','confirm','cancel','delay',
                   'part','replace','check','done'])[1 + i % 30]
            || CASE WHEN i >= 30 THEN substr(md5(i::text), 1, 1 + i % 5) ELSE '' END
  FROM generate_series(0, 4095) i;
CREATE TABLE orders (
  id bigint PRIMARY KEY,
  created_at timestamptz NOT NULL,
  status text NOT NULL,
  customer text NOT NULL,
  amount numeric(12, 2) NOT NULL,
  details jsonb NOT NULL,
  note text NOT NULL
);
CREATE TABLE events (
  id bigserial PRIMARY KEY,
  order_id bigint NOT NULL,
  at timestamptz NOT NULL,
  kind text NOT NULL,
  payload jsonb NOT NULL
);
"""

# One batch of orders (ids :lo..:hi) and three events per order. Words are
# drawn at random from the vocabulary, so the text compresses like prose.
BATCH = """
INSERT INTO orders
SELECT g,
       timestamptz '2024-01-01' + (random() * 63072000) * interval '1 second',
       (ARRAY['new','assigned','in_progress','done','cancelled'])[1 + (random() * 4)::int],
       initcap(v.a[1 + (random() * 4095)::int]) || ' ' || initcap(v.a[1 + (random() * 4095)::int]),
       round((random() * 50000)::numeric, 2),
       jsonb_build_object(
         'city', (ARRAY['Moscow','Kazan','Samara','Tver','Omsk','Perm','Ufa'])[1 + (random() * 6)::int],
         'street', v.a[1 + (random() * 4095)::int] || ' st. ' || (random() * 200)::int,
         'phone', '+7' || (9000000000 + (random() * 999999999)::bigint),
         'items', jsonb_build_array(
            jsonb_build_object('sku', 'P-' || (random() * 9999)::int, 'qty', 1 + (random() * 4)::int),
            jsonb_build_object('sku', 'P-' || (random() * 9999)::int, 'qty', 1 + (random() * 4)::int)),
         'master_id', (random() * 500)::int,
         'rating', (random() * 5)::int),
       array_to_string(ARRAY(SELECT v.a[1 + (random() * 4095)::int]
                             FROM generate_series(1, 12 + (random() * 40)::int + g * 0)), ' ')
FROM generate_series(:lo, :hi) g, (SELECT array_agg(word ORDER BY id) AS a FROM vocab) v;
INSERT INTO events (order_id, at, kind, payload)
SELECT g, timestamptz '2024-01-01' + (random() * 63072000) * interval '1 second',
       (ARRAY['created','assigned','called','visited','paid','closed'])[1 + (random() * 5)::int],
       jsonb_build_object('by', 'user' || (random() * 1000)::int, 'ok', random() > 0.1,
                          'comment', v.a[1 + (random() * 4095)::int])
FROM generate_series(:lo, :hi) g, generate_series(1, 3) e,
     (SELECT array_agg(word ORDER BY id) AS a FROM vocab) v;
"""


def sh(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


class Pg:
    def __init__(self):
        self.name = f"fs_bench_backup_{uuid.uuid4().hex[:6]}"
        sh(["docker", "run", "-d", "--name", self.name, "-e", f"POSTGRES_USER={USER}",
            "-e", "POSTGRES_PASSWORD=bench", "-e", f"POSTGRES_DB={DB}", PG_IMAGE,
            "postgres", "-c", "max_wal_size=4GB", "-c", "checkpoint_timeout=30min"], capture_output=True)
        deadline = time.monotonic() + 120
        while True:
            ok = subprocess.run(["docker", "exec", self.name, "psql", "-U", USER, "-d", DB,
                                 "-Atc", "SELECT 1"],
                                capture_output=True)
            logs = subprocess.run(["docker", "logs", self.name], capture_output=True, text=True)
            if ok.returncode == 0 and "init process complete" in logs.stdout + logs.stderr:
                break
            if time.monotonic() > deadline:
                subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True, check=False)
                raise RuntimeError("PostgreSQL did not start:\n" + (logs.stdout + logs.stderr)[-2000:])
            time.sleep(0.5)

    def psql(self, sql: str, db: str = DB, **variables) -> str:
        argv = ["docker", "exec", "-i", self.name, "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                "-U", USER, "-d", db]
        for key, value in variables.items():
            argv += ["-v", f"{key}={value}"]
        return sh(argv, input=sql, capture_output=True, text=True).stdout.strip()

    def size_mb(self, db: str = DB) -> float:
        return int(self.psql(f"SELECT pg_database_size('{db}')")) / 1e6

    def fill_to(self, target_mb: float, first_id: int, batch: int = 100_000) -> int:
        """Add order batches until the database is target_mb; returns the next id."""
        next_id = first_id
        while self.size_mb() < target_mb:
            self.psql(BATCH, lo=next_id, hi=next_id + batch - 1)
            next_id += batch
            print(f"  generated {next_id - 1:>9} orders, {self.size_mb():8.1f} MB", flush=True)
        self.psql("VACUUM ANALYZE")
        return next_id

    def remove(self):
        subprocess.run(["docker", "rm", "-f", "-v", self.name], capture_output=True)


def timed(argv, stdout=subprocess.DEVNULL, **kw) -> float:
    start = time.monotonic()
    sh(argv, stdout=stdout, **kw)
    return time.monotonic() - start


def shell_timed(command: str) -> float:
    start = time.monotonic()
    sh(["bash", "-o", "pipefail", "-c", command])
    return time.monotonic() - start


def run_ours(argv) -> tuple[float, float, dict]:
    """Run the backup program; (seconds, its peak RSS in MB, its JSON)."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        path = f"/proc/{proc.pid}/status"
        while proc.poll() is None:
            try:
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                break
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.monotonic() - start
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{argv[2]} failed: {err}")
    return seconds, peak[0] / 1024, json.loads(out) if out.strip() else {}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=1100.0, help="database size to generate")
    ap.add_argument("--small-mb", type=float, default=110.0, help="size of the first peak-RSS run")
    ap.add_argument("--workdir", default=None, help="where the files go (default a temporary folder)")
    ap.add_argument("--levels", default="1,2,3,4,5,6", help="gzip levels to measure (comma-separated)")
    ap.add_argument("--default-level", type=int, default=DEFAULT_LEVEL,
                    help="the level of the 'ours' run (default: the role's backup_level)")
    ap.add_argument("--threads", type=int, default=default_threads(),
                    help="compressor threads of every run of ours (default: the program's, half the CPUs)")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="fs-bench-backup-", dir=args.workdir)
    identity = os.path.join(work, "age.key")
    sh(["age-keygen", "-o", identity], capture_output=True)
    public = sh(["age-keygen", "-y", identity], capture_output=True, text=True).stdout.strip()
    pg = Pg()
    result: dict = {"machine": machine(), "pg_image": PG_IMAGE, "threads": args.threads}
    try:
        ours_dir = os.path.join(work, "ours")
        os.makedirs(ours_dir)

        def ours(name, compress="gzip", level="6"):
            return [sys.executable, FS_BACKUP, "dump", "--db-container", pg.name, "--db-user", USER,
                    "--db-name", DB, "--dest-dir", ours_dir, "--name", name, "--compress", compress,
                    "--level", level, "--threads", str(args.threads),
                    "--encrypt", "age", "--recipient", public,
                    "--lock-file", os.path.join(work, "lock"), "--json"]

        print("schema and a small database ...", flush=True)
        pg.psql(SCHEMA)
        next_id = pg.fill_to(args.small_mb, 1)
        result["small_db_mb"] = round(pg.size_mb(), 1)
        _, rss_small, _ = run_ours(ours("small.sql.gz.age"))
        result["peak_rss_mb_small"] = round(rss_small, 1)

        print(f"growing the database to {args.size_mb:g} MB ...", flush=True)
        pg.fill_to(args.size_mb, next_id)
        result["db_mb"] = round(pg.size_mb(), 1)
        result["rows"] = {t: int(pg.psql(f"SELECT count(*) FROM {t}")) for t in ("orders", "events")}

        dump = ["docker", "exec", pg.name, *DUMP_ARGS]
        print("warm-up dump ...", flush=True)
        timed(dump)
        result["floor_s"] = round(timed(dump), 2)
        print(f"floor     pg_dump > /dev/null        {result['floor_s']:8.2f} s", flush=True)

        baseline = os.path.join(work, "baseline.sql.gz")
        result["baseline_s"] = round(shell_timed(
            f"docker exec {pg.name} {' '.join(DUMP_ARGS)} | gzip -6 > {baseline}"), 2)
        result["baseline_bytes"] = os.path.getsize(baseline)
        print(f"baseline  pg_dump | gzip -6          {result['baseline_s']:8.2f} s "
              f"{result['baseline_bytes'] / 1e6:8.1f} MB", flush=True)

        # each gzip level, the same way: the default is chosen from these
        levels = {}
        for level in [int(x) for x in args.levels.split(",") if x.strip()]:
            seconds, _, info = run_ours(ours(f"level{level}.sql.gz.age", "gzip", str(level)))
            os.unlink(info["path"])
            levels[level] = {"s": round(seconds, 2), "bytes": info["bytes"],
                             "x_floor": round(seconds / result["floor_s"], 2),
                             "x_baseline_bytes": round(info["bytes"] / result["baseline_bytes"], 3)}
            print(f"ours      gzip -{level} (age)            {seconds:8.2f} s {info['bytes'] / 1e6:8.1f} MB  "
                  f"{levels[level]['x_floor']:.2f} x floor, "
                  f"{levels[level]['x_baseline_bytes']:.3f} x baseline bytes", flush=True)
        result["gzip_levels"] = levels
        meeting = [lv for lv, m in sorted(levels.items())
                   if m["x_floor"] <= 2 and m["x_baseline_bytes"] <= 1.1]
        # among the levels that meet both goals, the one that writes the fewest bytes
        result["chosen_level"] = min(meeting, key=lambda lv: levels[lv]["bytes"]) if meeting else None
        print(f"chosen gzip level: {result['chosen_level']}", flush=True)

        seconds, rss, info = run_ours(ours("ours.sql.gz.age", "gzip", str(args.default_level)))
        result["ours_level"] = args.default_level
        result["ours_s"] = round(seconds, 2)
        result["ours_bytes"] = info["bytes"]
        result["peak_rss_mb"] = round(rss, 1)
        ours_file = info["path"]
        print(f"ours      fs-backup dump (age)      {result['ours_s']:8.2f} s "
              f"{result['ours_bytes'] / 1e6:8.1f} MB  peak RSS {rss:.1f} MB", flush=True)

        # the option for speed: backup_compress: zstd (level 3, zstd's own default)
        seconds, _, info = run_ours(ours("ours.sql.zst.age", "zstd", "3"))
        result["ours_zstd3_s"] = round(seconds, 2)
        result["ours_zstd3_bytes"] = info["bytes"]
        os.unlink(info["path"])
        print(f"ours      fs-backup dump (zstd -3)  {result['ours_zstd3_s']:8.2f} s "
              f"{result['ours_zstd3_bytes'] / 1e6:8.1f} MB", flush=True)

        plain = os.path.join(work, "plain.sql")
        with open(plain, "wb") as fh:
            sh(dump, stdout=fh)
        result["plain_sql_bytes"] = os.path.getsize(plain)
        os.unlink(baseline)
        pg.psql("CREATE DATABASE restore_floor", db="postgres")
        with open(plain, "rb") as fh:
            result["restore_floor_s"] = round(timed(
                ["docker", "exec", "-i", pg.name, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                 "-U", USER, "-d", "restore_floor"], stdin=fh), 2)
        print(f"restore floor  psql < plain.sql       {result['restore_floor_s']:8.2f} s", flush=True)
        os.unlink(plain)
        pg.psql("DROP DATABASE restore_floor", db="postgres")

        seconds, rss_restore, _ = run_ours(
            [sys.executable, FS_BACKUP, "restore", ours_file, "--db-container", pg.name, "--db-user", USER,
             "--db-name", "restore_ours", "--identity-file", identity,
             "--lock-file", os.path.join(work, "lock"), "--json"])
        result["restore_s"] = round(seconds, 2)
        result["restore_peak_rss_mb"] = round(rss_restore, 1)
        print(f"restore   fs-backup restore         {result['restore_s']:8.2f} s", flush=True)
        restored = {t: int(pg.psql(f"SELECT count(*) FROM {t}", db="restore_ours"))
                    for t in ("orders", "events")}
        result["restore_rows_match"] = restored == result["rows"]

        result["goal_ours_le_2x_floor"] = result["ours_s"] <= 2 * result["floor_s"]
        result["goal_bytes_le_1_1x_baseline"] = result["ours_bytes"] <= 1.1 * result["baseline_bytes"]
        result["goal_restore_le_1_1x_floor"] = result["restore_s"] <= 1.1 * result["restore_floor_s"]
        result["goal_rss_flat_under_64mb"] = (result["peak_rss_mb"] < 64
                                              and result["peak_rss_mb"] <= 1.25 * result["peak_rss_mb_small"])
    finally:
        pg.remove()
        shutil.rmtree(work, ignore_errors=True)
    path = write_result("backup", result)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
