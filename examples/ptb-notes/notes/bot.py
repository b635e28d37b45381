"""The bots' handlers and the Application, written as python-telegram-bot's docs show.

Nothing here knows about the deploy: no lock, no heartbeat, no readiness
endpoint. Each text message is stored as a note (with the update's id, so
a test can count lost and duplicated updates) and answered.
"""

from __future__ import annotations

import logging
import os

import psycopg
from telegram import Update
from telegram.ext import Application, CommandHandler, ContextTypes, MessageHandler, filters

log = logging.getLogger("notes")


def reply_for(text: str) -> str:
    """What the bot answers to a note."""
    return f"noted: {text.strip()}"


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text("Send me a note and I will keep it.")


async def note(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    conn: psycopg.AsyncConnection = context.bot_data["db"]
    await conn.execute(
        "INSERT INTO notes (update_id, chat_id, body, bot, release) VALUES (%s, %s, %s, %s, %s)",
        (update.update_id, update.effective_chat.id, update.message.text,
         context.bot_data["name"], os.environ.get("APP_RELEASE", "")),
    )
    await update.message.reply_text(reply_for(update.message.text))


async def open_db(application: Application) -> None:
    application.bot_data["db"] = await psycopg.AsyncConnection.connect(
        application.bot_data["database_url"], autocommit=True)


async def close_db(application: Application) -> None:
    conn = application.bot_data.pop("db", None)
    if conn is not None:
        await conn.close()


def build(name: str) -> Application:
    """The Application of one bot, from the environment the deploy gives it."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    api = os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/")
    application = (
        Application.builder()
        .token(os.environ["BOT_TOKEN"])
        .base_url(f"{api}/bot")
        .post_init(open_db)
        .post_shutdown(close_db)
        .build()
    )
    application.bot_data.update(name=name, database_url=os.environ["DATABASE_URL"])
    application.add_handler(CommandHandler("start", start))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, note))
    return application
