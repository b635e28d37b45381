"""Minimal Telegram Bot API client (standard library only).

Requests go to ``{base}/bot{token}/{method}`` as JSON POSTs.  The token is
part of the URL, so URLs are never logged or put into exception messages.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

USER_AGENT = "field-service-bot"


class TelegramError(Exception):
    """The Bot API answered ``ok: false`` (or an HTTP error status)."""

    def __init__(self, method: str, error_code: int, description: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {error_code} {description}")
        self.method = method
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """A 4xx other than 409/429: retrying the same request will not help."""
        return 400 <= self.error_code < 500 and self.error_code not in (409, 429)


class TelegramConflict(TelegramError):
    """HTTP 409: another getUpdates is running for this token, or a webhook is set."""


class TelegramNetworkError(Exception):
    """The API could not be reached (connection refused, timeout, bad reply)."""


class BotAPI:
    def __init__(self, token: str, base: str = "https://api.telegram.org",
                 timeout: float = 10.0) -> None:
        self._url = f"{base.rstrip('/')}/bot{token}/"
        self.timeout = timeout

    def call(self, method: str, params: dict[str, Any] | None = None,
             timeout: float | None = None) -> Any:
        """Call a Bot API method and return its ``result``."""
        data = json.dumps(params or {}).encode()
        req = urllib.request.Request(
            self._url + method, data=data, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        http_status = 0
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            # raised outside this block so the HTTPError (which knows the URL,
            # hence the token) is not chained into tracebacks
            http_status = exc.code
            try:
                body = exc.read()
            except OSError:
                body = b""
        except (OSError, ValueError) as exc:  # URLError, timeouts, resets
            reason = getattr(exc, "reason", exc)
            raise TelegramNetworkError(f"{method}: {type(exc).__name__}: {reason}") from None
        if http_status:
            self._raise_for(method, http_status, body)
        try:
            payload = json.loads(body)
        except ValueError:
            raise TelegramNetworkError(f"{method}: invalid JSON in reply") from None
        if not payload.get("ok"):
            self._raise_for(method, int(payload.get("error_code") or 500), body)
        return payload.get("result")

    @staticmethod
    def _raise_for(method: str, status: int, body: bytes) -> None:
        description, retry_after = "", None
        try:
            payload = json.loads(body)
            description = str(payload.get("description", ""))
            status = int(payload.get("error_code") or status)
            retry_after = (payload.get("parameters") or {}).get("retry_after")
        except (ValueError, AttributeError):
            description = body[:200].decode("utf-8", "replace")
        cls = TelegramConflict if status == 409 else TelegramError
        raise cls(method, status, description, retry_after)

    # -- the methods the bots use -------------------------------------------------
    def get_updates(self, offset: int, timeout: int, limit: int = 100) -> list[dict[str, Any]]:
        params = {"offset": offset, "timeout": timeout, "limit": limit,
                  "allowed_updates": ["message"]}
        # the socket timeout must outlast the server-side long poll
        result = self.call("getUpdates", params, timeout=timeout + 10)
        return list(result or [])

    def send_message(self, chat_id: int, text: str) -> dict[str, Any]:
        return self.call("sendMessage", {"chat_id": chat_id, "text": text})

    def get_me(self) -> dict[str, Any]:
        return self.call("getMe")
