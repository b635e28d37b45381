"""Polling bot (master_bot) as a real subprocess against the fake Telegram."""

from __future__ import annotations

import time

from fs_support import Fake, assert_clean_logs, query, wait_for


def processed(url: str, service: str = "master_bot") -> list[tuple[int, int, str, str]]:
    return [tuple(r) for r in query(
        url, "SELECT update_id, chat_id, text, release FROM processed_updates"
             " WHERE service = %s ORDER BY update_id", (service,))]


def next_offset(url: str, service: str = "master_bot") -> int | None:
    rows = query(url, "SELECT next_offset FROM bot_offsets WHERE service = %s", (service,))
    return rows[0][0] if rows else None


def test_polling_processes_queued_updates_and_advances_offset(
        database_url: str, fake: Fake, start_bot) -> None:
    ids = fake.queue("hello", "world", "again", chat_id=7)  # queued before the bot starts
    bot = start_bot("master_bot", database_url, fake)
    bot.wait_ready()
    wait_for(lambda: len(fake.sent()) >= 3, 10, "3 replies")
    assert [(m["chat_id"], m["text"]) for m in fake.sent()] == [
        (7, "master_bot 1.0.0: got hello"), (7, "master_bot 1.0.0: got world"),
        (7, "master_bot 1.0.0: got again")]
    # each reply is sent inside its update's transaction: the last commit comes just after
    wait_for(lambda: len(processed(database_url)) == 3, 10, "3 updates committed")
    assert processed(database_url) == [(i, 7, t, "r-test") for i, t in
                                       zip(ids, ["hello", "world", "again"], strict=True)]
    assert next_offset(database_url) == ids[-1] + 1
    # the offset is confirmed to Telegram by the next getUpdates
    wait_for(lambda: fake.stats()["queued"] == 0, 5, "updates confirmed")

    more = fake.queue("later")
    wait_for(lambda: next_offset(database_url) == more[0] + 1, 5, "offset advanced")
    assert len(fake.sent()) == 4 and fake.stats()["conflicts_409"] == 0

    status, info = bot.http("GET", "/ready")
    assert status == 200 and info["polling"] is True and info["release"] == "r-test"
    assert bot.http("GET", "/health")[0] == 200
    assert bot.http("GET", "/nope")[0] == 404
    assert bot.http("POST", "/webhook", {"update_id": 1})[0] == 404  # polling mode

    hb = query(database_url, "SELECT service, release, EXTRACT(EPOCH FROM now()-beat_at), pid,"
                             " hostname, state FROM heartbeats")
    assert len(hb) == 1
    service, release, age, pid, hostname, state = hb[0]
    assert (service, release, state, pid) == ("master_bot", "r-test", "polling", bot.proc.pid)
    assert float(age) < 2 and hostname

    assert bot.terminate() == 0
    assert_clean_logs(bot.logs())


def test_offset_comes_from_the_database(database_url: str, fake: Fake, start_bot) -> None:
    """A restarted poller resumes from bot_offsets, not from memory or Telegram."""
    ids = fake.queue("a", "b", "c")
    # pretend "a" was processed by an earlier release (offset committed, not yet confirmed)
    query(database_url, "INSERT INTO bot_offsets VALUES ('master_bot', %s)", (ids[1],))
    bot = start_bot("master_bot", database_url, fake)
    wait_for(lambda: len(fake.sent()) >= 2, 10, "2 replies")
    time.sleep(0.5)
    assert [m["text"] for m in fake.sent()] == ["master_bot 1.0.0: got b",
                                                "master_bot 1.0.0: got c"]
    bot.wait_log(f"polling from offset {ids[1]}")
    assert bot.terminate() == 0


def test_two_pollers_never_poll_at_once(database_url: str, fake: Fake, start_bot) -> None:
    a = start_bot("master_bot", database_url, fake)
    a.wait_log("acquired poller lock")
    b = start_bot("master_bot", database_url, fake)
    b.wait_ready()  # ready while waiting: config loaded, DB reachable
    b.wait_log("waiting for poller lock")
    ids = fake.queue(*[f"m{i}" for i in range(10)])
    wait_for(lambda: len(fake.sent()) >= 10, 10, "10 replies")
    time.sleep(0.5)  # a few more polls by A
    stats = fake.stats()
    assert stats["conflicts_409"] == 0, stats
    assert len(fake.sent()) == 10
    assert "acquired poller lock" not in b.logs()
    assert b.logs().count("waiting for poller lock") == 1  # logged once
    status, info = b.http("GET", "/ready")
    assert status == 200 and info["polling"] is False
    rows = query(database_url, "SELECT pid FROM heartbeats WHERE service = 'master_bot'")
    assert rows == [(a.proc.pid,)]  # only the poller beats
    assert [r[0] for r in query(database_url, "SELECT update_id FROM processed_updates"
                                              " ORDER BY 1")] == ids
    assert a.terminate() == 0
    b.wait_log("acquired poller lock")  # B takes over once A is gone
    assert b.terminate() == 0
    assert fake.stats()["conflicts_409"] == 0
    assert_clean_logs(a.logs() + b.logs())


def test_lost_lock_connection_stops_polling_and_recovers(
        database_url: str, fake: Fake, start_bot) -> None:
    bot = start_bot("master_bot", database_url, fake)
    bot.wait_log("acquired poller lock")
    [before] = fake.queue("before")
    # the reply is sent inside the update's transaction: wait for its commit
    # too, or the kill below may roll it back and "before" is (rightly)
    # processed and answered again
    wait_for(lambda: query(database_url, "SELECT next_offset FROM bot_offsets"
                                         " WHERE service = 'master_bot'") == [(before + 1,)],
             10, "the first update committed")
    assert len(fake.sent()) == 1
    # kill the poller's lock session from the server side
    killed = query(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                 " WHERE application_name = 'master_bot:poller'")
    assert killed == [(True,)]
    bot.wait_log("lost the poller lock connection")
    bot.wait_log("acquired poller lock", timeout=10, count=2)
    fake.queue("after")
    wait_for(lambda: len(fake.sent()) == 2, 10, "reply after recovery")
    assert [m["text"] for m in fake.sent()][-1] == "master_bot 1.0.0: got after"
    assert bot.terminate() == 0


def test_409_is_logged_as_error_not_critical(database_url: str, fake: Fake, start_bot) -> None:
    fake.fail("409")
    bot = start_bot("master_bot", database_url, fake)
    bot.wait_log("409 Conflict: another poller is using this token")
    line = next(ln for ln in bot.logs().splitlines() if "409 Conflict" in ln)
    assert " ERROR field_service: 409 Conflict: another poller is using this token" in line
    fake.fail("none")
    fake.queue("x")
    wait_for(lambda: len(fake.sent()) == 1, 15, "reply after the conflict cleared")
    assert bot.terminate() == 0
    assert_clean_logs(bot.logs())


def test_transient_reply_failure_is_retried_without_duplicates(
        database_url: str, fake: Fake, start_bot) -> None:
    fake.fail("500", methods=["sendMessage"], count=2)
    ids = fake.queue("retry me", "next")
    bot = start_bot("master_bot", database_url, fake)
    wait_for(lambda: len(fake.sent()) == 2, 15, "both replies")
    assert [m["text"] for m in fake.sent()] == ["master_bot 1.0.0: got retry me",
                                                "master_bot 1.0.0: got next"]
    # the reply is sent inside the update's transaction: its commit comes just after
    wait_for(lambda: [r[0] for r in processed(database_url)] == ids, 10, "both updates committed")
    assert "reply failed, will retry" in bot.logs()
    assert bot.terminate() == 0
