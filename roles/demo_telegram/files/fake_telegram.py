# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in for the Telegram Bot API, for tests and benchmarks.

Standard library only, single file: the deploy tool copies just this file
into a container and runs ``python fake_telegram.py --host 0.0.0.0 --port 8081``.
It can also be run as ``python -m fake_telegram`` from the directory holding it
(``roles/demo_telegram/files``).

Bot API (``/bot<token>/<method>``; parameters from the query string and/or a
JSON or form-urlencoded body, like the real API; method names are
case-insensitive):

* ``getMe``
* ``getUpdates`` (``offset``, ``limit``, ``timeout``): long poll that wakes up
  early when an update arrives.  Passing ``offset`` confirms (drops) every
  update with a smaller ``update_id``; a negative offset keeps only the last
  ``-offset`` updates.  While a webhook is set it fails with 409, like
  Telegram.  When a getUpdates arrives while another one for the same token
  is still in flight, the *older* request is terminated with
  ``409 Conflict: terminated by other getUpdates request; ...`` (exactly what
  Telegram does) and the event is counted in ``conflicts_409``.
* ``sendMessage`` (recorded, returns a Message)
* ``setWebhook`` / ``deleteWebhook`` / ``getWebhookInfo``.  While a webhook is
  set, queued updates are POSTed to it (one at a time, in order, with the
  ``X-Telegram-Bot-Api-Secret-Token`` header when a secret was given); an
  update is dropped once the endpoint answers 2xx, otherwise retried.

Control API (JSON), for tests and benchmarks:

* ``POST /_control/<token>/updates``: body ``{"text": "...", "chat_id": 1}``
  or a list of those (``{"update": {...}}`` queues a raw update body); a
  text that starts with ``/`` gets its ``bot_command`` entity, as Telegram
  gives it.
  Returns ``{"ok": true, "update_ids": [...]}``.
* ``GET /_control/<token>/sent``: messages recorded by sendMessage.
* ``GET /_control/<token>/stats``: counters (see ``TokenState.stats``).
* ``POST /_control/<token>/fail``: ``{"mode": "500"|"409"|"hang"|"none",
  "methods": ["getUpdates"], "count": N, "seconds": S}`` makes the listed
  methods fail (for deaf-bot tests); ``count`` limits it to the next N calls,
  ``hang`` sleeps ``seconds`` (default 30) then answers 500.
* ``POST /_control/<token>/reset``, ``POST /_control/reset`` (everything),
  ``GET /_control/health``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import logging
import re
import select
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("fake_telegram")

CONFLICT_POLLING = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
MAX_BODY = 10 * 1024 * 1024
MAX_POLL_TIMEOUT = 50  # Telegram caps long polls at 50 s


