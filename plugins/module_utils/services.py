# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app's services: the ONE set of defaults, and their container names.

Used on the control node by the filter plugins (``app_services_resolved`` of
roles/app, what the switch module is given) and on the server by the switch
module itself, so a service's strategy, port and readiness path mean the same
everywhere. Stdlib only.

A service (``app_services`` item) has a ``name`` and a ``command`` and may set:

* ``mode``: ``webhook`` | ``polling`` | ``http`` (default ``polling``);
* ``single_poller``: the app guarantees one poller at a time (a
  PostgreSQL advisory lock, as the sample app's): a polling service may then hand
  over without a gap (default false);
* ``strategy``: ``blue_green`` (default for webhook and http), ``handoff``
  (default for polling with ``single_poller``) or ``recreate`` (default for
  polling without it: two pollers at once make Telegram answer 409);
* ``readiness``: how the switch knows a new container can take over:
  ``http`` (``readiness_path`` answers 200), ``healthcheck`` (the image's
  HEALTHCHECK passes), ``tcp`` (the port accepts connections), ``running``
  (running and not restarting for ``ready_after`` seconds) or ``auto``
  (default: ``http`` when a ``readiness_path`` is set, else the image's
  HEALTHCHECK when it has one, else ``tcp`` behind the proxy, else
  ``running``);
* ``heartbeat``: ``auto`` (default: checked when the heartbeat table exists
  and the service has a row in it), ``true`` (required) or ``false`` (off);
* ``port`` (default 8080), ``readiness_path`` (default none; ``/ready``
  when ``readiness`` is ``http``), ``ready_after`` (default 5 s);
* ``public_path``: the URL prefix the proxy routes to it (default
  ``/<name>/`` for blue_green, else none); ``proxied`` follows from it;
* ``env``, ``stop_timeout``.

A ``webhook`` service also has (docs/security.md):

* ``webhook_path``: the one path under ``public_path`` that the proxy lets
  in from the internet (default ``/webhook``; every other path of the
  service, its readiness endpoint too, answers 404 there);
* ``register_webhook``: the deploy registers it with Telegram (``setWebhook``)
  when ``app_public_url`` is set (default true);
* ``token_env``: the variable of its secret environment that holds its bot
  token (default ``BOT_TOKEN``);
* ``webhook_secret_env``: the variable the service is given its webhook
  secret in (default ``WEBHOOK_SECRET``; empty: not given);
* ``allowed_updates``: the update types registered (default: not sent,
  Telegram keeps what it had).
"""

from __future__ import annotations

MODES = ("webhook", "polling", "http")
STRATEGIES = ("blue_green", "handoff", "recreate")
READINESS = ("auto", "http", "healthcheck", "tcp", "running")
HEARTBEAT = ("auto", "required", "off")
DEFAULT_MODE = "polling"
DEFAULT_PORT = 8080
DEFAULT_READINESS_PATH = "/ready"
DEFAULT_READY_AFTER = 5.0
DEFAULT_WEBHOOK_PATH = "/webhook"
DEFAULT_TOKEN_ENV = "BOT_TOKEN"
DEFAULT_WEBHOOK_SECRET_ENV = "WEBHOOK_SECRET"
DOCS_READINESS = "docs/zero-downtime.md#readiness"
DOCS_STRATEGIES = "docs/zero-downtime.md#strategies"


def default_strategy(mode: str | None, single_poller: bool = False) -> str:
    """blue_green for what receives requests (webhook, http); for a poller,
    handoff when the app guarantees a single poller, else recreate (a second
    poller beside the first makes Telegram answer 409)."""
    if (mode or DEFAULT_MODE) in ("webhook", "http"):
        return "blue_green"
    return "handoff" if single_poller else "recreate"


def heartbeat_key(svc: dict, host: str = "") -> str:
    """The ``service`` value of a service's heartbeat row: its name on one
    server; ``<name>@<host>`` on several (``host`` given), so that each
    server's health check reads its own container's row. A polling service
    keeps its name: the fleet has one poller (the lock in the shared
    database), whose row every server reads."""
    mode = svc.get("mode") or DEFAULT_MODE
    return f"{svc['name']}@{host}" if host and mode != "polling" else str(svc["name"])


def heartbeat_mode(value) -> str:
    """``auto`` | ``required`` | ``off`` from the service's ``heartbeat`` (bool or word)."""
    if value is None or value == "":
        return "auto"
    if isinstance(value, bool):
        return "required" if value else "off"
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "required"):
        return "required"
    if text in ("false", "no", "off"):
        return "off"
    if text == "auto":
        return "auto"
    raise ValueError(f"heartbeat {value!r}: use true, false or auto")


