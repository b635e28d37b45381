"""A python-telegram-bot app under the kit, for the kit's own tests.

``python ptb_bot.py polling|webhook``. Each text is stored in ``kit_notes``
through the kit's connection and answered; ``slow ...`` sleeps SLOW_SECONDS
before answering, ``late ...`` answers, then sleeps; ``boom ...`` raises after
its insert.
"""

from __future__ import annotations

import asyncio
import os
import sys

import fieldservice_botkit
from fieldservice_botkit import ptb as botkit
from telegram import Update
from telegram.ext import Application, ContextTypes, MessageHandler, filters


async def note(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    text = update.message.text
    await fieldservice_botkit.connection().execute(
        "INSERT INTO kit_notes (update_id, body, pid) VALUES (%s, %s, %s)",
        (update.update_id, text, os.getpid()))
    pause = float(os.environ.get("SLOW_SECONDS", "2"))
    if text.startswith("slow"):
        await asyncio.sleep(pause)
    if text.startswith("boom"):
        raise RuntimeError(f"boom in {text!r}")
    await update.message.reply_text(f"noted: {text}")
    if text.startswith("late"):
        await asyncio.sleep(pause)


def main() -> None:
    application = (Application.builder().token(os.environ["BOT_TOKEN"])
                   .base_url(f"{os.environ['TELEGRAM_API_BASE']}/bot").build())
    application.add_handler(MessageHandler(filters.TEXT, note))
    if sys.argv[1] == "polling":
        botkit.run_polling(application)
    else:
        botkit.run_webhook(application, port=8080, url_path="webhook",
                           webhook_url=os.environ.get("WEBHOOK_URL"),
                           secret_token=os.environ.get("WEBHOOK_SECRET") or None)


if __name__ == "__main__":
    main()
