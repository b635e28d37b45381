"""A small HTTP/1.1 server on asyncio: the readiness and health endpoints of every
bot and the webhook of a webhook bot, with keep-alive (the deploy's nginx keeps
upstream connections) and a graceful close: stop accepting, let the requests in
flight finish, close the idle connections.

Only what Telegram and the deploy send is understood: a request line, headers and
a body of ``Content-Length`` bytes (no chunked bodies: 411).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("fieldservice_botkit.http")

MAX_BODY = 1024 * 1024
MAX_HEADERS = 100
IDLE_TIMEOUT = 30.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
           500: "Internal Server Error", 503: "Service Unavailable"}

# (method, path, headers with lower-case names, body) -> (status, JSON payload)
Handler = Callable[[str, str, dict[str, str], bytes], Awaitable[tuple[int, Any]]]


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class HttpServer:
    def __init__(self, handler: Handler, host: str, port: int) -> None:
        self.handler = handler
        self.host, self.port = host, port
        self._server: asyncio.base_events.Server | None = None
        self._idle: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.Task] = set()
        self._busy = 0
        self._closing = False
        self._done = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port, backlog=1024)

    @property
    def listening(self) -> bool:
        return self._server is not None and not self._closing

    async def close(self, timeout: float) -> bool:
        """Stop accepting; wait (at most ``timeout``) for the requests in flight. True: all ended;
        False: the ones still running were cancelled, their connections closed unanswered."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for writer in list(self._idle):
            writer.close()
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline:
            self._done.clear()
            try:
                await asyncio.wait_for(self._done.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
        if self._busy == 0:
            return True
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        return False

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while not self._closing:
                self._idle.add(writer)
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                finally:
                    self._idle.discard(writer)
                if not line or self._closing and not line.strip():
                    break
                self._busy += 1
                try:
                    keep = await self._one(line, reader, writer)
                finally:
                    self._busy -= 1
                    self._done.set()
                if not keep:
                    break
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()
            self._clients.discard(task)

    async def _one(self, line: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        except ValueError:
            await self._send(writer, 400, {"error": "bad request line"}, False)
            return False
        headers: dict[str, str] = {}
        for _count in range(MAX_HEADERS + 1):
            raw = await reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _sep, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            await self._send(writer, 400, {"error": "too many headers"}, False)
            return False
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close" or \
            headers.get("connection", "").lower() == "keep-alive"
        try:
            body = await self._body(reader, headers)
        except _BadRequest as exc:
            await self._send(writer, exc.status, {"error": str(exc)}, False)
            return False
        path = target.split("?", 1)[0]
        try:
            status, payload = await self.handler(method, path, headers, body)
        except Exception:
            log.exception("error while handling %s %s", method, path)
            status, payload = 500, {"error": "internal error"}
        keep = keep and not self._closing
        await self._send(writer, status, payload, keep)
        return keep

    @staticmethod
    async def _body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest(411, "chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if length < 0:
            raise _BadRequest(400, "bad Content-Length")
        if length > MAX_BODY:
            raise _BadRequest(413, "request body too large")
        return await reader.readexactly(length) if length else b""

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, status: int, payload: Any, keep: bool) -> None:
        body = json.dumps(payload).encode()
        head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n")
        writer.write(head.encode("latin-1") + body)
        await writer.drain()
