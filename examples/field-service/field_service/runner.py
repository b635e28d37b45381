"""Shared bot runtime: HTTP health server, poller with lock handoff, webhook.

Threads of a bot process:

* main thread: the poller (polling mode) or just waits (webhook mode), then
  runs the shutdown sequence;
* ``http``: ThreadingHTTPServer for /health, /ready and (webhook) /webhook;
* ``health-monitor``: SELECT 1 for /ready and the heartbeat row.

Polling handoff: only the holder of a session-level advisory lock polls.  The
lock is taken on a dedicated connection which is also used for the
"process update + advance offset" transactions, so a poller whose lock
connection died cannot commit anything either.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from field_service import db
from field_service.config import Config, ConfigError, load_config
from field_service.heartbeat import READY_MAX_AGE, BeatDecision, HealthMonitor
from field_service.telegram import (
    BotAPI,
    TelegramConflict,
    TelegramError,
    TelegramNetworkError,
)
from field_service.updates import InvalidUpdate, ReplyFn, default_reply, handle_update

log = logging.getLogger("field_service")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOCK_RETRY_SECONDS = 0.2
MAX_BACKOFF = 3.0
MAX_WEBHOOK_BODY = 1024 * 1024


class LockLost(Exception):
    """The poller's lock connection is gone: we no longer hold the lock."""


