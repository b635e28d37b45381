"""Traffic during a deploy, and what its users would have noticed.

* Webhook updates are POSTed through the proxy by the open-loop
  ``load.LoadGenerator`` (the admin bot, blue/green).
* ``PollingFeed`` queues one update at a steady pace in the stand-in Bot API
  for the polling bot (handoff), then counts, from the bot's own table and
  from the replies the stand-in recorded, the updates lost, the updates
  answered twice, the 409 Conflicts and the longest pause between two
  processed updates.

Shared by ``tests/integration/test_zero_downtime.py`` and the benchmarks in
``bench/``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING

from harness import Deployment

if TYPE_CHECKING:
    from fleet import Fleet
from load import LoadGenerator, summarize

# The local inventory's bot tokens (inventory/local/group_vars/all.yml).
ADMIN_TOKEN = "100001:demo-admin-token"
MASTER_TOKEN = "100002:demo-master-token"
# Webhook requests per second during the v2 deploy of the integration tests
# (conftest.py, v1_then_v2_under_traffic); the benchmarks choose their own.
TEST_RATE = 50


def proxy_port(d: Deployment) -> int:
    """The proxy's port of a demo deployment (roles/app: stand-in's port + 1)."""
    return int(d.extravars.get("app_proxy_port", d.telegram_port + 1))


SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def webhook_load(d: Deployment, rate: float, service: str = "admin_bot", **kwargs) -> LoadGenerator:
    """An open-loop load of webhook updates on the service's public path,
    each with the service's secret header, as Telegram sends them (the proxy
    refuses the others)."""
    kwargs.setdefault("headers", {SECRET_HEADER: d.webhook_secret(service)})
    return LoadGenerator(url=f"http://127.0.0.1:{proxy_port(d)}/{service}/webhook", rate=rate, **kwargs)


def webhook_outcome(d: Deployment | Fleet, samples, service: str = "admin_bot", first_id: int = 1_000_000,
                    table: str = "processed_updates", service_column: str = "service",
                    settle: float = 0.0) -> dict:
    """summarize() plus how many updates answered 200 are missing from the
    service's table of processed updates (an answered update must have been
    kept): the sample app's processed_updates, or another app's, in the
    database ``d.psql`` reads (a deployment's, or a fleet's on its db host).

    An app that answers before it processes (python-telegram-bot's own
    webhook server) may still be working through its queue: with ``settle``
    the count is read again until nothing is missing, or until it stopped
    shrinking for ``settle`` seconds (what is missing then is lost, not late);
    ``stored_late`` says how many came after the first reading."""
    out = summarize(samples)
    answered = {s.update_id for s in samples if s.ok}

    def missing() -> int:
        rows = d.psql(f"SELECT update_id FROM {table} WHERE {service_column} = '{service}' "
                      f"AND update_id >= {first_id}")
        return len(answered - {int(x) for x in rows.split()})

    first = last = missing()
    progress = time.monotonic()
    while last and time.monotonic() - progress < settle:
        time.sleep(1)
        now = missing()
        if now < last:
            last, progress = now, time.monotonic()
    out["answered_not_stored"] = last
    out["stored_late"] = first - last
    return out


class PollingFeed:
    """Queue an update for the polling bot every ``interval`` seconds.

    What the bot did is read from its table of processed updates (the
    sample app's ``processed_updates`` by default: ``processed_sql`` gives
    ``update_id|epoch`` rows of the feed's updates, in order) and from its
    replies (``reply_of(text)``: the update's text a reply answers, or
    None)."""

    def __init__(self, d: Deployment, token: str = MASTER_TOKEN, service: str = "master_bot",
                 interval: float = 0.05, processed_sql=None, reply_of=None):
        self.d, self.token, self.service, self.interval = d, token, service, interval
        self.processed_sql = processed_sql or (
            lambda tag: "SELECT update_id, EXTRACT(EPOCH FROM processed_at) FROM processed_updates "
                        f"WHERE service = '{service}' AND text LIKE '{tag} %' ORDER BY processed_at")
        self.reply_of = reply_of or (lambda text: text.split(": got ", 1)[1] if ": got " in text else None)
        self.tag = "feed-" + uuid.uuid4().hex[:6]
        self.queued: list[tuple[int, str]] = []  # (update_id, text)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="polling-feed", daemon=True)
        self._conflicts_before = 0

    def _stats(self) -> dict:
        return self.d.telegram("GET", f"/_control/{self.token}/stats")["result"]

    def start(self) -> PollingFeed:
        self._conflicts_before = self._stats()["conflicts_409"]
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        start = time.monotonic()
        while not self._stop.is_set():
            text = f"{self.tag} {n}"
            try:
                ids = self.d.telegram("POST", f"/_control/{self.token}/updates",
                                      {"text": text, "chat_id": 77})
                self.queued.append((ids["update_ids"][0], text))
            except OSError as exc:  # the stand-in itself is never redeployed
                self.errors.append(str(exc))
            n += 1
            # steady pace: the n-th update is due at start + n * interval
            self._stop.wait(max(0.0, start + n * self.interval - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def measure(self, timeout: float = 60.0) -> dict:
        """Wait until the bot confirmed every queued update, then count."""
        deadline = time.monotonic() + timeout
        while self._stats()["queued"] > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        stats = self._stats()
        sent = self.d.telegram("GET", f"/_control/{self.token}/sent")["result"]
        answered = (self.reply_of(m.get("text", "")) for m in sent if self.tag in m.get("text", ""))
        replies = Counter(text for text in answered if text is not None)
        rows = self.d.psql(self.processed_sql(self.tag))
        processed = [(int(a), float(b)) for a, b in (line.split("|") for line in rows.splitlines() if line)]
        ids = {update_id for update_id, _ in processed}
        times = [t for _, t in processed]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        return {
            "updates_sent": len(self.queued),
            "updates_lost": sum(1 for update_id, _ in self.queued if update_id not in ids),
            "updates_unanswered": sum(1 for _, text in self.queued if replies[text] == 0),
            "updates_duplicated": sum(n - 1 for n in replies.values() if n > 1),
            "conflicts_409": stats["conflicts_409"] - self._conflicts_before,
            "max_gap_s": round(max(gaps), 3) if gaps else None,
            "still_queued": stats["queued"],
            "feed_errors": len(self.errors),
        }
