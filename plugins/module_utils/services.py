# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app's services: the ONE set of defaults, and their container names.

Used on the control node by the filter plugins (``app_services_resolved`` of
roles/app, what the switch module is given) and on the server by the switch
module itself, so a service's strategy, port and readiness path mean the same
everywhere. Stdlib only.

A service (``app_services`` item) has a ``name`` and a ``command`` and may set:

* ``mode``: ``webhook`` | ``polling`` | ``http`` (default ``polling``);
* ``strategy``: ``blue_green`` (default for webhook and http), ``handoff``
  (default for polling) or ``recreate``;
* ``port`` (default 8080), ``readiness_path`` (default ``/ready``; ``""``
  trusts the container's health check);
* ``public_path``: the URL prefix the proxy routes to it (default
  ``/<name>/`` for blue_green, else none); ``proxied`` follows from it;
* ``env``, ``stop_timeout``.
"""

from __future__ import annotations

MODES = ("webhook", "polling", "http")
STRATEGIES = ("blue_green", "handoff", "recreate")
DEFAULT_MODE = "polling"
DEFAULT_PORT = 8080
DEFAULT_READINESS_PATH = "/ready"


def default_strategy(mode: str | None) -> str:
    """blue_green for what receives requests (webhook, http), handoff for a poller."""
    return "blue_green" if (mode or DEFAULT_MODE) in ("webhook", "http") else "handoff"


def _given(svc: dict, key: str) -> bool:
    return key in svc and svc[key] is not None


def resolve(svc: dict) -> dict:
    """The service with every optional key filled in (a new dict)."""
    mode = svc.get("mode") or DEFAULT_MODE
    strategy = svc.get("strategy") or default_strategy(mode)
    if _given(svc, "public_path"):
        public_path = str(svc["public_path"])
    else:
        public_path = f"/{svc['name']}/" if strategy == "blue_green" else ""
    out = dict(svc)
    out.update(
        mode=mode,
        strategy=strategy,
        port=int(svc.get("port") or DEFAULT_PORT),
        readiness_path=(str(svc["readiness_path"]) if _given(svc, "readiness_path")
                        else DEFAULT_READINESS_PATH),
        public_path=public_path,
        proxied=len(public_path) > 0,
        env=dict(svc.get("env") or {}),
    )
    return out


def container_name(app: str, service: str, release: str) -> str:
    """The container of a service in a release: ``<app>_<service>_<release>``."""
    return f"{app}_{service}_{release}"
