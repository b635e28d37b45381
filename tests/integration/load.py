"""An open-loop HTTP load generator for Telegram webhook updates (stdlib only).

Requests are *scheduled* at a fixed rate (request i at t0 + i / rate) whatever
the answers, so a slow or stalled server shows up as latency and failures
rather than as a lower request rate (no coordinated omission: a request's
latency is counted from the moment it was due). Worker threads send them to
one URL on the loopback interface (or on a host of this machine's own test
bed, testbed.py); each request is one Telegram Update with a
unique ``update_id``. Bounded: it stops after ``max_seconds`` at the latest.

Used by ``tests/integration/test_zero_downtime.py`` and the benchmarks in ``bench/``.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import queue
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Sample:
    due: float  # seconds since the start, when it was scheduled
    latency_ms: float  # from due to the end of the answer (or the error)
    ok: bool
    outcome: str  # "200", "502", "ConnectionResetError", ...
    update_id: int = 0  # the Telegram update the request carried


class NamedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to an address, checking the certificate for another name (the
    proxy's public one) - curl's --resolve."""

    def __init__(self, host: str, port: int, server_name: str, **kwargs) -> None:
        super().__init__(host, port, **kwargs)
        self.server_name = server_name

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.server_name)


def _on_test_bed(host: str | None) -> bool:
    """Whether ``host`` is an address of the test bed's own network (testbed.py's bridge)."""
    try:
        return ipaddress.ip_address(host or "") in ipaddress.ip_network(TEST_BED_NETWORK)
    except ValueError:
        return False


# testbed.py's bridge (the namespaces the tests make on this machine; kept
# equal to testbed.PREFIX by test_testbed.py, so that this file needs only
# the standard library)
TEST_BED_NETWORK = "10.231.0.0/24"


@dataclass
class LoadGenerator:
    url: str
    rate: float = 200.0
    workers: int = 64
    keepalive: bool = False
    timeout: float = 10.0
    max_seconds: float = 600.0
    first_update_id: int = 1_000_000
    chat_id: int = 4242
    chats: int = 1  # updates come from chat_id, chat_id + 1, ... in turn
    headers: dict = field(default_factory=dict)  # sent with every request (Telegram's secret header)
    # https URLs: the CAs trusted and the name the certificate must be for
    # (the connection still goes to the loopback address of the URL)
    ssl_context: ssl.SSLContext | None = None
    server_name: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1") and not _on_test_bed(parts.hostname):
            raise ValueError("the load generator only targets loopback and the test bed's hosts")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._path = parts.path or "/"
        self._tickets: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.max_lag_ms = 0.0

    # -- control ---------------------------------------------------------------
    def start(self) -> LoadGenerator:
        self.started_at = time.monotonic()
        for i in range(self.workers):
            t = threading.Thread(target=self._worker, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._schedule, name="load-scheduler", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for _ in range(self.workers):
            self._tickets.put(None)
        for t in self._threads:
            t.join(self.timeout + 5)
        self.stopped_at = time.monotonic()
        with self._lock:
            return sorted(self.samples, key=lambda s: s.due)

    def run_for(self, seconds: float) -> list[Sample]:
        self.start()
        time.sleep(seconds)
        return self.stop()

    # -- threads ---------------------------------------------------------------
    def _schedule(self) -> None:
        i = 0
        interval = 1.0 / self.rate
        while not self._stop.is_set():
            due = i * interval
            now = time.monotonic() - self.started_at
            if due > self.max_seconds:
                break
            if due > now:
                time.sleep(due - now)
                continue
            self._tickets.put((i, due))
            i += 1

    def _body(self, i: int) -> bytes:
        update_id = self.first_update_id + i
        return json.dumps({
            "update_id": update_id,
            "message": {"message_id": update_id, "date": int(time.time()),
                        "chat": {"id": self.chat_id + i % max(1, self.chats), "type": "private"},
                        "text": f"load {update_id}"},
        }).encode()

    def _connection(self) -> http.client.HTTPConnection:
        if not self._https:
            return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return NamedHTTPSConnection(self._host, self._port, self.server_name or self._host,
                                    context=self.ssl_context or ssl.create_default_context(),
                                    timeout=self.timeout)

    def _worker(self) -> None:
        conn: http.client.HTTPConnection | None = None
        headers = {"Content-Type": "application/json",
                   "Connection": "keep-alive" if self.keepalive else "close", **self.headers}
        while True:
            ticket = self._tickets.get()
            if ticket is None:
                break
            i, due = ticket
            lag = (time.monotonic() - self.started_at - due) * 1000
            if lag > self.max_lag_ms:
                self.max_lag_ms = lag
            try:
                if conn is None:
                    conn = self._connection()
                conn.request("POST", self._path, body=self._body(i), headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok, outcome = resp.status == 200, str(resp.status)
                if not self.keepalive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                ok, outcome = False, type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
            latency = (time.monotonic() - self.started_at - due) * 1000
            with self._lock:
                self.samples.append(Sample(due, latency, ok, outcome, self.first_update_id + i))
        if conn is not None:
            conn.close()


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of the values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, int(round(pct / 100.0 * len(ordered) + 0.5 - 1e-9)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(samples: list[Sample], seconds: float | None = None) -> dict:
    lat = [s.latency_ms for s in samples]
    failed = [s for s in samples if not s.ok]
    span = seconds if seconds else (samples[-1].due - samples[0].due if len(samples) > 1 else 0)
    return {
        "requests_sent": len(samples),
        "requests_failed": len(failed),
        "failures_by_outcome": dict(Counter(s.outcome for s in failed)),
        "first_failure_at_s": round(failed[0].due, 3) if failed else None,
        "rate_rps": round(len(samples) / span, 1) if span else None,
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat), 2) if lat else 0.0,
    }