def readiness_of(svc: dict) -> tuple[str, str]:
    """(readiness, readiness_path) of a service as given."""
    readiness = str(svc.get("readiness") or "auto")
    if readiness not in READINESS:
        raise ValueError(f"service {svc.get('name')!r}: readiness {readiness!r} is not one of "
                         f"{', '.join(READINESS)} (see {DOCS_READINESS})")
    path = str(svc["readiness_path"]) if _given(svc, "readiness_path") else ""
    if readiness == "auto" and path:
        readiness = "http"
    if readiness == "http" and not path:
        path = DEFAULT_READINESS_PATH
    if readiness != "http":
        path = ""
    return readiness, path


def _given(svc: dict, key: str) -> bool:
    return key in svc and svc[key] is not None


def resolve(svc: dict) -> dict:
    """The service with every optional key filled in (a new dict)."""
    mode = svc.get("mode") or DEFAULT_MODE
    single_poller = bool(svc.get("single_poller"))
    strategy = svc.get("strategy") or default_strategy(mode, single_poller)
    readiness, readiness_path = readiness_of(svc)
    if _given(svc, "public_path"):
        public_path = str(svc["public_path"])
    else:
        public_path = f"/{svc['name']}/" if strategy == "blue_green" else ""
    out = dict(svc)
    out.update(
        mode=mode,
        strategy=strategy,
        single_poller=single_poller,
        port=int(svc.get("port") or DEFAULT_PORT),
        readiness=readiness,
        readiness_path=readiness_path,
        ready_after=float(svc["ready_after"]) if _given(svc, "ready_after") else DEFAULT_READY_AFTER,
        heartbeat=heartbeat_mode(svc.get("heartbeat")),
        public_path=public_path,
        proxied=len(public_path) > 0,
        env=dict(svc.get("env") or {}),
    )
    webhook = mode == "webhook"
    out.update(
        webhook_path=(str(svc["webhook_path"]) if _given(svc, "webhook_path") else DEFAULT_WEBHOOK_PATH)
        if webhook else "",
        register_webhook=webhook and (bool(svc["register_webhook"]) if _given(svc, "register_webhook")
                                      else True),
        token_env=str(svc["token_env"]) if _given(svc, "token_env") else DEFAULT_TOKEN_ENV,
        webhook_secret_env=(str(svc["webhook_secret_env"]) if _given(svc, "webhook_secret_env")
                            else DEFAULT_WEBHOOK_SECRET_ENV) if webhook else "",
        allowed_updates=list(svc["allowed_updates"]) if _given(svc, "allowed_updates") else None,
    )
    return out


def webhook_url(public_url: str, svc: dict) -> str:
    """The public URL Telegram posts a webhook service's updates to:
    ``app_public_url`` + its ``public_path`` + its ``webhook_path``."""
    if not public_url or svc.get("mode") != "webhook" or not svc.get("public_path"):
        return ""
    return public_url.rstrip("/") + svc["public_path"] + svc["webhook_path"].lstrip("/")


def container_name(app: str, service: str, release: str) -> str:
    """The container of a service in a release: ``<app>_<service>_<release>``."""
    return f"{app}_{service}_{release}"
