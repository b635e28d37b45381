"""The backup program's pipeline, checksums and stale-file cleanup, by import (no Docker).

``run_pipeline`` (fs_backup/execute.py) publishes a pipeline's output under
its final name only when every stage exited 0 and every output check passed,
with its ``.sha256`` sidecar; ``run_stream`` reads a pipeline back. These
tests were the Docker-free part of tests/integration/test_fs_backup.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time

import pytest
from fs_backup import checksum, errors, execute, lock, postgresql


def _files(directory) -> set[str]:
    return set(os.listdir(directory))


def test_run_pipeline_publishes_file_and_sidecar(tmp_path):
    out = tmp_path / "out.txt"
    stages = [
        execute.Stage("producer", ["sh", "-c", "printf 'hello\\nEND\\n'"],
                      check_output=lambda tail: None if tail.endswith(b"END\n") else "no END"),
        execute.Stage("upper", ["tr", "a-z", "A-Z"]),
    ]
    result = execute.run_pipeline(stages, str(out))
    assert out.read_bytes() == b"HELLO\nEND\n"
    digest = hashlib.sha256(b"HELLO\nEND\n").hexdigest()
    assert result.sha256 == digest and result.bytes == 10
    assert result.tapped_bytes == {"producer": 10}
    assert (tmp_path / "out.txt.sha256").read_text() == f"{digest}  out.txt\n"
    assert _files(tmp_path) == {"out.txt", "out.txt.sha256"}
    assert os.stat(out).st_mode & 0o777 == 0o600
    with pytest.raises(errors.BackupError, match="refusing to overwrite"):
        execute.run_pipeline(stages, str(out))
    assert out.read_bytes() == b"HELLO\nEND\n"


def test_run_pipeline_failed_stage_leaves_nothing(tmp_path):
    stages = [
        execute.Stage("producer", ["sh", "-c", "printf data"]),
        execute.Stage("broken", ["sh", "-c", "cat >/dev/null; echo boom >&2; exit 3"]),
    ]
    with pytest.raises(errors.StageFailed, match=r"^broken exited 3: boom$"):
        execute.run_pipeline(stages, str(tmp_path / "x"))
    assert _files(tmp_path) == set()


def test_run_pipeline_incomplete_output_is_refused(tmp_path):
    # A killed `docker exec` client exits 0: only the output's tail tells.
    stages = [
        execute.Stage("producer", ["printf", "half a dump"],
                      check_output=postgresql.pg_dump_complete),
        execute.Stage("gzip", ["gzip", "-c"]),
    ]
    with pytest.raises(errors.BackupError, match="producer: output is incomplete"):
        execute.run_pipeline(stages, str(tmp_path / "x.gz"))
    assert _files(tmp_path) == set()


def test_run_pipeline_missing_program(tmp_path):
    stages = [execute.Stage("producer", ["sh", "-c", "sleep 30"]),
              execute.Stage("nothere", ["/nonexistent/compressor"])]
    started = time.monotonic()
    with pytest.raises(errors.BackupError, match="cannot start nothere"):
        execute.run_pipeline(stages, str(tmp_path / "x"))
    assert time.monotonic() - started < 10  # the producer was killed, not waited for
    assert _files(tmp_path) == set()


def test_run_pipeline_replace_keeps_the_old_pair_on_failure_and_recovers_a_cut_swap(tmp_path):
    out = tmp_path / "week.gz"
    ok = [execute.Stage("producer", ["sh", "-c", "printf one"])]
    execute.run_pipeline(ok, str(out))
    old = {n: (tmp_path / n).read_bytes() for n in _files(tmp_path)}
    # a replacing run that fails leaves the old backup AND its checksum
    broken = [execute.Stage("producer", ["sh", "-c", "printf two; exit 4"])]
    with pytest.raises(errors.StageFailed):
        execute.run_pipeline(broken, str(out), replace=True)
    assert {n: (tmp_path / n).read_bytes() for n in _files(tmp_path)} == old
    # a replacing run that succeeds swaps both
    execute.run_pipeline([execute.Stage("producer", ["sh", "-c", "printf two"])], str(out), replace=True)
    assert out.read_bytes() == b"two" and _files(tmp_path) == {"week.gz", "week.gz.sha256"}
    checksum.verify_checksum(str(out))
    # a run cut between its two renames: new file, old checksum, staged one;
    # the next run (under the lock) puts the staged checksum in place
    staged = tmp_path / ".week.gz.sha256.partial"
    os.rename(tmp_path / "week.gz.sha256", staged)
    (tmp_path / "week.gz.sha256").write_bytes(old["week.gz.sha256"])
    with pytest.raises(errors.BackupError, match="checksum mismatch"):
        checksum.verify_checksum(str(out))
    lock.clean_stale_files(str(tmp_path), time.time() + 1)
    assert _files(tmp_path) == {"week.gz", "week.gz.sha256"}
    checksum.verify_checksum(str(out))


# ---------------------------------------------------------------------------
# run_stream: a pipeline read back (check, verify, restore)


def test_run_stream_reads_everything_and_checks_the_end():
    stages = [execute.Stage("producer", ["sh", "-c", "printf 'SELECT 1;\\n-- PostgreSQL database dump "
                                                     "complete\\n'"],
                            check_output=postgresql.sql_complete),
              execute.Stage("cat", ["cat"])]
    total, tail, tapped = execute.run_stream(stages)
    assert total == len(b"SELECT 1;\n-- PostgreSQL database dump complete\n")
    assert tail.endswith(b"dump complete\n") and tapped == {"producer": total}
    cut = [execute.Stage("producer", ["printf", "SELECT 1;"], check_output=postgresql.sql_complete)]
    with pytest.raises(errors.BackupError, match="does not end with pg_dump's 'dump complete' trailer"):
        execute.run_stream(cut)


# ---------------------------------------------------------------------------
# Checksums


def test_sidecar_in_sha256sum_format_and_every_way_it_can_be_wrong(tmp_path):
    backup = tmp_path / "b.sql.gz"
    backup.write_bytes(b"data")
    digest = hashlib.sha256(b"data").hexdigest()
    checksum.write_sidecar(str(backup) + ".sha256", "b.sql.gz", digest)
    assert (tmp_path / "b.sql.gz.sha256").read_text() == f"{digest}  b.sql.gz\n"
    assert checksum.verify_checksum(str(backup)) == (digest, digest)
    (tmp_path / "b.sql.gz.sha256").write_text(f"{digest} *b.sql.gz\n")  # sha256sum -b
    assert checksum.verify_checksum(str(backup)) == (digest, digest)
    (tmp_path / "b.sql.gz.sha256").write_text(f"{digest}  other.sql.gz\n")
    with pytest.raises(errors.BackupError, match="is the checksum of 'other.sql.gz'"):
        checksum.verify_checksum(str(backup))
    (tmp_path / "b.sql.gz.sha256").write_text("not a checksum\n")
    with pytest.raises(errors.BackupError, match="is not a sha256sum line"):
        checksum.verify_checksum(str(backup))
    os.unlink(tmp_path / "b.sql.gz.sha256")
    with pytest.raises(errors.BackupError, match="no checksum sidecar"):
        checksum.verify_checksum(str(backup))


def test_clean_stale_files_deletes_only_what_interrupted_runs_left(tmp_path):
    for name in ("keep.sql.gz", "keep.sql.gz.sha256", "orphan.sql.gz.sha256", ".cut.sql.gz.partial",
                 ".young.sql.gz.partial", "notes.txt"):
        (tmp_path / name).write_text("x")
    old = time.time() - 60
    for name in ("orphan.sql.gz.sha256", ".cut.sql.gz.partial"):
        os.utime(tmp_path / name, (old, old))
    lock.clean_stale_files(str(tmp_path), time.time() - 30)
    # the young partial file may belong to a running backup: it stays
    assert _files(tmp_path) == {"keep.sql.gz", "keep.sql.gz.sha256", ".young.sql.gz.partial",
                                "notes.txt"}


def test_progress_counts_the_bytes_written_as_they_grow(tmp_path):
    from fs_backup.progress import Progress

    # Given a pipeline that writes 300 kB slowly (three chunks, 0.6 s apart), watched
    producer = ("import sys, time\n"
                "for i in range(3):\n"
                "    sys.stdout.buffer.write(b'x' * 100000); sys.stdout.flush(); time.sleep(0.6)\n")
    path = tmp_path / "progress"
    seen = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            try:
                seen.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with Progress(str(path), interval=0.1) as progress:
            progress.note("waiting for the backup lock")
            time.sleep(0.3)
            progress.count("written")
            stages = [execute.Stage("producer", [sys.executable, "-c", producer])]
            result = execute.run_pipeline(stages, str(tmp_path / "out"), progress=progress)
    finally:
        done.set()
        watcher.join()
    # Then the file said what the run waited for, then the bytes while they grew, then all of them
    assert seen[0] == {"note": "waiting for the backup lock", "updated": seen[0]["updated"]}
    counts = [s["bytes"] for s in seen if "bytes" in s]
    assert {100000, 200000} <= set(counts) and counts == sorted(counts), counts
    final = json.loads(path.read_text())
    assert final["bytes"] == result.bytes == 300000 and final["verb"] == "written"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["out", "out.sha256", "progress"]


def test_progress_of_a_stream_counts_the_first_tapped_stage(tmp_path):
    from fs_backup.progress import Progress

    # Given a restore-like stream: SQL (checked) | a loader whose own output is not the SQL
    stages = [
        execute.Stage("sql", ["sh", "-c", "head -c 50000 /dev/zero; printf 'END\\n'"],
                      check_output=lambda tail: None if tail.endswith(b"END\n") else "no END"),
        execute.Stage("load", ["sh", "-c", "cat >/dev/null; echo loaded"]),
    ]
    with Progress(str(tmp_path / "p"), interval=5) as progress:
        progress.count("of SQL loaded")
        execute.run_stream(stages, progress)
        assert progress.snapshot() == {"verb": "of SQL loaded", "bytes": 50004}
    # and without a tapped stage, the bytes read
    with Progress(None) as progress:
        progress.count("read")
        execute.run_stream([execute.Stage("cat", ["sh", "-c", "printf abc"])], progress)
        assert progress.bytes == 3
    assert (tmp_path / "p").read_text().startswith('{"verb": "of SQL loaded", "bytes": 50004')


def test_a_secret_file_is_deleted_once_read(tmp_path):
    from fs_backup import encryption

    secret = tmp_path / "secret"
    secret.write_text("AGE-SECRET-KEY-1QQQ\n")
    read = encryption.read_secret_file(str(secret), "the identity file", remove=True)
    assert read == b"AGE-SECRET-KEY-1QQQ\n"
    assert not secret.exists()
    secret.write_text("kept\n")
    assert encryption.read_secret_file(str(secret), "the file") == b"kept\n" and secret.exists()
    with pytest.raises(errors.BackupError, match="cannot read the identity file .*/missing"):
        encryption.read_secret_file(str(tmp_path / "missing"), "the identity file", remove=True)
