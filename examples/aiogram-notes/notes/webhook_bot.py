"""The webhook bot: ``python -m notes.webhook_bot``, aiogram's aiohttp webhook on port 8080.

WEBHOOK_URL is the public URL Telegram posts to (it is registered at start);
WEBHOOK_SECRET, when set, is the secret_token Telegram sends back.
"""

import os

from aiogram import Bot
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from notes.bot import build

SECRET = os.environ.get("WEBHOOK_SECRET") or None


async def register(bot: Bot) -> None:
    await bot.set_webhook(os.environ["WEBHOOK_URL"], secret_token=SECRET)


def main() -> None:
    dp, bot = build("webhook_bot")
    dp.startup.register(register)
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=SECRET).register(app, path="/webhook")
    setup_application(app, dp, bot=bot)
    web.run_app(app, host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))


if __name__ == "__main__":
    main()
