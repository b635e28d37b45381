"""The runtime every bot of the kit runs in, whatever its library.

One process, one asyncio loop:

* the HTTP server on the container port: ``GET /ready`` (200 when the database
  answers and the bot takes work, also in standby), ``GET /health`` (alive),
  and for a webhook bot ``POST <path>``;
* the monitor: ``SELECT 1`` every second (for ``/ready``) and the heartbeat row
  every ``BOTKIT_HEARTBEAT_INTERVAL`` seconds, only while the bot does its job
  (a poller: holding the lock, its last ``getUpdates`` recent; a webhook bot:
  its server listening);
* a poller's loop: the advisory lock of its bot (standby until it gets it), the
  lock checked before every ``getUpdates``, each update processed in one
  transaction on the lock's connection that also commits the next offset;
* SIGTERM / SIGINT: no new work, the update in hand finished and committed, the
  lock released, the library's shutdown run, exit 0.

A library is plugged in through an :class:`Adapter` (``ptb.py``, ``aiogram.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import json
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from fieldservice_botkit import store
from fieldservice_botkit.http import HttpServer

log = logging.getLogger("fieldservice_botkit")

LOCK_RETRY = 0.2
READY_MAX_AGE = 3.0
MAX_BACKOFF = 3.0
PRUNE_EVERY = 3600.0


class ConfigError(Exception):
    """A setting is missing or wrong; the message names it."""


class Conflict(Exception):
    """Telegram answered 409 to getUpdates (another poller, or a webhook is set)."""


class LockLost(Exception):
    """The lock's connection is gone: this process no longer holds the lock."""


@dataclass
class _Update:
    conn: psycopg.AsyncConnection
    update_id: int
    active: bool = True
    error: BaseException | None = None


_current: contextvars.ContextVar[_Update | None] = contextvars.ContextVar("botkit_update", default=None)


def connection() -> psycopg.AsyncConnection:
    """The database connection of the update in hand, inside its transaction.

    What a handler writes with it is committed together with the update's
    offset (polling) or its record of being processed (webhook): all of it or
    none. Outside a handler (or in a handler that runs after its update, such as
    python-telegram-bot's ``block=False``) it raises ``RuntimeError``.
    """
    cur = _current.get()
    if cur is None or not cur.active:
        raise RuntimeError("fieldservice_botkit.connection() is only available inside a handler of an "
                           "update the kit is processing (not in a block=False handler or a job)")
    return cur.conn


def mark_failed(error: BaseException) -> None:
    """Called by an adapter when the library reports a handler's exception itself."""
    cur = _current.get()
    if cur is not None and cur.active and cur.error is None:
        cur.error = error


def _env_float(name: str, default: float, low: float) -> float:
    raw = os.environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < low:
        raise ConfigError(f"{name}={raw!r} must be at least {low:g}")
    return value


@dataclass
class Settings:
    """What the kit reads from the environment the deploy gives the container."""

    database_url: str
    service: str
    release: str = ""
    port: int = 8080
    poll_timeout: float = 10.0
    heartbeat_interval: float = 5.0
    shutdown_timeout: float = 8.0
    heartbeat_table: str = "heartbeats"
    db_pool: int = 4
    # the heartbeat row: the service, or <service>@<host> on one of several
    # app servers (the deploy sets HEARTBEAT_KEY)
    heartbeat_key: str = ""

    def __post_init__(self) -> None:
        self.heartbeat_key = self.heartbeat_key or self.service

    @classmethod
    def from_env(cls, service: str | None = None, port: int | None = None) -> Settings:
        url = os.environ.get("DATABASE_URL", "")
        if not url:
            raise ConfigError("DATABASE_URL is not set: the kit keeps its lock, offsets and heartbeat "
                              "in the app's PostgreSQL database")
        table = os.environ.get("BOTKIT_HEARTBEAT_TABLE", "heartbeats")
        if not store.valid_table(table):
            raise ConfigError(f"BOTKIT_HEARTBEAT_TABLE={table!r} is not a valid table name")
        name = os.environ.get("SERVICE_NAME") or service or "bot"
        return cls(
            database_url=url,
            service=name,
            release=os.environ.get("APP_RELEASE", ""),
            port=int(_env_float("BOTKIT_PORT", float(port or 8080), 1)),
            poll_timeout=_env_float("BOTKIT_POLL_TIMEOUT", 10.0, 1),
            heartbeat_interval=_env_float("BOTKIT_HEARTBEAT_INTERVAL", 5.0, 0.1),
            shutdown_timeout=_env_float("BOTKIT_SHUTDOWN_TIMEOUT", 8.0, 0.5),
            heartbeat_table=table,
            db_pool=int(_env_float("BOTKIT_DB_POOL", 4.0, 1)),
            heartbeat_key=os.environ.get("HEARTBEAT_KEY") or name,
        )


