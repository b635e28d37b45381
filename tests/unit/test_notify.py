"""Notifications (plugins/plugin_utils/notify.py) against a real HTTP receiver."""

from __future__ import annotations

import json
import socket

import pytest
from http_receiver import Receiver

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import notify

TOKEN = "123456:SECRET-token-never-shown"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


EVENT = {"event": "deploy_failure", "app": "field_service", "server": "prod-1", "release": "b2",
         "previous": "a1", "who": "ada@laptop", "seconds": 12.34, "reason": "Health check: FAILED (db)",
         "log_tail": ["[2026-12-07 12:00:00] START DEPLOYMENT", "[2026-12-07 12:00:12] DEPLOYMENT FAILED"]}


def test_each_channel_gets_its_own_shape(receiver):
    sleeps = []
    channels = notify.check_channels([
        {"type": "telegram", "bot_token": TOKEN, "chat_id": "-100200", "api_base": receiver.url},
        {"type": "slack", "url": receiver.url + "/services/T0/B0/XYZ"},
        {"type": "webhook", "url": receiver.url + "/hook", "headers": {"Authorization": "Bearer s3"}},
    ])
    results = notify.send(channels, EVENT, sleep=sleeps.append)
    assert [r["ok"] for r in results] == [True, True, True] and sleeps == []
    tg, slack, hook = receiver.got
    assert tg["path"] == f"/bot{TOKEN}/sendMessage"
    assert tg["body"]["chat_id"] == "-100200"
    text = tg["body"]["text"]
    assert text.startswith("❌ field_service prod-1: deploy FAILED")
    for piece in ("release: b2 (was a1)", "by: ada@laptop", "took: 12.3 s",
                  "reason: Health check: FAILED (db)", "DEPLOYMENT FAILED"):
        assert piece in text
    assert slack["path"] == "/services/T0/B0/XYZ" and slack["body"] == {"text": text}
    assert hook["headers"]["Authorization"] == "Bearer s3"
    assert hook["body"]["event"] == "deploy_failure" and hook["body"]["release"] == "b2"
    assert hook["body"]["text"] == text
    # what is reported names no token and no path
    assert all(r["channel"] in ("telegram (127.0.0.1)", "slack (127.0.0.1)", "webhook (127.0.0.1)")
               for r in results)


def test_server_errors_and_429_are_retried_then_delivered(receiver):
    receiver.answers = [(500, {}, {}), (429, {"ok": False, "parameters": {"retry_after": 3}}, {}),
                        (503, {}, {"Retry-After": "7"})]
    sleeps = []
    channel = {"type": "telegram", "bot_token": TOKEN, "chat_id": 1, "api_base": receiver.url}
    [result] = notify.send([channel], EVENT, retries=3, sleep=sleeps.append)
    assert result == {"channel": "telegram (127.0.0.1)", "ok": True, "attempts": 4, "error": ""}
    # 1 s, then what the 429 asked (3 s), then doubled
    assert sleeps == [1.0, 3.0, 6.0]
    assert len(receiver.got) == 4


def test_a_client_error_is_not_retried_and_never_raises(receiver):
    receiver.answers = [(401, {"ok": False, "description": "Unauthorized"}, {})]
    sleeps = []
    channel = {"type": "telegram", "bot_token": TOKEN, "chat_id": 1, "api_base": receiver.url}
    [result] = notify.send([channel], EVENT, sleep=sleeps.append)
    assert result["ok"] is False and result["error"] == "HTTP 401" and result["attempts"] == 1
    assert sleeps == []


def test_an_unreachable_channel_is_retried_and_reported_without_its_secret():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    sleeps = []
    channels = [{"type": "telegram", "bot_token": TOKEN, "chat_id": 1, "api_base": f"http://127.0.0.1:{port}"},
                {"type": "slack", "url": f"http://127.0.0.1:{port}/services/SECRET-PATH"}]
    results = notify.send(channels, EVENT, retries=2, timeout=2, sleep=sleeps.append)
    assert [r["ok"] for r in results] == [False, False]
    assert [r["attempts"] for r in results] == [3, 3]
    assert sleeps == [1.0, 2.0, 1.0, 2.0]
    shown = json.dumps(results)
    assert "Connection" in shown and TOKEN not in shown and "SECRET-PATH" not in shown


def test_events_are_chosen_by_the_team_and_by_each_channel(receiver):
    everything = {"type": "webhook", "url": receiver.url + "/all"}
    failures = {"type": "webhook", "url": receiver.url + "/failures", "events": ["deploy_failure"]}
    # by default a success of a scheduled backup is not sent, a deploy's is
    assert [r["channel"] for r in notify.send([everything], {"event": "backup_success"})] == []
    notify.send([everything, failures], {"event": "deploy_success"})
    notify.send([everything, failures], {"event": "deploy_failure"})
    notify.send([everything], {"event": "backup_success"}, events=["backup_success"])
    assert [g["path"] for g in receiver.got] == ["/all", "/all", "/failures", "/all"]


@pytest.mark.parametrize("channels, message", [
    ({"type": "telegram"}, "must be a list"),
    (["telegram"], r"notify_channels\[0\] must be a dict"),
    ([{"type": "email"}], r"notify_channels\[0\].type is 'email'"),
    ([{"type": "telegram", "chat_id": 1}], r"notify_channels\[0\].bot_token is empty"),
    ([{"type": "slack", "url": ""}], r"notify_channels\[0\].url is empty"),
    ([{"type": "webhook", "url": "ftp://x"}], "https://"),
    ([{"type": "webhook", "url": "https://x", "events": ["deploy_done"]}], "unknown"),
])
def test_a_channel_that_cannot_work_names_its_setting(channels, message):
    with pytest.raises(notify.ConfigError, match=message):
        notify.check_channels(channels)


def test_a_long_message_fits_telegrams_limit(receiver):
    channel = {"type": "telegram", "bot_token": TOKEN, "chat_id": 1, "api_base": receiver.url}
    event = dict(EVENT, log_tail=["x" * 200] * 40)
    [result] = notify.send([channel], event)
    assert result["ok"] and len(receiver.got[0]["body"]["text"]) <= notify.TELEGRAM_LIMIT


def test_the_text_of_a_start_and_of_a_success():
    start = notify.text_of({"event": "deploy_start", "app": "a", "release": "r2", "previous": "r1",
                            "who": "w@h"})
    assert start.splitlines()[0] == "🚀 a: deploy started"
    ok = notify.text_of({"event": "deploy_success", "app": "a", "release": "r2", "seconds": 185})
    assert ok.splitlines() == ["✅ a: deploy succeeded", "release: r2", "took: 3 min 5 s"]
