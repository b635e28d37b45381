"""The webhook bot: ``python -m notes.webhook_bot``, PTB's own webhook server on port 8080.

WEBHOOK_URL is the public URL Telegram posts to (it is registered at start);
WEBHOOK_SECRET, when set, is the secret_token Telegram sends back.
"""

import os

from telegram import Update

from notes.bot import build


def main() -> None:
    build("webhook_bot").run_webhook(
        listen="0.0.0.0",
        port=int(os.environ.get("PORT", "8080")),
        url_path="webhook",
        webhook_url=os.environ["WEBHOOK_URL"],
        secret_token=os.environ.get("WEBHOOK_SECRET") or None,
        allowed_updates=Update.ALL_TYPES,
    )


if __name__ == "__main__":
    main()
