"""The kit under both libraries, as real processes against a real PostgreSQL and
the stand-in Bot API: the handoff, what is exactly-once and what is not, the
graceful SIGTERM, the heartbeat and the webhook."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import LIBRARIES, TOKEN, query
from fs_support import wait_for

pytestmark = pytest.mark.parametrize("library", LIBRARIES)


def notes(db: str) -> list[tuple[int, str, int]]:
    return query(db, "SELECT update_id, body, pid FROM kit_notes ORDER BY id")


def replies(telegram) -> list[str]:
    return [m["text"] for m in telegram.sent(TOKEN)]


def in_transaction(db: str, connection: str = "polling_bot:poller") -> bool:
    """A connection of the kit is inside an update's transaction (its handler runs)."""
    rows = query(db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                     "AND state = 'idle in transaction'", (connection,))
    return rows[0][0] > 0


def events(db: str) -> list[tuple[int, str]]:
    return query(db, "SELECT pid, event FROM kit_events ORDER BY id")


def terminate(db: str, connection: str) -> int:
    """Kill a connection of the kit on the server side (a database restart, an idle-session kill)."""
    return query(db, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE application_name = %s", (connection,))[0][0]


def beat_age(db: str) -> float:
    return float(query(db, "SELECT extract(epoch FROM now() - beat_at) FROM heartbeats")[0][0])


def test_the_handoff_under_a_steady_feed_loses_and_repeats_nothing(library, bots, db, telegram):
    old = bots(library)
    old.wait_ready()
    old.wait_log("acquired the poller lock")
    assert old.ready()["polling"] is True
    sent: list[int] = []
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            sent.extend(telegram.queue_updates(TOKEN, [{"text": f"feed {n}"}]))
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        time.sleep(1.0)
        new = bots(library)
        standby = new.wait_ready()
        assert standby["status"] == "ready (standby)" and standby["polling"] is False, standby
        new.wait_log("standby: waiting for the poller lock")
        time.sleep(0.5)
        # a standby has not started the library (no persistence loaded, no jobs, no startup hooks)
        assert events(db) == [(old.pid, "library started")]
        assert old.terminate() == 0, old.logs()
        new.wait_log("acquired the poller lock")
        time.sleep(1.0)
    finally:
        stop.set()
        feeder.join()
    wait_for(lambda: len(notes(db)) >= len(sent), 20, "every update processed")
    got = notes(db)
    ids = [u for u, _, _ in got]
    assert ids == sorted(sent), "each update once, in order"
    pids = {p for _, _, p in got}
    assert pids == {old.pid, new.pid}, "both pollers processed some"
    assert sorted(replies(telegram)) == sorted(f"noted: {b}" for _, b, _ in got)
    stats = telegram.stats(TOKEN)
    assert stats["conflicts_409"] == 0 and stats["webhook_conflicts_409"] == 0, stats
    assert "stopped polling; offset" in old.logs() and "released the poller lock" in old.logs()
    assert query(db, "SELECT next_offset FROM botkit_offsets") == [(max(sent) + 1,)]
    # the old library stopped (persistence flushed) before the new one started
    assert events(db) == [(old.pid, "library started"), (old.pid, "library stopped"),
                          (new.pid, "library started")]


def test_a_killed_poller_commits_nothing_of_the_update_in_hand(library, bots, db, telegram):
    # SIGKILL while the handler runs (before its reply): the next poller
    # processes the update again, and its row exists once
    first = bots(library)
    first.wait_ready()
    [slow] = telegram.queue_updates(TOKEN, [{"text": "slow one"}])
    wait_for(lambda: in_transaction(db), 10, "the handler running")
    first.kill()
    second = bots(library)
    second.wait_ready()
    wait_for(lambda: notes(db), 15, "the update processed again")
    assert notes(db) == [(slow, "slow one", second.pid)]
    wait_for(lambda: replies(telegram), 10, "the reply")
    assert replies(telegram) == ["noted: slow one"]


def test_a_reply_sent_before_a_kill_is_sent_again(library, bots, db, telegram):
    # what is not exactly-once: the handler answered, then the process died
    # before the commit; the row is still there once, the reply twice
    first = bots(library)
    first.wait_ready()
    [late] = telegram.queue_updates(TOKEN, [{"text": "late one"}])
    wait_for(lambda: replies(telegram) == ["noted: late one"], 10, "the first reply")
    assert in_transaction(db)
    first.kill()
    second = bots(library)
    second.wait_ready()
    wait_for(lambda: len(replies(telegram)) == 2, 15, "the second reply")
    time.sleep(2.5)  # the second handler's own pause, then its commit
    assert notes(db) == [(late, "late one", second.pid)]
    assert replies(telegram) == ["noted: late one", "noted: late one"]


def test_sigterm_finishes_the_update_in_hand_and_leaves_the_rest_to_telegram(library, bots, db, telegram):
    bot = bots(library)
    bot.wait_ready()
    [slow] = telegram.queue_updates(TOKEN, [{"text": "slow two"}])
    wait_for(lambda: in_transaction(db), 10, "the handler running")
    started = time.monotonic()
    bot.proc.send_signal(15)
    [later] = telegram.queue_updates(TOKEN, [{"text": "after the signal"}])
    assert bot.wait(20) == 0, bot.logs()
    took = time.monotonic() - started
    assert notes(db) == [(slow, "slow two", bot.pid)]
    assert replies(telegram) == ["noted: slow two"]
    assert telegram.stats(TOKEN)["pending_ids"] == [later], "Telegram keeps what came after"
    assert query(db, "SELECT next_offset FROM botkit_offsets") == [(slow + 1,)]
    logs = bot.logs()
    assert logs.index("SIGTERM received") < logs.index(f"stopped polling; offset {slow + 1} committed")
    assert logs.index("released the poller lock") < logs.index("shutdown complete (exit code 0)")
    assert took < 8, took


def test_a_handlers_exception_rolls_its_writes_back_and_skips_the_update(library, bots, db, telegram):
    bot = bots(library)
    bot.wait_ready()
    boom, after = telegram.queue_updates(TOKEN, [{"text": "boom three"}, {"text": "after boom"}])
    wait_for(lambda: notes(db), 15, "the next update")
    assert notes(db) == [(after, "after boom", bot.pid)]
    assert replies(telegram) == ["noted: after boom"]
    assert query(db, "SELECT next_offset FROM botkit_offsets") == [(after + 1,)]
    bot.wait_log(f"update {boom}: the handler failed, its database writes were rolled back")
    assert "RuntimeError: boom in 'boom three'" in bot.logs()
    # the app's own error handler ran (PTB: it stops the others; aiogram: it handles the error),
    # and still nothing of the update committed
    assert (bot.pid, "app error handler: boom in 'boom three'") in events(db)


def test_a_lost_lock_stops_polling_commits_nothing_and_exits_for_a_restart(library, bots, db, telegram):
    first = bots(library)
    first.wait_ready()
    first.wait_log("acquired the poller lock")
    [slow] = telegram.queue_updates(TOKEN, [{"text": "slow lock"}])
    wait_for(lambda: in_transaction(db), 10, "the handler running")
    assert terminate(db, "polling_bot:poller") == 1
    assert first.wait(20) == 1, first.logs()
    assert "lost the poller lock's connection" in first.logs()
    assert notes(db) == []
    second = bots(library)
    second.wait_ready()
    wait_for(lambda: notes(db), 15, "the update processed by the next poller")
    assert notes(db) == [(slow, "slow lock", second.pid)]


def test_an_update_that_outlives_the_shutdown_timeout_is_cancelled_not_committed(library, bots, db, telegram):
    first = bots(library, BOTKIT_SHUTDOWN_TIMEOUT="1.5")
    first.wait_ready()
    [hang] = telegram.queue_updates(TOKEN, [{"text": "hang forever"}, ])
    wait_for(lambda: in_transaction(db), 10, "the handler running")
    started = time.monotonic()
    first.proc.send_signal(15)
    assert first.wait(20) == 1, first.logs()
    assert time.monotonic() - started < 6
    assert "did not finish within 1.5s of the stop: cancelled, nothing of it committed" in first.logs()
    assert notes(db) == [] and query(db, "SELECT count(*) FROM botkit_offsets")[0][0] == 0
    assert telegram.stats(TOKEN)["pending_ids"] == [hang], "Telegram still has it for the next poller"


def test_an_offset_the_bot_api_ignores_is_not_a_deaf_bot(library, bots, db, telegram):
    # the stored offset is past every update the Bot API has (its ids restarted,
    # another Bot API server, a restored database): it answers from its queue
    first = bots(library)
    first.wait_ready()
    first.wait_log("polling from offset 0")
    assert first.terminate() == 0
    query(db, "INSERT INTO botkit_offsets (bot_id, next_offset) VALUES (400001, 90000) "
              "ON CONFLICT (bot_id) DO UPDATE SET next_offset = 90000")
    [fresh] = telegram.queue_updates(TOKEN, [{"text": "after a restart"}])
    second = bots(library)
    second.wait_ready()
    wait_for(lambda: notes(db), 15, "the update processed")
    assert notes(db) == [(fresh, "after a restart", second.pid)]
    second.wait_log(f"the Bot API ignored offset 90000 and answered from update {fresh}")
    assert telegram.stats(TOKEN)["offsets_ignored"] >= 1


def test_the_heartbeat_means_polling(library, bots, db, telegram):
    active = bots(library)
    active.wait_ready()
    standby = bots(library)
    standby.wait_ready()
    standby.wait_log("standby: waiting for the poller lock")
    wait_for(lambda: query(db, "SELECT pid FROM heartbeats"), 10, "a heartbeat")
    time.sleep(1.5)
    row = query(db, "SELECT pid, release, state, extract(epoch FROM now() - beat_at) FROM heartbeats")
    assert len(row) == 1 and row[0][:3] == (active.pid, "r1", "polling"), "only the poller beats"
    assert float(row[0][3]) < 1.5
    # a deaf poller (every getUpdates a 409) stops beating
    telegram.set_fail(TOKEN, {"mode": "409"})
    active.wait_log("409 Conflict from getUpdates")
    active.wait_log("heartbeat paused: no successful getUpdates", timeout=10)
    age = beat_age(db)
    time.sleep(1.0)
    assert beat_age(db) > age + 0.9
    telegram.set_fail(TOKEN, {"mode": "none"})
    wait_for(lambda: beat_age(db) < 0.8, 10, "the heartbeat again")


def test_on_one_of_several_servers_the_heartbeat_goes_in_that_servers_row(library, bots, db, telegram):
    bot = bots(library, "webhook", WEBHOOK_URL="http://127.0.0.1:9/webhook", HEARTBEAT_KEY="webhook_bot@app2")
    bot.wait_ready()
    wait_for(lambda: query(db, "SELECT service FROM heartbeats"), 10, "a heartbeat")
    assert query(db, "SELECT service, release FROM heartbeats") == [("webhook_bot@app2", "r1")]


def test_the_webhook_is_guarded_answered_after_commit_and_once(library, bots, db, telegram):
    bot = bots(library, "webhook", WEBHOOK_SECRET="s3cret", WEBHOOK_URL="http://127.0.0.1:9/webhook")
    ready = bot.wait_ready()
    assert ready["mode"] == "webhook" and ready["status"] == "ready"
    wait_for(lambda: telegram.stats(TOKEN)["webhook_url"] == "http://127.0.0.1:9/webhook", 10, "setWebhook")
    update = {"update_id": 7001, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
                                             "text": "by hook"}}
    status, _ = bot.http("POST", "/webhook", update)
    assert status == 401 and notes(db) == []
    good = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
    assert bot.http("POST", "/webhook", update, good) == (200, {"ok": True})
    assert notes(db) == [(7001, "by hook", bot.pid)], "committed before the answer"
    # Telegram delivers it again (no 2xx seen): answered, not processed again
    assert bot.http("POST", "/webhook", update, good) == (200, {"ok": True, "duplicate": True})
    assert notes(db) == [(7001, "by hook", bot.pid)] and replies(telegram) == ["noted: by hook"]
    # SIGTERM while a request is in flight: it is finished, then the bot exits
    slow = dict(update, update_id=7002, message=dict(update["message"], text="slow hook"))
    answer: dict = {}
    request = threading.Thread(target=lambda: answer.update(r=bot.http("POST", "/webhook", slow, good)))
    request.start()
    wait_for(lambda: in_transaction(db, "webhook_bot:webhook"), 10, "the request in flight")
    bot.proc.send_signal(15)
    request.join(15)
    assert answer["r"] == (200, {"ok": True})
    assert bot.wait(15) == 0, bot.logs()
    assert [u for u, _, _ in notes(db)] == [7001, 7002]


