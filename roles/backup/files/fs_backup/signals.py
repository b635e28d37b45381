# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Signals: SIGTERM/SIGINT/SIGHUP become an exception in the main thread.

But only while "armed": during cleanup a second signal must not interrupt
the cleanup itself.
"""

from __future__ import annotations

import signal

from .errors import Interrupted


class _SignalState:
    armed = False
    pending: int | None = None  # a signal that arrived while not armed


def _on_signal(signum, _frame):
    if _SignalState.armed:
        _SignalState.armed = False
        raise Interrupted(signum)
    if _SignalState.pending is None:
        _SignalState.pending = signum


def install_signal_handlers() -> None:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    _SignalState.armed = True
    _SignalState.pending = None


def disarm_signals() -> None:
    """From now on signals are only recorded (e.g. once the backup is out)."""
    _SignalState.armed = False


def pending_signal() -> int | None:
    """A signal that arrived while signals were not armed, if any."""
    return _SignalState.pending


class signals_deferred:
    """Context manager: a signal inside it is held back, not raised.

    Used around cleanup (which must finish) and around starting processes
    (so that none is started without being tracked). On leaving, a held-back
    signal is raised if signals were armed on entry.
    """

    def __enter__(self):
        self._was_armed = _SignalState.armed
        _SignalState.armed = False
        return self

    def __exit__(self, exc_type, *_exc):
        _SignalState.armed = self._was_armed
        if self._was_armed and exc_type is None and _SignalState.pending is not None:
            signum, _SignalState.pending = _SignalState.pending, None
            _SignalState.armed = False
            raise Interrupted(signum)
        return False