def setup_logging() -> None:
    """One line per record on stdout; StreamHandler flushes after each record."""
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    logging.basicConfig(stream=sys.stdout, format=LOG_FORMAT, force=True,
                        level=getattr(logging, level, logging.INFO))

    def excepthook(exc_type: Any, exc: BaseException, tb: Any) -> None:
        logging.getLogger("field_service").critical(
            "unhandled exception", exc_info=(exc_type, exc, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread else "?"
        logging.getLogger("field_service").error(
            "unhandled exception in thread %s", name,
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


class _HTTPServer(ThreadingHTTPServer):
    # Non-daemon request threads + block_on_close: server_close() waits for
    # in-flight requests (e.g. a webhook update being processed) to finish.
    daemon_threads = False
    block_on_close = True
    # A burst of connections waits in the kernel's queue instead of being
    # dropped (socketserver's default of 5 makes a busy moment look like a
    # dead server to the proxy: SYNs lost, connect timeouts).
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("error while handling an HTTP request from %s", client_address[0])


class BotApp:
    def __init__(self, cfg: Config, reply: ReplyFn = default_reply) -> None:
        self.cfg = cfg
        self.reply = reply
        self.api = BotAPI(cfg.bot_token, cfg.telegram_api_base)
        self.exit_code = 0
        self.stopping = threading.Event()
        self._stop_flag = False  # set directly by the signal handler
        self.holding_lock = False
        self.last_poll_ok: float | None = None
        self.http_up = False
        self.httpd: _HTTPServer | None = None
        # Connections are kept open (a connection per request would cost
        # PostgreSQL a new backend each) and capped, so that two releases side
        # by side during a deploy stay well within max_connections.
        self.pool = db.ConnectionPool(cfg.database_url, f"{cfg.service_name}:webhook",
                                      max_size=cfg.db_pool_size)
        self.monitor = HealthMonitor(cfg, self.should_beat, cfg.bot_mode, self._fatal)
        self._watchdog: threading.Timer | None = None
        self._stop_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------
    def stop_requested(self) -> bool:
        return self._stop_flag or self.stopping.is_set()

    def _await_stop_ack(self) -> None:
        """After a signal, let the helper thread log it first (keeps logs in order)."""
        if self._stop_flag and not self.stopping.is_set():
            self.stopping.wait(1.0)

    def request_stop(self, why: str, exit_code: int = 0) -> None:
        with self._stop_lock:
            if self.stopping.is_set():
                log.info("%s: already shutting down", why)
                return
            if exit_code:
                self.exit_code = exit_code
            log.info("%s: shutting down (timeout %gs)", why, self.cfg.shutdown_timeout)
            self._stop_flag = True
            self.stopping.set()
            # Last resort if a step hangs: never outlive SHUTDOWN_TIMEOUT.
            self._watchdog = threading.Timer(self.cfg.shutdown_timeout, self._shutdown_overdue)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _shutdown_overdue(self) -> None:
        log.error("shutdown did not finish within %gs; exiting now", self.cfg.shutdown_timeout)
        logging.shutdown()
        os._exit(1)

    def _fatal(self) -> None:
        self.request_stop("fatal error", exit_code=1)

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Keep the handler minimal (it interrupts the main thread anywhere):
        # set a flag, and log/set events from a helper thread.
        self._stop_flag = True
        name = signal.Signals(signum).name
        threading.Thread(target=self.request_stop, args=(f"{name} received",),
                         name="signal", daemon=True).start()

    def run(self) -> int:
        cfg = self.cfg
        log.info("starting %s %s (release %s, mode %s, pid %d)", cfg.service_name,
                 cfg.version, cfg.app_release, cfg.bot_mode, os.getpid())
        if cfg.bot_mode == "polling":
            if cfg.poll_timeout >= 2 * cfg.heartbeat_interval:
                log.warning("POLL_TIMEOUT (%ss) >= 2*HEARTBEAT_INTERVAL: an idle long poll "
                            "will pause the heartbeat", cfg.poll_timeout)
            if cfg.poll_timeout >= cfg.shutdown_timeout:
                log.warning("POLL_TIMEOUT (%ss) >= SHUTDOWN_TIMEOUT: a graceful shutdown may "
                            "be cut short", cfg.poll_timeout)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            self.httpd = _HTTPServer(("0.0.0.0", cfg.http_port), _make_handler(self))
        except OSError as exc:
            log.critical("cannot listen on 0.0.0.0:%d: %s", cfg.http_port, exc)
            return 1
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                         name="http", daemon=True).start()
        self.http_up = True
        log.info("HTTP server listening on 0.0.0.0:%d", cfg.http_port)
        self.monitor.start()
        try:
            if cfg.bot_mode == "polling":
                self.poll_forever()
            else:
                log.info("webhook mode: serving POST /webhook")
                while not self.stopping.wait(0.5):
                    pass
        except Exception:
            log.critical("unhandled exception in the main loop", exc_info=True)
            self.exit_code = 1
        finally:
            self.shutdown()
        return self.exit_code

    def shutdown(self) -> None:
        self._await_stop_ack()
        self._stop_flag = True
        self.stopping.set()
        if self.httpd is not None:
            log.info("stopping HTTP server")
            self.httpd.shutdown()
            self.httpd.server_close()  # waits for in-flight requests
            self.http_up = False
        self.monitor.stop()
        self.pool.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
        log.info("shutdown complete (exit code %d)", self.exit_code)

    # -- health ----------------------------------------------------------------------
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        age = self.monitor.db_age()
        info: dict[str, Any] = {
            "service": self.cfg.service_name, "version": self.cfg.version,
            "release": self.cfg.app_release, "mode": self.cfg.bot_mode,
            "db_ok_age": None if age is None else round(age, 3),
            "polling": self.holding_lock,
        }
        if self.stopping.is_set():
            info["status"] = "shutting down"
        elif age is None or age > READY_MAX_AGE:
            info["status"] = "database unreachable"
        else:
            info["status"] = "ready"
        return info["status"] == "ready", info

    def should_beat(self) -> BeatDecision:
        if self.stop_requested():
            return False, "shutting down", logging.INFO
        if not self.monitor.db_ok():
            return False, "database unreachable", logging.WARNING
        if self.cfg.bot_mode == "webhook":
            if not self.http_up:
                return False, "HTTP server down", logging.WARNING
            return True, "", logging.INFO
        if not self.holding_lock:
            return False, "not holding the poller lock", logging.INFO
        window = 2 * self.cfg.heartbeat_interval
        if self.last_poll_ok is None or time.monotonic() - self.last_poll_ok > window:
            return False, f"no successful getUpdates in the last {window:g}s", logging.WARNING
        return True, "", logging.INFO

    # -- polling -------------------------------------------------------------------
    def _sleep(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def _next_backoff(self, current: float) -> float:
        """0.5, 1, 2, ... capped at MAX_BACKOFF and at HEARTBEAT_INTERVAL (>= 0.5 s),
        so that a recovered Telegram API is noticed within about one heartbeat."""
        cap = min(MAX_BACKOFF, max(0.5, self.cfg.heartbeat_interval))
        return min(cap, max(0.5, current * 2))

    def poll_forever(self) -> None:
        while not self.stop_requested():
            conn = self._acquire_poller_lock()
            if conn is None:
                break
            try:
                self._poll_while_locked(conn)
            except LockLost as exc:
                self.holding_lock = False
                log.error("lost the poller lock connection (%s); stopped polling", exc)
                self._sleep(0.5)
            finally:
                self.holding_lock = False
                lost = conn.broken or conn.closed
                conn.close()  # ends the session: releases the advisory lock
                if not lost:
                    log.info("released poller lock")

    def _acquire_poller_lock(self) -> psycopg.Connection | None:
        """Connect and retry pg_try_advisory_lock until we get it or must stop."""
        cfg = self.cfg
        conn: psycopg.Connection | None = None
        waiting_logged = db_warned = False
        while not self.stop_requested():
            try:
                if conn is None or not db.is_usable(conn):
                    conn = db.connect(cfg.database_url, f"{cfg.service_name}:poller")
                if db.try_poller_lock(conn, cfg.poller_lock_name):
                    self.holding_lock = True
                    log.info("acquired poller lock")
                    return conn
            except db.DbError as exc:
                if not db_warned:
                    log.warning("poller: database unreachable (will keep retrying): %s",
                                str(exc).strip())
                    db_warned = True
                if conn is not None:
                    conn.close()
                    conn = None
                self._sleep(1.0)
                continue
            if not waiting_logged:
                log.info("waiting for poller lock")
                waiting_logged = True
            self._sleep(LOCK_RETRY_SECONDS)
        if conn is not None:
            conn.close()
        return None

    def _poll_while_locked(self, conn: psycopg.Connection) -> None:
        cfg = self.cfg
        try:
            offset = db.read_offset(conn, cfg.service_name)
        except db.DbError as exc:
            raise LockLost(str(exc).strip()) from exc
        log.info("polling from offset %d", offset)
        self.last_poll_ok = None
        backoff = 0.0  # after getUpdates failures
        retry_backoff = 0.0  # after failures to process an update
        healthy = False  # did the previous getUpdates succeed?
        while not self.stop_requested():
            try:  # never start a getUpdates without the lock
                conn.execute("SELECT 1")
            except db.DbError as exc:
                raise LockLost(str(exc).strip()) from exc
            try:
                # The first call after taking the lock (or after a failure) is a
                # short poll, so the poller proves it works (heartbeat) at once.
                updates = self.api.get_updates(offset, cfg.poll_timeout if healthy else 0)
            except TelegramConflict as exc:
                healthy = False
                log.error("409 Conflict: another poller is using this token (%s)",
                          exc.description)
                backoff = self._next_backoff(backoff)
                self._sleep(backoff)
                continue
            except (TelegramError, TelegramNetworkError) as exc:
                healthy = False
                log.error("getUpdates failed: %s", exc)
                backoff = self._next_backoff(backoff)
                self._sleep(backoff)
                continue
            self.last_poll_ok = time.monotonic()
            backoff = 0.0
            if not healthy:
                healthy = True
                self.monitor.poke()  # (re)start the heartbeat right away
            for update in updates:
                update_id = update.get("update_id")
                if not isinstance(update_id, int) or update_id < offset:
                    continue  # not expected from Telegram; never go backwards
                if not self._process_polled(conn, update):
                    retry_backoff = self._next_backoff(retry_backoff)
                    self._sleep(retry_backoff)
                    break  # retried from `offset` by the next getUpdates
                retry_backoff = 0.0
                offset = update_id + 1
                if self.stop_requested():
                    break  # finish the in-flight update only; the rest stay queued
        self._await_stop_ack()
        log.info("stopped polling; offset %d committed", offset)

    def _process_polled(self, conn: psycopg.Connection, update: dict[str, Any]) -> bool:
        """Process one update and advance the offset in ONE transaction."""
        update_id = update["update_id"]
        try:
            with conn.transaction():
                try:
                    handle_update(conn, self.api, self.cfg, self.reply, update)
                except InvalidUpdate as exc:
                    log.warning("update %d ignored: %s", update_id, exc)
                db.save_offset(conn, self.cfg.service_name, update_id + 1)
            return True
        except db.DbError as exc:
            if not db.is_usable(conn):
                raise LockLost(str(exc).strip()) from exc
            log.error("update %d: database error, will retry: %s", update_id, exc)
        except (TelegramError, TelegramNetworkError) as exc:
            log.error("update %d: reply failed, will retry: %s", update_id, exc)
        except Exception:
            log.exception("update %d: processing failed, will retry", update_id)
        return False

    # -- webhook ---------------------------------------------------------------------
    def handle_webhook(self, body: bytes, secret: str | None) -> tuple[int, dict[str, Any]]:
        if self.cfg.webhook_secret and not hmac.compare_digest(
                (secret or "").encode(), self.cfg.webhook_secret.encode()):
            log.warning("webhook: rejected request with a wrong secret token")
            return 401, {"ok": False, "error": "wrong secret token"}
        try:
            payload = json.loads(body)
        except ValueError:
            return 400, {"ok": False, "error": "invalid JSON"}
        try:
            conn = self.pool.get()
        except db.DbError as exc:
            log.error("webhook: database unreachable: %s", str(exc).strip())
            return 503, {"ok": False, "error": "database unreachable"}
        try:
            with conn.transaction():
                handle_update(conn, self.api, self.cfg, self.reply, payload)
            return 200, {"ok": True}
        except InvalidUpdate as exc:
            return 400, {"ok": False, "error": str(exc)}
        except (TelegramError, TelegramNetworkError) as exc:
            # non-2xx: Telegram redelivers the update later
            log.error("webhook: reply failed, update rolled back: %s", exc)
            return 502, {"ok": False, "error": "reply failed"}
        except db.DbError as exc:
            log.error("webhook: database error: %s", str(exc).strip())
            return 503, {"ok": False, "error": "database error"}
        finally:
            self.pool.put(conn)


def _make_handler(app: BotApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "field-service"
        timeout = 10  # seconds, per socket operation

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            logging.getLogger("field_service.http").debug(
                "%s " + format, self.address_string(), *args)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            if path == "/health":
                self._json(200, {"status": "alive", "service": app.cfg.service_name,
                                 "version": app.cfg.version, "release": app.cfg.app_release})
            elif path == "/ready":
                ready, info = app.readiness()
                self._json(200 if ready else 503, info)
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            path = urllib.parse.urlsplit(self.path).path
            if path != "/webhook" or app.cfg.bot_mode != "webhook":
                self._json(404, {"error": "not found"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_WEBHOOK_BODY:
                self.close_connection = True
                self._json(413 if length > 0 else 400, {"error": "bad Content-Length"})
                return
            body = self.rfile.read(length)
            status, payload = app.handle_webhook(
                body, self.headers.get("X-Telegram-Bot-Api-Secret-Token"))
            self._json(status, payload)

    return Handler


def run_bot(default_service: str, default_mode: str, reply: ReplyFn = default_reply) -> int:
    """Entry point of both bots: returns the process exit code."""
    setup_logging()
    try:
        cfg = load_config(default_service, default_mode)
    except ConfigError as exc:
        log.critical("invalid configuration: %s", exc)
        return 2
    try:
        return BotApp(cfg, reply).run()
    except Exception:
        log.critical("unhandled exception", exc_info=True)
        return 1