class Adapter:
    """What the runtime needs from a bot library."""

    bot_id: int
    library: str
    # whether the runtime logs a handler's traceback (python-telegram-bot's error
    # handlers already did)
    log_tracebacks: bool = True

    async def check(self) -> None:
        """Ask Telegram who the bot is (getMe): a wrong token fails here, before any standby."""

    async def start(self) -> None:
        """Start the library (its startup hooks, persistence, jobs)."""

    async def stop(self) -> None:
        """The library's own shutdown (hooks, persistence flushed, jobs stopped)."""

    async def close(self) -> None:
        """Close what :meth:`check` opened when the library never started."""

    def chat_of(self, update: Any) -> int | None:
        """The chat an update belongs to (webhook updates of one chat are processed in order)."""
        return None

    async def get_updates(self, offset: int, timeout: float, limit: int = 100) -> list[tuple[int, Any]]:
        raise NotImplementedError

    def parse(self, data: dict[str, Any]) -> tuple[int, Any]:
        raise NotImplementedError

    async def process(self, update: Any) -> None:
        """Run the app's handlers on one update; raises what a handler raised."""
        raise NotImplementedError

    async def delete_webhook(self) -> None: ...

    async def set_webhook(self, url: str, secret_token: str | None) -> None: ...


class Runtime:
    def __init__(self, adapter: Adapter, settings: Settings, mode: str, *, webhook_path: str = "/webhook",
                 webhook_url: str | None = None, secret_token: str | None = None,
                 listen: str = "0.0.0.0") -> None:
        self.adapter, self.cfg, self.mode = adapter, settings, mode
        self.webhook_path = "/" + webhook_path.strip("/")
        self.webhook_url, self.secret_token = webhook_url, secret_token
        self.listen = listen
        self.exit_code = 0
        self.stopping = asyncio.Event()
        self.checked = False  # getMe answered: the bot can take over
        self.started = False  # the library runs (a poller: only while it holds the lock)
        self.holding_lock = False
        self.last_poll_ok: float | None = None
        self.db_ok_at: float | None = None
        self.http = HttpServer(self._http, listen, settings.port)
        self.pool = store.Pool(settings.database_url, f"{settings.service}:webhook", settings.db_pool)
        self._monitor_conn: psycopg.AsyncConnection | None = None
        self._chats: dict[int | None, list] = {}  # chat -> [lock, users]

    # -- lifecycle -----------------------------------------------------------------------
    def request_stop(self, why: str, exit_code: int = 0) -> None:
        if self.stopping.is_set():
            return
        if exit_code:
            self.exit_code = exit_code
        log.info("%s: stopping (finishing the update in hand, at most %gs)", why, self.cfg.shutdown_timeout)
        self.stopping.set()

    async def run(self) -> int:
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, f"{signal.Signals(sig).name} received")
        log.info("starting %s (%s %s, release %s, pid %d)", cfg.service, self.adapter.library, self.mode,
                 cfg.release or "-", os.getpid())
        try:
            await self.http.start()
        except OSError as exc:
            log.critical("cannot listen on %s:%d: %s (BOTKIT_PORT)", self.listen, cfg.port, exc)
            return 1
        log.info("HTTP server on %s:%d: GET /ready, GET /health%s", self.listen, cfg.port,
                 f", POST {self.webhook_path}" if self.mode == "webhook" else "")
        monitor = asyncio.create_task(self._monitor(), name="botkit-monitor")
        try:
            if not await self._schema():
                return self.exit_code
            try:
                await self.adapter.check()
            except Exception:
                log.critical("the bot cannot reach Telegram (getMe failed; BOT_TOKEN, TELEGRAM_API_BASE)",
                             exc_info=True)
                self.exit_code = 1
                return 1
            self.checked = True
            if self.mode == "webhook":
                if not await self._start_library():
                    return 1
                if self.webhook_url:
                    await self.adapter.set_webhook(self.webhook_url, self.secret_token)
                    log.info("webhook registered: %s", self.webhook_url)
                await self.stopping.wait()
            else:
                await self._poll()
        except Exception:
            log.critical("unhandled exception in the bot's main loop", exc_info=True)
            self.exit_code = 1
        finally:
            await self._shutdown(monitor)
        return self.exit_code

    async def _schema(self) -> bool:
        """Create the kit's tables, retrying while the database does not answer."""
        warned = False
        while not self.stopping.is_set():
            try:
                conn = await store.connect(self.cfg.database_url, f"{self.cfg.service}:schema")
                try:
                    await store.ensure_schema(conn, self.cfg.heartbeat_table)
                finally:
                    await conn.close()
                return True
            except store.SchemaError as exc:
                log.critical("invalid configuration: %s", exc)
                self.exit_code = 2
                return False
            except psycopg.OperationalError as exc:
                if not warned:
                    log.warning("database unreachable (will keep retrying): %s", str(exc).strip())
                    warned = True
                await self._sleep(1.0)
        return False

    async def _start_library(self) -> bool:
        try:
            await self.adapter.start()
        except Exception:
            log.critical("the bot did not start (%s)", self.adapter.library, exc_info=True)
            self.exit_code = 1
            return False
        self.started = True
        return True

    async def _stop_library(self) -> None:
        if not self.started:
            return
        self.started = False
        try:
            await asyncio.wait_for(self.adapter.stop(), self.cfg.shutdown_timeout)
        except Exception:
            log.error("the library's shutdown failed", exc_info=True)

    async def _shutdown(self, monitor: asyncio.Task) -> None:
        self.stopping.set()
        if not await self.http.close(self.cfg.shutdown_timeout):
            # nothing of those requests committed and none was answered: Telegram delivers them again
            log.error("webhook requests still in flight after %gs: cancelled, not answered, nothing of them "
                      "committed", self.cfg.shutdown_timeout)
            self.exit_code = self.exit_code or 1
        await self._stop_library()
        try:
            await self.adapter.close()
        except Exception:  # noqa: BLE001 (closing a client session at exit)
            log.warning("closing the bot's session failed", exc_info=True)
        monitor.cancel()
        try:
            await monitor
        except asyncio.CancelledError:
            pass
        await self.pool.close()
        log.info("shutdown complete (exit code %d)", self.exit_code)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            pass

    # -- health ----------------------------------------------------------------------------
    def db_ok(self) -> bool:
        return self.db_ok_at is not None and time.monotonic() - self.db_ok_at <= READY_MAX_AGE

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        info: dict[str, Any] = {"service": self.cfg.service, "release": self.cfg.release, "mode": self.mode,
                                "library": self.adapter.library, "polling": self.holding_lock}
        if self.stopping.is_set():
            info["status"] = "shutting down"
        elif not self.db_ok():
            info["status"] = "database unreachable"
        elif not (self.started if self.mode == "webhook" else self.checked):
            info["status"] = "starting"
        else:
            info["status"] = "ready" if self.mode == "webhook" or self.holding_lock else "ready (standby)"
        return info["status"].startswith("ready"), info

    def should_beat(self) -> tuple[bool, str]:
        if self.stopping.is_set():
            return False, "shutting down"
        if not self.started:
            return False, "starting"
        if self.mode == "webhook":
            return (True, "") if self.http.listening else (False, "HTTP server down")
        if not self.holding_lock:
            return False, "not holding the poller lock"
        window = self.cfg.poll_timeout + 2 * self.cfg.heartbeat_interval
        if self.last_poll_ok is None or time.monotonic() - self.last_poll_ok > window:
            return False, f"no successful getUpdates in the last {window:g}s"
        return True, ""

    async def _monitor(self) -> None:
        cfg = self.cfg
        period = min(1.0, cfg.heartbeat_interval)
        next_beat = next_prune = 0.0
        beating = warned = failed = False
        while True:
            try:
                if not store.usable(self._monitor_conn):
                    self._monitor_conn = await store.connect(cfg.database_url, f"{cfg.service}:monitor")
                conn = self._monitor_conn
                await conn.execute("SELECT 1")
                self.db_ok_at = time.monotonic()
                if warned:
                    log.info("database reachable again")
                    warned = False
                now = time.monotonic()
                if now >= next_beat:
                    ok, why = self.should_beat()
                    if ok:
                        try:
                            await store.write_heartbeat(conn, cfg.heartbeat_table, cfg.heartbeat_key,
                                                        cfg.release, self.mode)
                            if not beating:
                                log.info("heartbeat started (release %s)", cfg.release or "-")
                            beating, failed = True, False
                            next_beat = now + cfg.heartbeat_interval
                        except psycopg.Error as exc:
                            if not failed:
                                log.error("heartbeat write failed (%s): %s", cfg.heartbeat_table,
                                          str(exc).strip())
                                failed = True
                    elif beating:
                        log.info("heartbeat paused: %s", why)
                        beating = False
                if self.mode == "webhook" and now >= next_prune:
                    await store.prune_webhook_updates(conn)
                    next_prune = now + PRUNE_EVERY
            except psycopg.Error as exc:
                if not warned:
                    log.warning("database unreachable (will keep retrying): %s", str(exc).strip())
                    warned = True
                if self._monitor_conn is not None:
                    await self._monitor_conn.close()
                    self._monitor_conn = None
            except asyncio.CancelledError:
                if self._monitor_conn is not None:
                    await self._monitor_conn.close()
                raise
            await asyncio.sleep(period)

    def _trace(self, error: BaseException | None) -> BaseException | None:
        return error if self.adapter.log_tracebacks and not isinstance(error, psycopg.Error) else None

    # -- handlers --------------------------------------------------------------------------
    async def _handle(self, conn: psycopg.AsyncConnection, update_id: int,
                      update: Any) -> BaseException | None:
        """Run the handlers with ``connection()`` = conn; the handler's exception, if any."""
        state = _Update(conn, update_id)
        token = _current.set(state)
        try:
            await self.adapter.process(update)
        except Exception as exc:  # the library's own polling logs and skips it too
            state.error = exc
        finally:
            state.active = False
            _current.reset(token)
        return state.error

    # -- polling -----------------------------------------------------------------------------
    async def _poll(self) -> None:
        """Standby until this process holds its bot's lock; then start the library and poll.

        The library starts only under the lock (its persistence is loaded after
        the old poller flushed it, its jobs never run twice) and stops before the
        lock is released. A lost lock ends the process (exit 1: Docker starts it
        again, in standby): another process may poll already.
        """
        conn = await self._acquire_lock()
        if conn is None:
            return
        try:
            if not await self._start_library():
                return
            try:  # a webhook left set makes every getUpdates a 409
                await self.adapter.delete_webhook()
            except Exception as exc:  # noqa: BLE001
                log.warning("deleteWebhook failed (will poll anyway): %s", exc)
            await self._poll_locked(conn)
        except LockLost as exc:
            log.error("lost the poller lock's connection (%s): stopped polling; exiting so that the "
                      "process starts again in standby", exc)
            self.exit_code = 1
        except _Abandoned:
            self.exit_code = 1
        finally:
            self.holding_lock = False
            await self._stop_library()  # persistence flushed, jobs stopped: then the next poller may start
            lost = not store.usable(conn)
            await conn.close()  # ends the session: releases the lock
            if not lost:
                log.info("released the poller lock")

    async def _acquire_lock(self) -> psycopg.AsyncConnection | None:
        cfg, bot = self.cfg, self.adapter.bot_id
        conn: psycopg.AsyncConnection | None = None
        waiting = warned = False
        while not self.stopping.is_set():
            try:
                if not store.usable(conn):
                    conn = await store.connect(cfg.database_url, f"{cfg.service}:poller")
                if await store.try_poller_lock(conn, bot):
                    self.holding_lock = True
                    log.info("acquired the poller lock of bot %d", bot)
                    return conn
            except psycopg.OperationalError as exc:
                if not warned:
                    log.warning("poller: database unreachable (will keep retrying): %s", str(exc).strip())
                    warned = True
                if conn is not None:
                    await conn.close()
                    conn = None
                await self._sleep(1.0)
                continue
            if not waiting:
                log.info("standby: waiting for the poller lock of bot %d", bot)
                waiting = True
            await self._sleep(LOCK_RETRY)
        if conn is not None:
            await conn.close()
        return None

    async def _poll_locked(self, conn: psycopg.AsyncConnection) -> None:
        bot = self.adapter.bot_id
        try:
            offset = await store.read_offset(conn, bot)
        except psycopg.Error as exc:
            raise LockLost(str(exc).strip()) from exc
        log.info("polling from offset %d", offset)
        self.last_poll_ok = None
        backoff = 0.0
        healthy = False
        stop_wait = asyncio.create_task(self.stopping.wait())
        try:
            while not self.stopping.is_set():
                try:  # never a getUpdates without the lock
                    await conn.execute("SELECT 1")
                except psycopg.Error as exc:
                    raise LockLost(str(exc).strip()) from exc
                # the first call is short, so that the heartbeat starts at once
                fetch = asyncio.create_task(self.adapter.get_updates(
                    offset, self.cfg.poll_timeout if healthy else 0))
                await asyncio.wait({fetch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():  # stopping: nothing fetched is in hand; Telegram keeps it
                    fetch.cancel()
                    try:
                        await fetch
                    except BaseException:  # noqa: BLE001 (cancelled or failed: either way not in hand)
                        pass
                    break
                try:
                    updates = fetch.result()
                except Conflict as exc:
                    healthy = False
                    log.error("409 Conflict from getUpdates: %s", exc)
                    backoff = min(MAX_BACKOFF, max(0.5, backoff * 2))
                    await self._sleep(backoff)
                    continue
                except Exception as exc:
                    healthy = False
                    log.error("getUpdates failed: %s: %s", type(exc).__name__, exc)
                    backoff = min(MAX_BACKOFF, max(0.5, backoff * 2))
                    await self._sleep(backoff)
                    continue
                self.last_poll_ok = time.monotonic()
                healthy, backoff = True, 0.0
                if updates and updates[0][0] < offset:
                    # an honoured offset never gives lower ids: the Bot API ignored ours (an offset
                    # "in the future": update ids restarted, another Bot API server, a restored
                    # database); take its ids, or the bot would skip everything forever
                    log.warning("the Bot API ignored offset %d and answered from update %d: polling from "
                                "there", offset, updates[0][0])
                    offset = updates[0][0]
                for update_id, update in updates:
                    if update_id < offset:
                        continue
                    try:
                        await self._bounded(self._process_polled(conn, update_id, update))
                    except _Retry as exc:
                        log.warning("update %d: database error, it is fetched again: %s", update_id, exc)
                        await self._sleep(0.5)
                        break
                    offset = update_id + 1
                    if self.stopping.is_set():
                        break  # the update in hand is done; the rest stay with Telegram
        finally:
            stop_wait.cancel()
        try:  # tell Telegram too (a later poller without the kit starts there)
            await asyncio.wait_for(self.adapter.get_updates(offset, 0, limit=1), 2.0)
        except Exception:  # noqa: BLE001 (the offset in the database is what counts)
            pass
        log.info("stopped polling; offset %d committed", offset)

    async def _bounded(self, work: Any) -> None:
        """Run one update's processing; once a stop is asked, give it ``shutdown_timeout`` more
        seconds, then cancel it (its transaction rolls back, the next poller gets the update)."""
        task = asyncio.ensure_future(work)
        stop = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                await asyncio.wait({task}, timeout=self.cfg.shutdown_timeout)
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
                log.error("the update in hand did not finish within %gs of the stop: cancelled, nothing of "
                          "it committed (the next poller processes it)", self.cfg.shutdown_timeout)
                raise _Abandoned
            task.result()
        finally:
            stop.cancel()

    async def _process_polled(self, conn: psycopg.AsyncConnection, update_id: int, update: Any) -> None:
        """The handler's writes and the next offset in one transaction on the lock's connection."""
        bot = self.adapter.bot_id
        error: BaseException | None = None
        try:
            async with conn.transaction():
                error = await self._handle(conn, update_id, update)
                if error is not None:
                    raise _RollBack
                await store.save_offset(conn, bot, update_id + 1)
            return
        except _RollBack:
            pass
        except psycopg.Error as exc:
            error = exc
        if not store.usable(conn):
            raise LockLost(str(error).strip())
        if isinstance(error, psycopg.OperationalError):  # a deadlock, a serialization failure, a timeout
            raise _Retry(f"{type(error).__name__}: {str(error).strip()}")
        log.error("update %d: the handler failed, its database writes were rolled back and the update "
                  "is skipped: %s: %s", update_id, type(error).__name__, error, exc_info=self._trace(error))
        try:
            async with conn.transaction():
                await store.save_offset(conn, bot, update_id + 1)
        except psycopg.Error as exc:
            raise LockLost(str(exc).strip()) from exc

    # -- HTTP ----------------------------------------------------------------------------------
    async def _http(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/ready":
            ready, info = self.readiness()
            return (200 if ready else 503), info
        if method == "GET" and path == "/health":
            return 200, {"status": "alive", "service": self.cfg.service, "release": self.cfg.release}
        if self.mode == "webhook" and path == self.webhook_path:
            if method != "POST":
                return 405, {"error": "POST only"}
            return await self._webhook(headers, body)
        return 404, {"error": "not found"}

    @contextlib.asynccontextmanager
    async def _chat_turn(self, chat: int | None) -> Any:
        """One webhook update of a chat at a time, in the order they came; other chats at once
        (Telegram sends a bot's webhooks over several connections in parallel)."""
        if chat is None:
            yield
            return
        entry = self._chats.setdefault(chat, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._chats[chat]

    async def _webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if self.secret_token and not hmac.compare_digest(
                headers.get("x-telegram-bot-api-secret-token", "").encode(), self.secret_token.encode()):
            log.warning("webhook: refused a request without the right secret token")
            return 401, {"ok": False, "error": "wrong secret token"}
        if not self.started or self.stopping.is_set():
            return 503, {"ok": False, "error": "not taking updates"}
        try:
            data = json.loads(body)
            update_id, update = self.adapter.parse(data)
        except Exception as exc:  # noqa: BLE001
            return 400, {"ok": False, "error": f"not an update: {exc}"}
        try:
            conn = await self.pool.get()
        except psycopg.Error as exc:
            log.error("webhook: database unreachable: %s", str(exc).strip())
            return 503, {"ok": False, "error": "database unreachable"}
        error: BaseException | None = None
        try:
            async with conn.transaction():
                if not await store.claim_webhook_update(conn, self.adapter.bot_id, update_id):
                    log.info("webhook: update %d was already processed; answered again", update_id)
                    return 200, {"ok": True, "duplicate": True}
                async with self._chat_turn(self.adapter.chat_of(update)):
                    error = await self._handle(conn, update_id, update)
                if error is not None:
                    raise _RollBack
            return 200, {"ok": True}
        except _RollBack:
            if isinstance(error, psycopg.OperationalError) or not store.usable(conn):
                log.error("webhook: update %d: database error, rolled back, Telegram will retry: %s",
                          update_id, str(error).strip())
                return 503, {"ok": False, "error": "database error"}
            log.error("update %d: the handler failed, its database writes were rolled back: %s: %s",
                      update_id, type(error).__name__, error, exc_info=self._trace(error))
            return 200, {"ok": False, "error": "handler failed"}
        except psycopg.Error as exc:  # non-2xx: Telegram delivers it again
            log.error("webhook: update %d: database error, Telegram will retry: %s", update_id,
                      str(exc).strip())
            return 503, {"ok": False, "error": "database error"}
        finally:
            await self.pool.put(conn)


class _RollBack(Exception):
    """Leave the update's transaction without committing it."""


class _Retry(Exception):
    """A transient database error: the update is fetched again, not skipped."""


class _Abandoned(Exception):
    """The update in hand outlived the shutdown timeout and was cancelled."""


def setup_logging() -> None:
    """One line per record on stdout, unless the app configured logging itself."""
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            level=os.environ.get("LOG_LEVEL", "INFO").upper())


async def serve(adapter_factory: Any, mode: str, service: str | None, port: int | None = None,
                **runtime: Any) -> int:
    """Run the runtime in the running event loop; the process's exit code."""
    setup_logging()
    try:
        settings = Settings.from_env(service, port)
    except ConfigError as exc:
        log.critical("invalid configuration: %s", exc)
        return 2
    return await Runtime(adapter_factory(), settings, mode, **runtime).run()


def run(adapter_factory: Any, mode: str, service: str | None, port: int | None = None,
        **runtime: Any) -> int:
    """:func:`serve` in a new event loop."""
    return asyncio.run(serve(adapter_factory, mode, service, port, **runtime))


def exit_on_failure(code: int) -> None:
    """For the ``async`` entry points: a non-zero exit code ends the process with it."""
    if code:
        raise SystemExit(code)