def test_a_webhook_update_whose_connection_dies_is_answered_503_and_retried(library, bots, db, telegram):
    bot = bots(library, "webhook")
    bot.wait_ready()
    update = {"update_id": 7101, "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"},
                                             "text": "slow and lost"}}
    answer: dict = {}
    request = threading.Thread(target=lambda: answer.update(r=bot.http("POST", "/webhook", update)))
    request.start()
    wait_for(lambda: in_transaction(db, "webhook_bot:webhook"), 10, "the request in flight")
    assert terminate(db, "webhook_bot:webhook") == 1
    request.join(15)
    assert answer["r"][0] == 503, answer
    assert notes(db) == []
    # Telegram delivers it again: processed once
    assert bot.http("POST", "/webhook", update) == (200, {"ok": True})
    assert [u for u, _, _ in notes(db)] == [7101]


def test_a_missing_database_url_is_a_clear_error(library, bots, db, telegram):
    bot = bots(library, DATABASE_URL="")
    assert bot.wait(20) == 2
    assert "invalid configuration: DATABASE_URL is not set" in bot.logs()


def test_a_heartbeat_table_of_another_shape_is_a_clear_error(library, bots, db, telegram):
    # an app's own heartbeats table, with only what the deploy's health check reads
    query(db, "CREATE TABLE heartbeats (service text, release text, beat_at timestamptz)")
    bot = bots(library)
    assert bot.wait(20) == 2
    assert "the table heartbeats exists but the kit cannot write its heartbeat there" in bot.logs()
    assert "Set BOTKIT_HEARTBEAT_TABLE to another table" in bot.logs()
    assert query(db, "SELECT count(*) FROM heartbeats") == [(0,)]


def test_webhook_updates_of_one_chat_run_in_order_and_of_two_chats_at_once(library, bots, db, telegram):
    bot = bots(library, "webhook")
    bot.wait_ready()

    def update(update_id: int, chat: int, text: str) -> dict:
        return {"update_id": update_id, "message": {"message_id": update_id, "date": 0, "text": text,
                                                    "chat": {"id": chat, "type": "private"}}}

    def at_once(*updates: dict) -> float:
        started = time.monotonic()
        threads = [threading.Thread(target=bot.http, args=("POST", "/webhook", u)) for u in updates]
        for t in threads:
            t.start()
            time.sleep(0.05)  # in this order
        for t in threads:
            t.join(20)
        return time.monotonic() - started

    two_chats = at_once(update(8001, 1, "slow one"), update(8002, 2, "slow two"))
    one_chat = at_once(update(8003, 3, "slow three"), update(8004, 3, "after three"))
    assert two_chats < 3.5, two_chats  # each sleeps 2 s: side by side
    assert one_chat >= 2.0, one_chat  # the second waited for the first
    ids = [u for u, _, _ in notes(db)]
    assert sorted(ids[:2]) == [8001, 8002] and ids[2:] == [8003, 8004], ids
