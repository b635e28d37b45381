"""The polling bot: ``python -m notes.polling_bot``."""

from telegram import Update

from notes.bot import build


def main() -> None:
    build("polling_bot").run_polling(allowed_updates=Update.ALL_TYPES)


if __name__ == "__main__":
    main()
