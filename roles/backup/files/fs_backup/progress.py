# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a long run has done so far, in a file for whoever watches it.

``--progress-file PATH`` (dump, restore): the file holds one JSON object,
``{"note": "waiting for the backup lock"}`` while the run waits or does
something without a count, ``{"bytes": 12345678, "verb": "written"}`` while
it moves bytes, plus ``"updated"`` (epoch seconds). A background thread
rewrites it (a temporary file renamed over it, 0600) when it changed, at most
once a ``interval``; ``close`` writes the last state. The deploy's console
reads it through the ``fieldservice.deploy.job_progress`` module
(``Creating backup... still running, 20.0 s: 12.3 MB written``). Without a path nothing is
written and no thread runs.
"""

from __future__ import annotations

import json
import os
import threading
import time


class Progress:
    """The state of a run, kept in ``path`` (see the module's docstring)."""

    def __init__(self, path: str | None, interval: float = 1.0):
        self.path = os.path.abspath(path) if path else None
        self.interval = interval
        self.bytes = 0
        self._state: dict = {}
        self._written: dict | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.path is not None:
            self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
            self._thread.start()

    def note(self, text: str) -> None:
        """A phase without a count (waiting for the lock, checking a checksum)."""
        self._state = {"note": text}

    def count(self, verb: str) -> None:
        """Count bytes from now on: ``<N> <verb>`` (``12.3 MB written``)."""
        self.bytes = 0
        self._state = {"verb": verb}

    def add(self, nbytes: int) -> None:
        self.bytes += nbytes

    def snapshot(self) -> dict:
        state = dict(self._state)
        if "verb" in state:
            state["bytes"] = self.bytes
        return state

    def _write(self) -> None:
        state = self.snapshot()
        if state == self._written:
            return
        temp = f"{self.path}.{os.getpid()}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({**state, "updated": round(time.time(), 3)}, handle)
            os.replace(temp, self.path)
            self._written = state
        except OSError:
            # Progress is for a person watching: never a reason to fail a backup.
            try:
                os.unlink(temp)
            except OSError:
                pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._write()

    def close(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._write()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