class ApiError(Exception):
    """An error answer of the Bot API: ``{"ok": false, "error_code": ...}``."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class _Poll:
    """One in-flight getUpdates request; ``alive()`` says whether its client
    still waits for the answer (it did not close the connection)."""

    __slots__ = ("terminated", "alive")

    def __init__(self, alive: Callable[[], bool] | None = None) -> None:
        self.terminated = False
        self.alive = alive or (lambda: True)


class _Abandoned(Exception):
    """The client of a long poll closed its connection: nobody to answer."""


def client_connected(sock: Any) -> bool:
    """Whether the peer of a server socket has not closed it (EOF pending)."""
    try:
        readable = select.select([sock], [], [], 0)[0]
        if not readable:
            return True
        return sock.recv(1, socket.MSG_PEEK) != b""
    except (OSError, ValueError):
        return False


class TokenState:
    """Everything the fake knows about one bot token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []  # queued, not yet confirmed
        self.next_update_id = 1
        self.sent: list[dict[str, Any]] = []
        self.next_message_id = 1
        self.webhook: dict[str, Any] | None = None
        self.active_poll: _Poll | None = None
        self.fail: dict[str, Any] | None = None
        self.webhook_thread: threading.Thread | None = None
        self.last_webhook_error: str | None = None  # the current one (None after a success)
        # what getWebhookInfo says: like Telegram, the last error stays until another one
        self.last_error: tuple[int, str] | None = None
        self.detached = False  # set by reset(): waiters return at once
        self.counters = {
            "queued_total": 0,
            "delivered": 0,  # update objects handed out (redeliveries included)
            "confirmed": 0,  # updates dropped by an offset or a webhook 2xx
            "conflicts_409": 0,  # getUpdates overlap (a waiting poll terminated)
            "abandoned_polls": 0,  # a long poll whose client went away (no 409 seen)
            "webhook_conflicts_409": 0,  # getUpdates while a webhook was set
            "get_updates_calls": 0,
            "send_message_calls": 0,
            "injected_failures": 0,
            "webhook_deliveries": 0,
            "webhook_failures": 0,
            "webhook_registrations": 0,  # setWebhook calls with a URL
            "offsets_ignored": 0,  # getUpdates with an offset "in the future"
        }

    def stats(self) -> dict[str, Any]:
        return {
            "queued": len(self.updates),
            "pending_ids": [u["update_id"] for u in self.updates],
            "sent": len(self.sent),
            "polling_in_flight": self.active_poll is not None,
            "webhook_url": self.webhook["url"] if self.webhook else "",
            "webhook_secret_set": bool(self.webhook and self.webhook["secret_token"]),
            "webhook_allowed_updates": (self.webhook or {}).get("allowed_updates"),
            "last_webhook_error": self.last_webhook_error,
            "fail_mode": (self.fail or {}).get("mode", "none"),
            **self.counters,
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Bursts of bots' calls wait in the kernel's queue, as on Telegram's
    # servers, instead of being dropped (socketserver's default queue is 5).
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A bot that cancels its long poll (on SIGTERM) closes the connection:
        # that is no error of the server's (socketserver would print a traceback).
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class FakeTelegram:
    """State plus HTTP server.  ``start()`` runs it in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, ca_file: str | None = None) -> None:
        # CAs trusted for HTTPS webhooks besides the system's (a private ACME CA)
        self.ca_file = ca_file
        self._cond = threading.Condition()
        self._tokens: dict[str, TokenState] = {}
        self._closing = False
        self.httpd = _Server((host, port), _make_handler(self))
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    def start(self) -> FakeTelegram:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="fake-telegram", daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()  # wake long polls and webhook senders
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- helpers -----------------------------------------------------------
    def _state(self, token: str) -> TokenState:
        # caller holds self._cond
        st = self._tokens.get(token)
        if st is None:
            st = self._tokens[token] = TokenState(token)
        return st

    def _maybe_fail(self, st: TokenState, method: str) -> None:
        """Apply an injected failure (caller holds the lock; may release it)."""
        fail = st.fail
        if not fail:
            return
        methods = [m.lower() for m in fail.get("methods") or ["getUpdates"]]
        if method.lower() not in methods:
            return
        if fail.get("count") is not None:
            if fail["count"] <= 0:
                st.fail = None
                return
            fail["count"] -= 1
        st.counters["injected_failures"] += 1
        mode = str(fail.get("mode"))
        if mode == "409":
            raise ApiError(409, CONFLICT_POLLING)
        if mode == "hang":
            self._cond.wait_for(lambda: self._closing, float(fail.get("seconds", 30)))
            raise ApiError(500, "Internal Server Error")
        if mode == "500":
            raise ApiError(500, "Internal Server Error")
        if mode == "502":
            raise ApiError(502, "Bad Gateway")
        raise ApiError(500, f"Internal Server Error (fail mode {mode})")

    # -- Bot API -----------------------------------------------------------
    def call(self, token: str, method: str, params: dict[str, Any],
             alive: Callable[[], bool] | None = None) -> Any:
        name = method.lower()
        handler = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
        }.get(name)
        if handler is None:
            raise ApiError(404, "Not Found")
        with self._cond:
            st = self._state(token)
            self._maybe_fail(st, method)
            if handler == self._get_updates:
                return handler(st, params, alive)
            return handler(st, params)

    def _get_me(self, st: TokenState, params: dict[str, Any]) -> Any:
        bot_id = zlib.crc32(st.token.encode()) or 1
        return {
            "id": bot_id,
            "is_bot": True,
            "first_name": "Fake Bot",
            "username": f"fake_{bot_id}_bot",
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _get_updates(self, st: TokenState, params: dict[str, Any],
                     alive: Callable[[], bool] | None = None) -> Any:
        offset = _int_param(params, "offset", 0)
        limit = max(1, min(100, _int_param(params, "limit", 100)))
        timeout = max(0, min(MAX_POLL_TIMEOUT, _int_param(params, "timeout", 0)))
        if st.webhook is not None:
            st.counters["webhook_conflicts_409"] += 1
            raise ApiError(409, CONFLICT_WEBHOOK)
        st.counters["get_updates_calls"] += 1
        if st.active_poll is not None:
            # Another getUpdates is still waiting: Telegram terminates it
            # (a 409 for its client, if that one still waits for it).
            st.active_poll.terminated = True
            if st.active_poll.alive():
                st.counters["conflicts_409"] += 1
            else:
                st.counters["abandoned_polls"] += 1
            self._cond.notify_all()
        poll = _Poll(alive)
        st.active_poll = poll
        try:
            self._confirm(st, offset)
            deadline = time.monotonic() + timeout
            while True:
                if poll.terminated:
                    raise ApiError(409, CONFLICT_POLLING)
                if st.webhook is not None:  # webhook set while we waited
                    raise ApiError(409, CONFLICT_WEBHOOK)
                batch = st.updates[:limit]
                remaining = deadline - time.monotonic()
                if batch or remaining <= 0 or self._closing or st.detached:
                    break
                # with a client to watch, look every half second whether it
                # went away (a bot killed or cancelled mid long poll)
                self._cond.wait(remaining if alive is None else min(remaining, 0.5))
                if alive is not None and not poll.terminated and not alive():
                    st.counters["abandoned_polls"] += 1
                    raise _Abandoned()
            st.counters["delivered"] += len(batch)
            return [dict(u) for u in batch]
        finally:
            if st.active_poll is poll:
                st.active_poll = None

    @staticmethod
    def _confirm(st: TokenState, offset: int) -> None:
        if offset > st.next_update_id:
            # an offset past every update ever queued is ignored, as the Bot API
            # does (its update ids restarted, another server): nothing confirmed
            st.counters["offsets_ignored"] += 1
            return
        if offset > 0:
            keep = [u for u in st.updates if u["update_id"] >= offset]
        elif offset < 0:
            keep = st.updates[offset:]
        else:
            return
        st.counters["confirmed"] += len(st.updates) - len(keep)
        st.updates = keep

    def _send_message(self, st: TokenState, params: dict[str, Any]) -> Any:
        st.counters["send_message_calls"] += 1
        chat_id = params.get("chat_id")
        text = params.get("text")
        if chat_id in (None, ""):
            raise ApiError(400, "Bad Request: chat_id is empty")
        if text is None or str(text) == "":
            raise ApiError(400, "Bad Request: message text is empty")
        try:
            chat_id = int(chat_id)
        except (TypeError, ValueError):
            pass  # "@channelusername" is allowed too
        message = {
            "message_id": st.next_message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": self._get_me(st, {}),
            "text": str(text),
        }
        st.next_message_id += 1
        record = {
            "message_id": message["message_id"],
            "chat_id": chat_id,
            "text": str(text),
            "params": params,
            "at": time.time(),
        }
        st.sent.append(record)
        return message

    def _set_webhook(self, st: TokenState, params: dict[str, Any]) -> Any:
        url = str(params.get("url") or "")
        if _bool_param(params, "drop_pending_updates"):
            st.counters["confirmed"] += len(st.updates)
            st.updates = []
        if not url:
            st.webhook = None
            self._cond.notify_all()
            return True
        if not url.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: bad webhook: invalid URL")
        secret = str(params.get("secret_token") or "")
        if secret and not _SECRET_TOKEN.match(secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if isinstance(allowed, str):
            try:
                allowed = json.loads(allowed) if allowed else None
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse allowed updates") from None
        certificate = params.get("certificate")
        previous = st.webhook or {}
        st.webhook = {
            "url": url, "secret_token": secret,
            # like Telegram: not given keeps what was registered before
            "allowed_updates": list(allowed) if allowed is not None else previous.get("allowed_updates"),
            "max_connections": _int_param(params, "max_connections", 40),
            "certificate": certificate.data if isinstance(certificate, _Upload) else None,
        }
        st.counters["webhook_registrations"] += 1
        if st.active_poll is not None:
            self._cond.notify_all()  # in-flight getUpdates fails with 409
        if st.webhook_thread is None or not st.webhook_thread.is_alive():
            st.webhook_thread = threading.Thread(
                target=self._webhook_sender, args=(st,), daemon=True,
                name=f"webhook-{st.token[:8]}",
            )
            st.webhook_thread.start()
        self._cond.notify_all()
        return True

    def _delete_webhook(self, st: TokenState, params: dict[str, Any]) -> Any:
        if _bool_param(params, "drop_pending_updates"):
            st.counters["confirmed"] += len(st.updates)
            st.updates = []
        st.webhook = None
        self._cond.notify_all()
        return True

    def _get_webhook_info(self, st: TokenState, params: dict[str, Any]) -> Any:
        hook = st.webhook or {}
        info: dict[str, Any] = {
            "url": hook.get("url", ""),
            "has_custom_certificate": bool(hook.get("certificate")),
            "pending_update_count": len(st.updates),
        }
        if hook:
            info["max_connections"] = hook["max_connections"]
            if hook.get("allowed_updates") is not None:
                info["allowed_updates"] = hook["allowed_updates"]
        if hook and st.last_error:
            info["last_error_date"], info["last_error_message"] = st.last_error
        return info

    def _tls_context(self, hook: dict[str, Any]) -> ssl.SSLContext | None:
        """As Telegram checks an HTTPS webhook: against the certificate
        uploaded with setWebhook (a self-signed one) when there is one, else
        against the trusted CAs; the name must match either way."""
        if not hook["url"].startswith("https://"):
            return None
        if hook.get("certificate"):
            ctx = ssl.create_default_context(cadata=hook["certificate"].decode("ascii", "replace"))
        else:
            ctx = ssl.create_default_context()
            if self.ca_file:
                ctx.load_verify_locations(cafile=self.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _webhook_sender(self, st: TokenState) -> None:
        """Push queued updates to the webhook URL, one at a time, in order."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._closing or st.webhook is None or bool(st.updates)
                )
                if self._closing or st.webhook is None:
                    return
                update = dict(st.updates[0])
                hook = dict(st.webhook)
            ok = False
            try:
                req = urllib.request.Request(
                    hook["url"], data=json.dumps(update).encode(), method="POST",
                    headers={"Content-Type": "application/json"},
                )
                if hook["secret_token"]:
                    req.add_header("X-Telegram-Bot-Api-Secret-Token", hook["secret_token"])
                with urllib.request.urlopen(req, timeout=10, context=self._tls_context(hook)) as resp:
                    ok = 200 <= resp.status < 300
                error = None if ok else f"Wrong response from the webhook: {resp.status}"
            except urllib.error.HTTPError as exc:
                error = f"Wrong response from the webhook: {exc.code} {exc.reason}"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, ssl.SSLError):  # as Telegram words it
                    error = f"SSL error {{{exc.reason}}}"
                else:
                    error = f"Connection failed: {exc.reason}"
            except (OSError, ValueError) as exc:
                error = f"Connection failed: {exc}"
            with self._cond:
                if ok:
                    st.counters["webhook_deliveries"] += 1
                    st.counters["delivered"] += 1
                    # drop it, unless someone already confirmed/reset meanwhile
                    if st.updates and st.updates[0]["update_id"] == update["update_id"]:
                        st.updates.pop(0)
                        st.counters["confirmed"] += 1
                    st.last_webhook_error = None
                else:
                    st.counters["webhook_failures"] += 1
                    st.last_webhook_error = error
                    st.last_error = (int(time.time()), error or "")
                    self._cond.wait_for(lambda: self._closing, 0.5)  # retry back-off

    # -- control API -----------------------------------------------------------
    def queue_updates(self, token: str, items: list[dict[str, Any]]) -> list[int]:
        ids = []
        with self._cond:
            st = self._state(token)
            for item in items:
                update_id = st.next_update_id
                st.next_update_id += 1
                if "update" in item:
                    update = dict(item["update"])
                else:
                    chat_id = int(item.get("chat_id", 1))
                    user_id = int(item.get("from_id", chat_id))
                    update = {
                        "message": {
                            "message_id": update_id,
                            "date": int(time.time()),
                            "chat": {"id": chat_id, "type": "private"},
                            "from": {
                                "id": user_id,
                                "is_bot": False,
                                "first_name": str(item.get("first_name", "Tester")),
                                "username": str(item.get("username", f"user{user_id}")),
                            },
                            "text": str(item.get("text", "")),
                        }
                    }
                    command = _command_entity(update["message"]["text"])
                    if command:
                        update["message"]["entities"] = [command]
                update["update_id"] = update_id
                st.updates.append(update)
                st.counters["queued_total"] += 1
                ids.append(update_id)
            self._cond.notify_all()  # wake long polls / webhook sender
        return ids

    def sent(self, token: str) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(m) for m in self._state(token).sent]

    def stats(self, token: str) -> dict[str, Any]:
        with self._cond:
            return self._state(token).stats()

    def set_fail(self, token: str, spec: dict[str, Any]) -> dict[str, Any]:
        mode = str(spec.get("mode", "none"))
        if mode not in ("none", "500", "502", "409", "hang"):
            raise ApiError(400, f"unknown fail mode {mode!r}")
        with self._cond:
            st = self._state(token)
            st.fail = None if mode == "none" else dict(spec, mode=mode)
            self._cond.notify_all()
            return st.stats()

    def reset(self, token: str | None = None) -> None:
        with self._cond:
            victims = list(self._tokens.values()) if token is None else (
                [self._tokens[token]] if token in self._tokens else [])
            for st in victims:
                st.webhook = None  # stops its sender thread
                st.detached = True  # in-flight long polls return (empty) at once
                st.updates = []
                del self._tokens[st.token]
            self._cond.notify_all()


