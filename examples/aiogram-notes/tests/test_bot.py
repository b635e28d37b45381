"""The app's own tests: they import aiogram, so they run only in an environment
that has the app's requirements (not the deploy tool's)."""

from __future__ import annotations

from notes.bot import build, reply_for, router


def test_the_reply_repeats_the_note():
    assert reply_for("  buy milk ") == "noted: buy milk"


def test_the_bot_talks_to_the_configured_api(monkeypatch):
    monkeypatch.setenv("BOT_TOKEN", "1:abc")
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://fake:8081/")
    dp, bot = build("polling_bot")
    assert bot.session.api.api_url(bot.token, "getMe") == "http://fake:8081/bot1:abc/getMe"
    assert router in dp.sub_routers
    assert dp.resolve_used_update_types() == ["message"]
