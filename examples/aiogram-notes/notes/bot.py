"""The bots' router, Dispatcher and Bot, written as aiogram's docs show.

Nothing here knows about the deploy: no lock, no heartbeat, no readiness
endpoint. Each text message is stored as a note (with the update's id, so a
test can count lost and duplicated updates) and answered.
"""

from __future__ import annotations

import logging
import os

import psycopg
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.types import Message, Update

router = Router()


def reply_for(text: str) -> str:
    """What the bot answers to a note."""
    return f"noted: {text.strip()}"


@router.message(CommandStart())
async def start(message: Message) -> None:
    await message.answer("Send me a note and I will keep it.")


@router.message(F.text)
async def note(message: Message, event_update: Update, db: psycopg.AsyncConnection, bot_name: str) -> None:
    await db.execute(
        "INSERT INTO notes (update_id, chat_id, body, bot, release) VALUES (%s, %s, %s, %s, %s)",
        (event_update.update_id, message.chat.id, message.text, bot_name, os.environ.get("APP_RELEASE", "")),
    )
    await message.answer(reply_for(message.text))


async def open_db(dispatcher: Dispatcher) -> None:
    dispatcher["db"] = await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"], autocommit=True)


async def close_db(dispatcher: Dispatcher) -> None:
    await dispatcher["db"].close()


def build(name: str) -> tuple[Dispatcher, Bot]:
    """The Dispatcher and Bot of one bot, from the environment the deploy gives it."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    api = os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/")
    bot = Bot(token=os.environ["BOT_TOKEN"], session=AiohttpSession(api=TelegramAPIServer.from_base(api)))
    dp = Dispatcher(bot_name=name)
    dp.include_router(router)
    dp.startup.register(open_db)
    dp.shutdown.register(close_db)
    return dp, bot
