"""fieldservice-botkit: zero-downtime deploys for aiogram 3 and python-telegram-bot 21+ bots.

``fieldservice_botkit.ptb.run_polling(application)`` /
``fieldservice_botkit.aiogram.run_polling(dp, bot)`` (and ``run_webhook``) run
the app's bot with the contract of the deploy tool (docs/zero-downtime.md):
one poller at a time, offsets committed with the handler's transaction, the
heartbeat, ``GET /ready`` and ``GET /health`` on the container port, and a
graceful SIGTERM. Handlers write through :func:`connection` to be exactly-once.
"""

from fieldservice_botkit.runtime import ConfigError, Settings, connection

__all__ = ["ConfigError", "Settings", "connection", "__version__"]
__version__ = "0.1.0"
