"""Processing of one Telegram update (shared by polling and webhook mode)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg

from field_service import db
from field_service.config import Config
from field_service.telegram import BotAPI, TelegramError

log = logging.getLogger("field_service.updates")

# (config, incoming text) -> reply text
ReplyFn = Callable[[Config, str], str]


def default_reply(cfg: Config, text: str) -> str:
    return f"{cfg.service_name} {cfg.version}: got {text}"


class InvalidUpdate(ValueError):
    """The payload is not a Telegram Update object."""


def parse_update(payload: Any) -> tuple[int, int | None, str | None]:
    """Return (update_id, chat_id, text); chat_id/text are None for non-messages."""
    if not isinstance(payload, dict):
        raise InvalidUpdate("an Update must be a JSON object")
    update_id = payload.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise InvalidUpdate("update_id (integer) is missing")
    msg = payload.get("message") or payload.get("edited_message") or {}
    chat = msg.get("chat") if isinstance(msg, dict) else None
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    text = msg.get("text") if isinstance(msg, dict) else None
    if not isinstance(chat_id, int):
        chat_id = None
    if not isinstance(text, str):
        text = None
    return update_id, chat_id, text


def handle_update(conn: psycopg.Connection, api: BotAPI, cfg: Config, reply: ReplyFn,
                  payload: Any) -> bool:
    """Record the update and answer it, inside the caller's transaction.

    Returns False when the update had already been processed (nothing done).
    A transient Telegram failure raises, so the caller rolls back and the
    update is retried; a permanent one (e.g. 403 bot blocked) is logged and
    the update still counts as processed.
    """
    update_id, chat_id, text = parse_update(payload)
    if not db.record_update(conn, cfg.service_name, update_id, chat_id, text, cfg.app_release):
        log.info("update %d already processed; skipped", update_id)
        return False
    if chat_id is not None and text is not None:
        try:
            api.send_message(chat_id, reply(cfg, text))
        except TelegramError as exc:
            if not exc.permanent:
                raise
            log.warning("update %d: sendMessage rejected, not retrying: %s", update_id, exc)
    log.info("processed update %d", update_id)
    return True
