"""Webhook bot (admin_bot) as a real subprocess."""

from __future__ import annotations

import urllib.request

from fs_support import Fake, assert_clean_logs, query, wait_for


def update(update_id: int, text: str, chat_id: int = 55) -> dict:
    return {"update_id": update_id, "message": {
        "message_id": 1, "date": 0, "chat": {"id": chat_id, "type": "private"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "T"}, "text": text}}


SECRET = {"X-Telegram-Bot-Api-Secret-Token": "s3cret"}


def test_webhook_processes_update_and_ready(database_url: str, fake: Fake, start_bot) -> None:
    bot = start_bot("admin_bot", database_url, fake, WEBHOOK_SECRET="s3cret")
    bot.wait_ready()
    status, info = bot.http("GET", "/ready")
    assert status == 200 and info["mode"] == "webhook" and info["status"] == "ready"
    assert bot.http("GET", "/health")[0] == 200

    # wrong or missing secret: rejected, nothing processed
    assert bot.http("POST", "/webhook", update(1, "x"))[0] == 401
    assert bot.http("POST", "/webhook", update(1, "x"),
                    {"X-Telegram-Bot-Api-Secret-Token": "nope"})[0] == 401
    assert fake.sent() == []

    assert bot.http("POST", "/webhook", update(1, "hi"), SECRET) == (200, {"ok": True})
    # processed synchronously: the reply was sent before the 200
    assert [(m["chat_id"], m["text"]) for m in fake.sent()] == [(55, "admin_bot 1.0.0: got hi")]
    # Telegram redelivering the same update: 200, no second reply
    assert bot.http("POST", "/webhook", update(1, "hi"), SECRET)[0] == 200
    assert len(fake.sent()) == 1
    assert bot.http("POST", "/webhook", update(2, "/release"), SECRET)[0] == 200
    assert fake.sent()[-1]["text"] == "admin_bot 1.0.0 (release r-test)"
    rows = query(database_url, "SELECT service, update_id, chat_id, text, release"
                               " FROM processed_updates ORDER BY update_id")
    assert rows == [("admin_bot", 1, 55, "hi", "r-test"), ("admin_bot", 2, 55, "/release", "r-test")]

    # malformed requests
    assert bot.http("POST", "/webhook", {"no": "update_id"}, SECRET)[0] == 400
    req = urllib.request.Request(f"http://127.0.0.1:{bot.port}/webhook", data=b"{not json",
                                 method="POST", headers=SECRET)
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("expected 400")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400
    # non-message updates are recorded, no reply
    assert bot.http("POST", "/webhook", {"update_id": 3, "callback_query": {}}, SECRET)[0] == 200
    assert len(fake.sent()) == 2

    # heartbeat: webhook state, release
    wait_for(lambda: query(database_url, "SELECT service, release, state FROM heartbeats")
             == [("admin_bot", "r-test", "webhook")], 5, "webhook heartbeat")
    assert bot.terminate() == 0
    assert_clean_logs(bot.logs())


def test_webhook_reply_failure_returns_error_so_telegram_retries(
        database_url: str, fake: Fake, start_bot) -> None:
    bot = start_bot("admin_bot", database_url, fake)  # no secret configured
    bot.wait_ready()
    fake.fail("500", methods=["sendMessage"], count=1)
    assert bot.http("POST", "/webhook", update(10, "first try"))[0] == 502
    assert query(database_url, "SELECT count(*) FROM processed_updates") == [(0,)]  # rolled back
    assert bot.http("POST", "/webhook", update(10, "first try"))[0] == 200
    assert [m["text"] for m in fake.sent()] == ["admin_bot 1.0.0: got first try"]
    # a permanent error (bot blocked, ...) is not retried forever
    assert bot.http("POST", "/webhook", {"update_id": 11, "message": {"chat": {"id": 5},
                                                                      "text": ""}})[0] == 200
    assert bot.terminate() == 0


def test_fake_pushes_updates_to_the_webhook(database_url: str, fake: Fake, start_bot) -> None:
    """End to end: fake Telegram delivers to POST /webhook with the secret."""
    bot = start_bot("admin_bot", database_url, fake, WEBHOOK_SECRET="s3cret")
    bot.wait_ready()
    fake.server.call(fake.token, "setWebhook", {"url": f"http://127.0.0.1:{bot.port}/webhook",
                                                "secret_token": "s3cret"})
    ids = fake.queue("pushed 1", "pushed 2")
    wait_for(lambda: len(fake.sent()) == 2, 10, "replies to pushed updates")
    assert [r[0] for r in query(database_url, "SELECT update_id FROM processed_updates"
                                              " ORDER BY 1")] == ids
    wait_for(lambda: fake.stats()["queued"] == 0, 5, "webhook deliveries confirmed")
    fake.server.call(fake.token, "deleteWebhook", {})
    assert bot.terminate() == 0
