"""python-telegram-bot 21+: run an ``Application`` under the kit.

Replace ``application.run_polling(...)`` with ``botkit.run_polling(application, ...)``
and ``application.run_webhook(...)`` with ``botkit.run_webhook(application, ...)``
(same keyword arguments). The handlers stay as PTB's docs write them; the kit
calls ``application.process_update`` for each update (the Application's own
``Updater``, if it has one, is never started), and runs ``post_init``,
``post_stop`` and ``post_shutdown`` as ``run_polling`` does.

What is exactly-once (docs: README, "The bot kit"):

* a handler's writes through ``fieldservice_botkit.connection()`` and the
  update's offset (polling) or its processed-record (webhook) commit together:
  a kill at any moment leaves both or neither, and the update is processed
  again by the next poller only when neither was committed;
* a handler's exception reaches PTB's error handlers as usual and rolls its
  writes back; the update is then skipped (as ``run_polling`` does);
* messages sent to Telegram are at-least-once: a process killed (SIGKILL) after
  ``reply_text`` and before the commit sends that reply again. SIGTERM never
  does that: the update in hand is finished and committed first;
* ``block=False`` handlers run after their update's transaction (``connection()``
  raises there): at-least-once, like writes on a connection of the app's own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import Any

from telegram import Update
from telegram.error import Conflict as PtbConflict
from telegram.ext import Application, ContextTypes

from fieldservice_botkit import runtime

log = logging.getLogger("fieldservice_botkit.ptb")


class PtbAdapter(runtime.Adapter):
    library = "python-telegram-bot"
    log_tracebacks = False

    def __init__(self, application: Application, allowed_updates: Sequence[str] | None) -> None:
        self.application = application
        self.allowed_updates = None if allowed_updates is None else list(allowed_updates)
        self.bot_id = int(application.bot.token.split(":", 1)[0])
        self._stopped = False

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        runtime.mark_failed(context.error or RuntimeError("handler failed"))
        if len(self.application.error_handlers) == 1:  # only ours: log it as PTB would
            log.error("update %s: a handler raised", getattr(update, "update_id", "?"),
                      exc_info=context.error)

    async def check(self) -> None:
        await self.application.bot.initialize()  # getMe; Application.initialize() does not repeat it

    async def close(self) -> None:
        if not self.application.running:
            await self.application.bot.shutdown()

    def chat_of(self, update: Any) -> int | None:
        chat = update.effective_chat
        return chat.id if chat is not None else None

    async def start(self) -> None:
        app = self.application
        # first, blocking: an app's handler raising ApplicationHandlerStop, or Defaults(block=False),
        # must not keep the kit from rolling the update's writes back
        others = dict(app.error_handlers)
        app.error_handlers.clear()
        app.add_error_handler(self._on_error, block=True)
        app.error_handlers.update(others)
        await app.initialize()
        if app.post_init:
            await app.post_init(app)
        await app.start()

    async def stop(self) -> None:
        app = self.application
        if app.running:
            await app.stop()
            if app.post_stop:
                await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)

    async def get_updates(self, offset: int, timeout: float, limit: int = 100) -> list[tuple[int, Any]]:
        try:
            updates = await self.application.bot.get_updates(
                offset=offset, timeout=int(timeout), limit=limit, allowed_updates=self.allowed_updates)
        except PtbConflict as exc:
            raise runtime.Conflict(str(exc)) from exc
        return [(u.update_id, u) for u in updates]

    def parse(self, data: dict[str, Any]) -> tuple[int, Any]:
        update = Update.de_json(data, self.application.bot)
        if update is None:
            raise ValueError("empty update")
        return update.update_id, update

    async def process(self, update: Any) -> None:
        await self.application.process_update(update)

    async def delete_webhook(self) -> None:
        await self.application.bot.delete_webhook(drop_pending_updates=False)

    async def set_webhook(self, url: str, secret_token: str | None) -> None:
        await self.application.bot.set_webhook(url=url, secret_token=secret_token,
                                               allowed_updates=self.allowed_updates)


def run_polling(application: Application, *, allowed_updates: Sequence[str] | None = None,
                service: str | None = None, **ignored: Any) -> None:
    """``application.run_polling()`` under the kit: one poller at a time, handoff on SIGTERM.

    ``poll_interval``, ``timeout``, ``bootstrap_retries``, ``drop_pending_updates``
    and ``stop_signals`` of PTB's ``run_polling`` are accepted and not used (the
    kit's are ``BOTKIT_POLL_TIMEOUT`` and SIGTERM/SIGINT; pending updates are
    never dropped). Exits the process with the runtime's exit code.
    """
    _refuse_drop(ignored)
    sys.exit(runtime.run(lambda: PtbAdapter(application, allowed_updates), "polling", service))


def run_webhook(application: Application, listen: str = "0.0.0.0", port: int = 80, url_path: str = "",
                *, webhook_url: str | None = None, secret_token: str | None = None,
                allowed_updates: Sequence[str] | None = None, service: str | None = None,
                **ignored: Any) -> None:
    """``application.run_webhook()`` under the kit: the kit's server on ``port`` serves
    ``POST /<url_path>`` (answered 200 once the handlers are done and committed),
    ``GET /ready`` and ``GET /health``; ``webhook_url`` is registered at start
    (with ``secret_token``, which every request must then carry)."""
    _refuse_drop(ignored)
    sys.exit(runtime.run(lambda: PtbAdapter(application, allowed_updates), "webhook", service, port,
                         webhook_path=url_path or "/", webhook_url=webhook_url, secret_token=secret_token,
                         listen=listen))


def _refuse_drop(options: dict[str, Any]) -> None:
    if options.get("drop_pending_updates"):
        raise ValueError("drop_pending_updates=True would lose the updates a deploy hands over; "
                         "the kit never drops them")