_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class _Upload(dict):
    """A file of a multipart body: ``{"filename", "size"}`` as JSON, its bytes in ``data``."""

    data: bytes = b""


def _command_entity(text: str) -> dict[str, Any] | None:
    """The ``bot_command`` entity Telegram adds to a text that starts with one (``/start``)."""
    if not text.startswith("/") or len(text) < 2:
        return None
    length = len(text.split(maxsplit=1)[0])
    return {"type": "bot_command", "offset": 0, "length": length}


def _multipart_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """The fields of a multipart/form-data body (how aiogram sends a method with a
    file, and python-telegram-bot any upload): a text field as its string, a file
    as ``{"filename", "size"}``."""
    message = email.message_from_bytes(
        f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode() + body,
        policy=email.policy.HTTP)
    if not message.is_multipart():
        raise ApiError(400, "Bad Request: can't parse multipart/form-data")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = payload.decode(part.get_content_charset() or "utf-8", errors="replace")
        else:
            fields[name] = _Upload(filename=filename, size=len(payload))
            fields[name].data = payload
    return fields


def _int_param(params: dict[str, Any], name: str, default: int) -> int:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid {name}") from None


def _bool_param(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _make_handler(app: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-telegram/1.0"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

        def _send_json(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (e.g. it was killed mid long poll)

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise ApiError(413, "Request Entity Too Large")
            return self.rfile.read(length) if length else b""

        def _params(self, query: str, body: bytes) -> dict[str, Any]:
            params: dict[str, Any] = {
                k: v[-1] for k, v in urllib.parse.parse_qs(query).items()
            }
            if body:
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype == "application/json":
                    try:
                        data = json.loads(body)
                    except ValueError:
                        raise ApiError(400, "Bad Request: can't parse JSON") from None
                    if not isinstance(data, dict):
                        raise ApiError(400, "Bad Request: JSON object expected")
                    params.update(data)
                elif ctype == "multipart/form-data":
                    params.update(_multipart_fields(self.headers.get("Content-Type") or "", body))
                else:
                    params.update(
                        {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()}
                    )
            return params

        def _dispatch(self) -> None:
            parsed = urllib.parse.urlsplit(self.path)
            parts = [p for p in parsed.path.split("/") if p]
            try:
                body = self._read_body()
                if parts and parts[0] == "_control":
                    self._control(parts[1:], body)
                    return
                if len(parts) == 2 and parts[0].startswith("bot") and len(parts[0]) > 3:
                    params = self._params(parsed.query, body)
                    try:
                        result = app.call(parts[0][3:], parts[1], params,
                                          alive=lambda: client_connected(self.connection))
                    except _Abandoned:
                        self.close_connection = True
                        return
                    self._send_json(200, {"ok": True, "result": result})
                    return
                raise ApiError(404, "Not Found")
            except ApiError as exc:
                if exc.code == 413:
                    self.close_connection = True  # the body was not read
                self._send_json(
                    exc.code,
                    {"ok": False, "error_code": exc.code, "description": exc.description},
                )

        def _control(self, parts: list[str], body: bytes) -> None:
            try:
                data: Any = json.loads(body) if body else None
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON") from None
            if parts == ["health"] and self.command == "GET":
                self._send_json(200, {"ok": True})
            elif parts == ["reset"] and self.command == "POST":
                app.reset()
                self._send_json(200, {"ok": True})
            elif len(parts) == 2:
                token, what = parts
                if what == "updates" and self.command == "POST":
                    items = data if isinstance(data, list) else [data or {}]
                    ids = app.queue_updates(token, items)
                    self._send_json(200, {"ok": True, "update_ids": ids})
                elif what == "sent" and self.command == "GET":
                    self._send_json(200, {"ok": True, "result": app.sent(token)})
                elif what == "stats" and self.command == "GET":
                    self._send_json(200, {"ok": True, "result": app.stats(token)})
                elif what == "fail" and self.command == "POST":
                    self._send_json(200, {"ok": True, "result": app.set_fail(token, data or {})})
                elif what == "reset" and self.command == "POST":
                    app.reset(token)
                    self._send_json(200, {"ok": True})
                else:
                    raise ApiError(404, "Not Found")
            else:
                raise ApiError(404, "Not Found")

        def do_GET(self) -> None:  # noqa: N802
            self._dispatch()

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch()

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API server")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--ca-file", help="PEM CAs trusted for HTTPS webhooks besides the system's")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stdout,
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    server = FakeTelegram(args.host, args.port, ca_file=args.ca_file)

    def _stop(signum: int, frame: Any) -> None:
        log.info("signal %s received, shutting down", signum)
        # shutdown() blocks until serve_forever returns: call it from a thread
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("fake Telegram Bot API listening on %s:%s", args.host, server.port)
    server.serve_forever()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
