# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monitoring: a healthchecks.io-style ping after each scheduled run, and
the team's notification channels (the configuration's ``notify``; the
sending is notify.py, the collection's own, packed with the program)."""

from __future__ import annotations

import logging
import socket
import urllib.parse
import urllib.request

from . import PROG, notify

log = logging.getLogger(__name__)


def ping(url: str | None, ok: bool, message: str) -> None:
    """POST ``message`` to ``url`` (success) or ``url/fail``; never raises."""
    if not url:
        return
    target = url if ok else url.rstrip("/") + "/fail"
    host = urllib.parse.urlsplit(url).netloc or "?"
    try:
        request = urllib.request.Request(target, data=message.encode("utf-8")[:10000],
                                         method="POST",
                                         headers={"Content-Type": "text/plain; charset=utf-8",
                                                  "User-Agent": PROG})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read(1024)
    except Exception as exc:  # noqa: BLE001 - a ping never fails a backup
        log.warning("ping to %s failed: %s", host, exc)


def tell(config: dict | None, event: str, reason: str = "", who: str = "scheduled job", **fields) -> list:
    """One message to the team's channels (``config["notify"]``: channels,
    events, retries, timeout, server); an undelivered one is a warning in the
    log. Never raises."""
    settings = (config or {}).get("notify") or {}
    if not settings.get("channels"):
        return []
    try:
        channels = notify.check_channels(settings["channels"], "backup_notify_channels")
        event_doc = {"event": event, "app": (config or {}).get("app", ""),
                     "server": settings.get("server") or socket.gethostname(), "who": who,
                     "reason": reason, **fields}
        results = notify.send(channels, event_doc, events=settings.get("events"),
                              retries=int(settings.get("retries", 3)),
                              timeout=float(settings.get("timeout", 10)))
    except Exception as exc:  # noqa: BLE001 - a notification never fails a backup
        log.warning("notification %s not sent: %s", event, exc)
        return []
    for result in results:
        if result["ok"]:
            log.info("notification %s sent to %s", event, result["channel"])
        else:
            log.warning("notification %s to %s not delivered after %d attempt(s): %s", event,
                        result["channel"], result["attempts"], result["error"])
    return results
