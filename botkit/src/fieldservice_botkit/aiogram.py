"""aiogram 3: run a ``Dispatcher`` and its ``Bot`` under the kit.

Replace ``await dp.start_polling(bot)`` with ``await botkit.start_polling(dp, bot)``
(or ``dp.run_polling(bot)`` with ``botkit.run_polling(dp, bot)``), and the aiohttp webhook application
(``SimpleRequestHandler(...).register(app, path)``, ``setup_application``,
``web.run_app``) with ``botkit.run_webhook(dp, bot, path=..., port=...,
secret_token=...)``. Routers, handlers, middlewares and ``dp.startup`` /
``dp.shutdown`` stay as aiogram's docs write them: the kit emits startup and
shutdown, and calls ``dp.feed_update`` for each update (sending a method a
handler returns, as aiogram's polling does).

What is exactly-once (README, "The bot kit"): as for python-telegram-bot. A
handler's writes through ``fieldservice_botkit.connection()`` commit with the
update's offset or processed-record; a handler's exception (aiogram's
``dp.errors`` handlers run first) rolls them back and the update is skipped;
replies sent before a SIGKILL are sent again. Unlike ``dp.start_polling``
(``handle_as_tasks=True``), the kit processes a poller's updates one at a time,
in order: that is what lets the offset be committed with the handler.
"""

from __future__ import annotations

import sys
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramConflictError
from aiogram.methods import TelegramMethod
from aiogram.types import Update

from fieldservice_botkit import runtime

_UNSET: Any = object()


class AiogramAdapter(runtime.Adapter):
    library = "aiogram"

    def __init__(self, dp: Dispatcher, bot: Bot, allowed_updates: Any, close_bot_session: bool,
                 data: dict[str, Any]) -> None:
        self.dp, self.bot = dp, bot
        self.allowed_updates = dp.resolve_used_update_types() if allowed_updates is _UNSET \
            else allowed_updates
        self.bot_id = bot.id
        self.close_bot_session = close_bot_session
        # what start_polling(dp, bot, **kwargs) gives handlers and startup hooks
        self.workflow = {"dispatcher": dp, "bots": [bot], **dp.workflow_data, **data}
        self.workflow.pop("bot", None)
        # inside aiogram's ErrorsMiddleware (registered first): sees a handler's exception even when
        # an @dp.errors() handler then handles it, so that its writes are rolled back
        dp.update.outer_middleware(self._mark_failed)

    @staticmethod
    async def _mark_failed(handler: Any, event: Any, data: dict[str, Any]) -> Any:
        try:
            return await handler(event, data)
        except Exception as exc:
            runtime.mark_failed(exc)
            raise

    async def check(self) -> None:
        await self.bot.me()

    async def close(self) -> None:
        if self.close_bot_session:
            await self.bot.session.close()

    async def start(self) -> None:
        await self.dp.emit_startup(bot=self.bot, **self.workflow)

    async def stop(self) -> None:
        await self.dp.emit_shutdown(bot=self.bot, **self.workflow)

    async def get_updates(self, offset: int, timeout: float, limit: int = 100) -> list[tuple[int, Any]]:
        try:
            updates = await self.bot.get_updates(
                offset=offset, timeout=int(timeout), limit=limit, allowed_updates=self.allowed_updates,
                request_timeout=int(self.bot.session.timeout + timeout))
        except TelegramConflictError as exc:
            raise runtime.Conflict(str(exc)) from exc
        return [(u.update_id, u) for u in updates]

    def chat_of(self, update: Any) -> int | None:
        try:
            event = update.event  # the message, callback query, ... the update carries
        except Exception:  # noqa: BLE001 (an update type this aiogram does not know)
            return None
        chat = getattr(event, "chat", None) or getattr(getattr(event, "message", None), "chat", None)
        return chat.id if chat is not None else None

    def parse(self, data: dict[str, Any]) -> tuple[int, Any]:
        update = Update.model_validate(data, context={"bot": self.bot})
        return update.update_id, update

    async def process(self, update: Any) -> None:
        response = await self.dp.feed_update(self.bot, update, **self.workflow)
        if isinstance(response, TelegramMethod):
            await self.bot(response)

    async def delete_webhook(self) -> None:
        await self.bot.delete_webhook(drop_pending_updates=False)

    async def set_webhook(self, url: str, secret_token: str | None) -> None:
        await self.bot.set_webhook(url=url, secret_token=secret_token, allowed_updates=self.allowed_updates)


# aiogram's polling options that have no meaning under the kit (it polls one update at a
# time, with BOTKIT_POLL_TIMEOUT, and handles SIGTERM/SIGINT itself); any other keyword
# argument is workflow data for the handlers, as with dp.start_polling(bot, db=pool)
POLLING_OPTIONS = {"polling_timeout", "handle_as_tasks", "backoff_config", "handle_signals",
                   "tasks_concurrency_limit"}


def _data(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in POLLING_OPTIONS}


def run_polling(dp: Dispatcher, bot: Bot, *, allowed_updates: Any = _UNSET, service: str | None = None,
                close_bot_session: bool = True, **kwargs: Any) -> None:
    """``dp.run_polling(bot)`` under the kit: one poller at a time, handoff on SIGTERM.

    ``polling_timeout``, ``handle_as_tasks``, ``backoff_config``,
    ``handle_signals`` and ``tasks_concurrency_limit`` are accepted and not used;
    other keyword arguments reach the handlers, as aiogram's do. Exits the
    process with the runtime's exit code.
    """
    sys.exit(runtime.run(lambda: AiogramAdapter(dp, bot, allowed_updates, close_bot_session, _data(kwargs)),
                         "polling", service))


async def start_polling(dp: Dispatcher, bot: Bot, *, allowed_updates: Any = _UNSET,
                        service: str | None = None, close_bot_session: bool = True, **kwargs: Any) -> None:
    """``await dp.start_polling(bot)`` under the kit, in the running event loop (as
    :func:`run_polling`; a failure raises ``SystemExit`` with the exit code)."""
    runtime.exit_on_failure(await runtime.serve(
        lambda: AiogramAdapter(dp, bot, allowed_updates, close_bot_session, _data(kwargs)),
        "polling", service))


def run_webhook(dp: Dispatcher, bot: Bot, *, host: str = "0.0.0.0", port: int = 8080, path: str = "/webhook",
                webhook_url: str | None = None, secret_token: str | None = None,
                allowed_updates: Any = _UNSET, service: str | None = None,
                close_bot_session: bool = True, **kwargs: Any) -> None:
    """The aiohttp webhook app of aiogram's docs, under the kit: ``POST <path>``
    (answered 200 once the handlers are done and committed; a request without
    ``secret_token`` in ``X-Telegram-Bot-Api-Secret-Token`` gets 401),
    ``GET /ready``, ``GET /health``; ``webhook_url`` is registered at start when
    given (or register it in a ``dp.startup`` handler, as aiogram's docs do).
    Other keyword arguments reach the handlers."""
    sys.exit(runtime.run(lambda: AiogramAdapter(dp, bot, allowed_updates, close_bot_session, kwargs),
                         "webhook", service, port, webhook_path=path, webhook_url=webhook_url,
                         secret_token=secret_token, listen=host))
