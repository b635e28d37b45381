"""Zero-downtime deploy of the polling bot: A runs, B starts, A gets SIGTERM."""

from __future__ import annotations

import re
import threading
import time

from fs_support import Fake, assert_clean_logs, query, wait_for


def test_sigterm_handoff_loses_and_duplicates_nothing(
        database_url: str, fake: Fake, start_bot) -> None:
    a = start_bot("master_bot", database_url, fake, APP_RELEASE="release-A")
    a.wait_log("acquired poller lock")
    queued: list[int] = []
    stop = threading.Event()

    def producer() -> None:  # a steady stream of user messages during the deploy
        n = 0
        while not stop.is_set():
            queued.extend(fake.queue(f"msg {n}"))
            n += 1
            time.sleep(0.02)

    th = threading.Thread(target=producer)
    th.start()
    try:
        wait_for(lambda: len(fake.sent()) >= 10, 10, "A processing")
        b = start_bot("master_bot", database_url, fake, APP_RELEASE="release-B")
        b.wait_ready()
        b.wait_log("waiting for poller lock")
        t0 = time.monotonic()
        assert a.terminate(timeout=15) == 0
        a_exit = time.monotonic() - t0
        b.wait_log("acquired poller lock")
        time.sleep(1.0)
    finally:
        stop.set()
        th.join()
    wait_for(lambda: fake.stats()["queued"] == 0 and len(fake.sent()) >= len(queued), 15,
             "B drained the queue")
    assert a_exit < 8  # within SHUTDOWN_TIMEOUT

    # exactly once: every queued update processed once, one reply each
    rows = query(database_url, "SELECT update_id, release FROM processed_updates ORDER BY 1")
    assert [r[0] for r in rows] == queued
    texts = [m["text"] for m in fake.sent()]
    assert len(texts) == len(queued) == len(set(texts))
    releases = {r[1] for r in rows}
    assert releases == {"release-A", "release-B"}  # both did part of the work
    assert query(database_url, "SELECT next_offset FROM bot_offsets") == [(queued[-1] + 1,)]
    assert fake.stats()["conflicts_409"] == 0

    # A's shutdown steps, in order
    logs_a = a.logs()
    steps = ["SIGTERM received: shutting down", "stopped polling; offset",
             "released poller lock", "stopping HTTP server", "shutdown complete (exit code 0)"]
    positions = [logs_a.find(s) for s in steps]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), logs_a
    for step in steps:
        line = next(ln for ln in logs_a.splitlines() if step in ln)
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO field_service: ", line), line

    # B now heartbeats with its release
    wait_for(lambda: query(database_url, "SELECT release, pid FROM heartbeats")
             == [("release-B", b.proc.pid)], 5, "B heartbeat")
    assert b.terminate() == 0
    assert_clean_logs(logs_a + b.logs())


def test_sigkill_handoff_releases_lock(database_url: str, fake: Fake, start_bot) -> None:
    """A crashed poller (SIGKILL) loses its session, so the lock is freed."""
    a = start_bot("master_bot", database_url, fake)
    a.wait_log("acquired poller lock")
    b = start_bot("master_bot", database_url, fake)
    b.wait_log("waiting for poller lock")
    ids = fake.queue("one", "two")
    wait_for(lambda: len(fake.sent()) == 2, 10, "A replies")
    a.kill()
    b.wait_log("acquired poller lock")
    ids += fake.queue("three")
    wait_for(lambda: len(fake.sent()) == 3, 10, "B reply")
    rows = query(database_url, "SELECT update_id FROM processed_updates ORDER BY 1")
    assert [r[0] for r in rows] == ids
    assert b.terminate() == 0
