"""A python-telegram-bot app under the kit, for the kit's own tests.

``python ptb_bot.py polling|webhook``. Each text is stored in ``kit_notes``
through the kit's connection and answered; ``slow ...`` sleeps SLOW_SECONDS
before answering, ``late ...`` answers, then sleeps; ``hang ...`` sleeps an
hour; ``boom ...`` raises after its insert. The library's start and stop and
the app's own error handler are recorded in ``kit_events``.
"""

from __future__ import annotations

import asyncio
import os
import sys

import fieldservice_botkit
import psycopg
from fieldservice_botkit import ptb as botkit
from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes, MessageHandler, filters


async def event(what: str) -> None:
    async with await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        await conn.execute("INSERT INTO kit_events (pid, event) VALUES (%s, %s)", (os.getpid(), what))


async def note(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    text = update.message.text
    await fieldservice_botkit.connection().execute(
        "INSERT INTO kit_notes (update_id, body, pid) VALUES (%s, %s, %s)",
        (update.update_id, text, os.getpid()))
    pause = float(os.environ.get("SLOW_SECONDS", "2"))
    if text.startswith("slow"):
        await asyncio.sleep(pause)
    if text.startswith("hang"):
        await asyncio.sleep(3600)
    if text.startswith("boom"):
        raise RuntimeError(f"boom in {text!r}")
    await update.message.reply_text(f"noted: {text}")
    if text.startswith("late"):
        await asyncio.sleep(pause)


async def app_error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    # the app's own, stopping the others (the kit's must have run first)
    await event(f"app error handler: {context.error}")
    raise ApplicationHandlerStop


async def started(application: Application) -> None:
    await event("library started")


async def stopped(application: Application) -> None:
    await event("library stopped")


def main() -> None:
    application = (Application.builder().token(os.environ["BOT_TOKEN"])
                   .base_url(f"{os.environ['TELEGRAM_API_BASE']}/bot")
                   .post_init(started).post_shutdown(stopped).build())
    application.add_handler(MessageHandler(filters.TEXT, note))
    application.add_error_handler(app_error_handler)
    if sys.argv[1] == "polling":
        botkit.run_polling(application)
    else:
        botkit.run_webhook(application, port=8080, url_path="webhook",
                           webhook_url=os.environ.get("WEBHOOK_URL"),
                           secret_token=os.environ.get("WEBHOOK_SECRET") or None)


if __name__ == "__main__":
    main()
