"""Background database monitor: readiness checks and the heartbeat row.

Every ``period`` seconds (at most 1 s) it runs ``SELECT 1`` on its own
connection, which is what /ready looks at.  Every HEARTBEAT_INTERVAL seconds
it upserts the service's row in ``heartbeats`` -- but only while
``should_beat()`` says the bot is doing its job (for a polling bot: it holds
the poller lock and getUpdates succeeded recently).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from field_service import db
from field_service.config import Config

log = logging.getLogger("field_service.heartbeat")

# /ready needs a successful SELECT 1 at most this many seconds ago.
READY_MAX_AGE = 3.0

# should_beat() returns (beat?, reason, level used to log a pause)
BeatDecision = tuple[bool, str, int]


class HealthMonitor(threading.Thread):
    def __init__(self, cfg: Config, should_beat: Callable[[], BeatDecision], state: str,
                 on_crash: Callable[[], None]) -> None:
        super().__init__(name="health-monitor", daemon=True)
        self.cfg = cfg
        self.should_beat = should_beat
        self.state = state
        self.on_crash = on_crash
        self.period = min(1.0, cfg.heartbeat_interval)
        self.db_ok_at: float | None = None
        self.last_beat_at: float | None = None
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._conn: psycopg.Connection | None = None

    # -- API used by the bot ---------------------------------------------------
    def db_age(self) -> float | None:
        """Seconds since the last successful ``SELECT 1`` (None: never)."""
        return None if self.db_ok_at is None else time.monotonic() - self.db_ok_at

    def db_ok(self) -> bool:
        age = self.db_age()
        return age is not None and age <= READY_MAX_AGE

    def poke(self) -> None:
        """Run a check (and a heartbeat, if due or allowed) right now."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout)

    # -- thread ------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.critical("health monitor crashed", exc_info=True)
            self.on_crash()
        finally:
            if self._conn is not None:
                self._conn.close()

    def _loop(self) -> None:
        db_warned = False
        hb_failed = False
        beating = False
        next_beat = 0.0
        while not self._stop_event.is_set():
            # 1. database reachability (drives /ready)
            try:
                if self._conn is None or not db.is_usable(self._conn):
                    self._conn = db.connect(self.cfg.database_url,
                                            f"{self.cfg.service_name}:monitor", 5000)
                self._conn.execute("SELECT 1")
                self.db_ok_at = time.monotonic()
                if db_warned:
                    log.info("database reachable again")
                    db_warned = False
            except db.DbError as exc:
                if not db_warned:
                    log.warning("database unreachable (will keep retrying): %s",
                                str(exc).strip())
                    db_warned = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

            # 2. heartbeat, when due and the bot is doing its job
            now = time.monotonic()
            if self._conn is not None and now >= next_beat:
                ok, reason, level = self.should_beat()
                if ok:
                    try:
                        db.write_heartbeat(self._conn, self.cfg.heartbeat_key or self.cfg.service_name,
                                           self.cfg.app_release, self.state)
                        if not beating:
                            log.info("heartbeat %s (release %s, state %s)",
                                     "resumed" if self.last_beat_at else "started",
                                     self.cfg.app_release, self.state)
                        self.last_beat_at = now
                        next_beat = now + self.cfg.heartbeat_interval
                        beating, hb_failed = True, False
                    except db.DbError as exc:
                        if not hb_failed:
                            log.error("heartbeat write failed: %s", str(exc).strip())
                            hb_failed = True
                elif beating:
                    log.log(level, "heartbeat paused: %s", reason)
                    beating = False
            self._wake.wait(self.period)
            self._wake.clear()
