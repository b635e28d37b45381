"""The app's own tests: they import python-telegram-bot, so they run only in
an environment that has the app's requirements (not the deploy tool's)."""

from __future__ import annotations

from notes.bot import build, reply_for
from telegram.ext import CommandHandler, MessageHandler


def test_the_reply_repeats_the_note():
    assert reply_for("  buy milk ") == "noted: buy milk"


def test_the_application_talks_to_the_configured_api(monkeypatch):
    monkeypatch.setenv("BOT_TOKEN", "1:abc")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/notes")
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://fake:8081/")
    application = build("polling_bot")
    assert application.bot.base_url == "http://fake:8081/bot1:abc"
    kinds = [type(h) for group in application.handlers.values() for h in group]
    assert kinds == [CommandHandler, MessageHandler]
