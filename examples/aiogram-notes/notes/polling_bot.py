"""The polling bot: ``python -m notes.polling_bot``."""

import asyncio

from notes.bot import build


async def main() -> None:
    dp, bot = build("polling_bot")
    await dp.start_polling(bot)


if __name__ == "__main__":
    asyncio.run(main())
