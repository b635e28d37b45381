"""An aiogram 3 app under the kit, for the kit's own tests (as ptb_bot.py).

Its handler takes workflow data passed to ``start_polling`` (``label``) and the
``dispatcher``, as aiogram's own polling gives them.
"""

from __future__ import annotations

import asyncio
import os
import sys

import fieldservice_botkit
import psycopg
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import ErrorEvent, Message, Update
from fieldservice_botkit import aiogram as botkit

router = Router()


async def event(what: str) -> None:
    async with await psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        await conn.execute("INSERT INTO kit_events (pid, event) VALUES (%s, %s)", (os.getpid(), what))


@router.message(F.text)
async def note(message: Message, event_update: Update, label: str, dispatcher: Dispatcher) -> None:
    assert label == "kit" and isinstance(dispatcher, Dispatcher)
    text = message.text
    await fieldservice_botkit.connection().execute(
        "INSERT INTO kit_notes (update_id, body, pid) VALUES (%s, %s, %s)",
        (event_update.update_id, text, os.getpid()))
    pause = float(os.environ.get("SLOW_SECONDS", "2"))
    if text.startswith("slow"):
        await asyncio.sleep(pause)
    if text.startswith("hang"):
        await asyncio.sleep(3600)
    if text.startswith("boom"):
        raise RuntimeError(f"boom in {text!r}")
    await message.answer(f"noted: {text}")
    if text.startswith("late"):
        await asyncio.sleep(pause)


@router.errors()
async def app_error_handler(error: ErrorEvent) -> bool:
    # the app's own, handling the error (aiogram then reports no exception)
    await event(f"app error handler: {error.exception}")
    return True


def build() -> tuple[Dispatcher, Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(os.environ["TELEGRAM_API_BASE"]))
    dp = Dispatcher()
    dp.include_router(router)

    async def started() -> None:
        await event("library started")

    async def stopped() -> None:
        await event("library stopped")

    dp.startup.register(started)
    dp.shutdown.register(stopped)
    return dp, Bot(token=os.environ["BOT_TOKEN"], session=session)


async def polling() -> None:  # the async entry point, as aiogram's docs start a poller
    await botkit.start_polling(*build(), label="kit")


def webhook() -> None:
    botkit.run_webhook(*build(), port=8080, path="/webhook", webhook_url=os.environ.get("WEBHOOK_URL"),
                       secret_token=os.environ.get("WEBHOOK_SECRET") or None, label="kit")


if __name__ == "__main__":
    if sys.argv[1] == "webhook":
        webhook()
    else:
        asyncio.run(polling())
