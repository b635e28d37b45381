# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monitoring: a healthchecks.io-style ping after each scheduled run."""

from __future__ import annotations

import logging
import urllib.parse
import urllib.request

from . import PROG

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
