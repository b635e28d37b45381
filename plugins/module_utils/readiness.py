# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Readiness of freshly started containers, judged from `docker inspect`.

Used by the graceful restart: the old containers are stopped only when every
new one is ready. A container is ready when it runs, is not restarting and,
if it has a health check, reports ``healthy``. It has failed for good when it
is gone, has exited, or restarts (a crash loop); otherwise it is still coming
up. Plain stdlib: unit tested without Ansible or Docker.

The engine runs a health check every ``--interval``, and a container reports
``healthy`` only after the first check that passed. So that a deploy does not
wait for the engine's schedule (and images need not check every second or
two all the time they run), ``wait_ready`` can run the container's own
health check command itself (``run_check``, an exec): when it passes, the
container is ready, exactly as if the engine had run it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

READY = "ready"
WAITING = "waiting"
FAILED = "failed"


@dataclass
class Verdict:
    name: str
    state: str
    reason: str = ""
    details: dict = field(default_factory=dict)


def _last_health_output(health: dict) -> str:
    log = health.get("Log") or []
    if not log:
        return ""
    last = log[-1]
    out = " ".join(str(last.get("Output") or "").split())
    return f"exit {last.get('ExitCode')}: {out[:300]}" if out else f"exit {last.get('ExitCode')}"


def judge(name: str, inspect: dict | None, first_restart_count: int | None = None) -> Verdict:
    """Judge one container from its inspect document (None: it does not exist)."""
    if inspect is None:
        return Verdict(name, FAILED, f"{name}: container does not exist")
    state = inspect.get("State") or {}
    health = state.get("Health") or {}
    restarts = int(inspect.get("RestartCount") or 0)
    details = {
        "status": state.get("Status"),
        "health": health.get("Status"),
        "restart_count": restarts,
        "exit_code": state.get("ExitCode"),
        "started_at": state.get("StartedAt"),
        "last_check": _last_health_output(health),
    }
    if state.get("Restarting") or (first_restart_count is not None and restarts > first_restart_count):
        reason = f"{name}: restarting (crash loop, {restarts} restarts)"
        return Verdict(name, FAILED, reason, details)
    if not state.get("Running"):
        reason = f"{name}: {state.get('Status')} with exit code {state.get('ExitCode')}"
        return Verdict(name, FAILED, reason, details)
    check = ((inspect.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    has_check = bool(check) and check[0] != "NONE"
    if not health and not has_check:
        return Verdict(name, READY, "", details)
    if not health:  # a health check is configured but has not reported yet
        return Verdict(name, WAITING, f"{name}: health starting", details)
    if health.get("Status") == "healthy":
        return Verdict(name, READY, "", details)
    last = details["last_check"]
    reason = f"{name}: health {health.get('Status')}" + (f" (last check {last})" if last else "")
    return Verdict(name, WAITING, reason, details)


def health_test(inspect: dict | None) -> tuple[list[str], float] | None:
    """The container's health check as (argv to exec, timeout in seconds),
    None when it has none. ``CMD-SHELL`` runs through ``/bin/sh -c`` as the
    engine does."""
    hc = ((inspect or {}).get("Config") or {}).get("Healthcheck") or {}
    test = list(hc.get("Test") or [])
    timeout = (hc.get("Timeout") or 30_000_000_000) / 1e9  # the engine's default: 30 s
    if len(test) >= 2 and test[0] == "CMD":
        return [str(a) for a in test[1:]], timeout
    if len(test) == 2 and test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", str(test[1])], timeout
    return None


def wait_ready(inspect_fn, names, timeout: float, interval: float = 1.0,
               clock=time.monotonic, sleep=time.sleep, run_check=None):
    """Poll until every container is ready, one has failed, or the timeout.

    ``run_check(name, argv, timeout) -> bool``, when given, runs the health
    check of a container that runs but has not reported ``healthy`` yet;
    True makes it ready (details ``checked: "exec"``).

    Returns (ok, verdicts, reason, elapsed).
    """
    start = clock()
    first_counts: dict[str, int | None] = {}
    while True:
        verdicts = []
        for name in names:
            doc = inspect_fn(name)
            if name not in first_counts:
                first_counts[name] = int((doc or {}).get("RestartCount") or 0) if doc else None
            verdict = judge(name, doc, first_counts[name])
            if verdict.state == WAITING and run_check is not None:
                check = health_test(doc)
                if check and run_check(name, check[0], check[1]):
                    verdict = Verdict(name, READY, "", {**verdict.details, "checked": "exec"})
            verdicts.append(verdict)
        elapsed = clock() - start
        failed = [v for v in verdicts if v.state == FAILED]
        if failed:
            return False, verdicts, "; ".join(v.reason for v in failed), elapsed
        if all(v.state == READY for v in verdicts):
            return True, verdicts, "", elapsed
        if elapsed >= timeout:
            waiting = [v.reason for v in verdicts if v.state != READY]
            return False, verdicts, f"not ready after {timeout:g}s: " + "; ".join(waiting), elapsed
        sleep(interval)
