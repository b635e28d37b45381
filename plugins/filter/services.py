# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugins: the app's services as the roles and the switch module need them.

The defaults of a service are those of plugins/module_utils/services.py,
shared with the switch module on the server. Documented in the .yml files
beside this one.
"""

from __future__ import annotations

from urllib.parse import quote

from ansible.errors import AnsibleFilterError

from ansible_collections.fieldservice.deploy.plugins.module_utils import services, switch


def _services(value, name: str) -> list:
    if not isinstance(value, list) or not all(isinstance(s, dict) and s.get("name") for s in value):
        raise AnsibleFilterError(f"{name} expects a list of services, each with a name (app_services)")
    return value


def resolve_services(app_services) -> list[dict]:
    """app_services with every optional key filled in (mode, strategy, port,
    readiness_path, public_path, proxied, env)."""
    return [services.resolve(svc) for svc in _services(app_services, "resolve_services")]


def switch_services(resolved, release: str, env: dict, stop_timeout: int, host: str = "") -> list[dict]:
    """What the switch module is given for each service: only the keys it
    knows, its stop timeout (its own, else ``stop_timeout``) and its plain
    environment: ``env`` (the app's), then APP_RELEASE and SERVICE_NAME (and,
    on one of several app servers, ``host`` given, HEARTBEAT_KEY: the row
    its heartbeat goes in), then the service's own ``env``, which wins."""
    out = []
    for svc in _services(resolved, "switch_services"):
        svc = services.resolve(svc)
        stop = svc.get("stop_timeout")
        key = services.heartbeat_key(svc, host)
        given = {"APP_RELEASE": release, "SERVICE_NAME": svc["name"]}
        if key != svc["name"]:
            given["HEARTBEAT_KEY"] = key
        out.append({
            "name": svc["name"],
            "command": list(svc.get("command") or []),
            "mode": svc["mode"],
            "strategy": svc["strategy"],
            "proxied": svc["proxied"],
            "port": svc["port"],
            "readiness": svc["readiness"],
            "readiness_path": svc["readiness_path"],
            "ready_after": svc["ready_after"],
            "stop_timeout": int(stop_timeout if stop in (None, "") else stop),
            "env": {**(env or {}), **given, **svc["env"]},
        })
    return out


def database_url(user: str, password: str, host: str, port, name: str) -> str:
    """``postgresql://user:password@host:port/name``, user and password quoted."""
    return f"postgresql://{quote(str(user), safe='')}:{quote(str(password), safe='')}@{host}:{port}/{name}"


def service_secret_env(resolved, url: str, app_secret_env: dict, per_service: dict,
                       webhook_secrets: dict | None = None) -> dict:
    """Each service's secret environment: DATABASE_URL (unless the service's
    own env sets one), then app_secret_env, then its own secrets, then (a
    webhook service) its webhook secret in its ``webhook_secret_env``, the
    one the proxy checks and Telegram was given."""
    out = {}
    for svc in _services(resolved, "service_secret_env"):
        svc = services.resolve(svc)
        base = {} if "DATABASE_URL" in (svc.get("env") or {}) else {"DATABASE_URL": url}
        env = {**base, **(app_secret_env or {}), **((per_service or {}).get(svc["name"]) or {})}
        secret = (webhook_secrets or {}).get(svc["name"])
        if secret and svc["webhook_secret_env"]:
            env[svc["webhook_secret_env"]] = secret
        out[svc["name"]] = env
    return out


def webhook_secrets_given(resolved, secret_env: dict, webhook_secrets: dict) -> dict:
    """The webhook secrets the user gave, by service: ``webhook_secrets``,
    else the one already in the service's secret environment (its
    ``webhook_secret_env``, e.g. a WEBHOOK_SECRET kept in Vault), so that a
    secret the app was given before is the one registered and checked."""
    out = {}
    for svc in _services(resolved, "webhook_secrets_given"):
        svc = services.resolve(svc)
        if svc["mode"] != "webhook":
            continue
        given = (webhook_secrets or {}).get(svc["name"]) or \
            ((secret_env or {}).get(svc["name"]) or {}).get(svc["webhook_secret_env"] or "")
        if given:
            out[svc["name"]] = str(given)
    return out


def container_names(app_services, app: str, release: str) -> dict:
    """``{service: container}`` of a release (an empty dict for no release)."""
    if not release:
        return {}
    return {svc["name"]: services.container_name(app, svc["name"], release)
            for svc in _services(app_services, "container_names")}


def service_containers(app_services, app: str, release: str, host: str = "",
                       poller_releases=None) -> list[dict]:
    """``[{name, container, release, heartbeat, heartbeat_key}]`` of a
    release, as the health_check module takes them (empty for no release).
    On one of several app servers (``host`` given) the heartbeat row is the
    server's own (``<service>@<host>``), and a polling service's (the
    fleet's one poller) may also come from ``poller_releases``: the releases
    other servers still serve during a rolling switch."""
    resolved = {svc["name"]: services.resolve(svc) for svc in _services(app_services, "service_containers")}
    out = []
    for name, container in container_names(app_services, app, release).items():
        svc = resolved[name]
        item = {"name": name, "container": container, "release": release,
                "heartbeat": services.heartbeat_mode(svc.get("heartbeat")),
                "heartbeat_key": services.heartbeat_key(svc, host)}
        if host and svc["mode"] == "polling":
            item["releases"] = [release, *(r for r in poller_releases or [] if r and r != release)]
        out.append(item)
    return out


def upstream_conf(service: str, app: str, release: str, port) -> str:
    """The proxy's upstream file of a service, pointing at the release's
    container (``<app>_<service>_none`` before anything is deployed: the
    proxy answers 502 until then), exactly as the switch module writes it."""
    host = services.container_name(app, service, release or "none")
    return switch.upstream_conf(service, release or "", host, int(port))


def webhook_url(public_url: str, svc: dict) -> str:
    """The URL Telegram posts a webhook service's updates to (empty when
    ``public_url`` is, or the service is no proxied webhook service)."""
    return services.webhook_url(str(public_url or ""), services.resolve(svc))


def webhook_checks(resolved, secret_env: dict, public_url: str) -> list[dict]:
    """What the health check asks Telegram about: each webhook service
    (with the URL it must point at, when the deploy registers it) and each
    polling one (no webhook may be set for it), that has a bot token."""
    out = []
    for svc in _services(resolved, "webhook_checks"):
        svc = services.resolve(svc)
        token = ((secret_env or {}).get(svc["name"]) or {}).get(svc["token_env"])
        if svc["mode"] not in ("webhook", "polling") or not token:
            continue
        url = services.webhook_url(str(public_url or ""), svc) if svc["register_webhook"] else ""
        out.append({"service": svc["name"], "mode": svc["mode"], "token": str(token), "url": url})
    return out


class FilterModule:
    def filters(self):
        return {
            "resolve_services": resolve_services,
            "switch_services": switch_services,
            "database_url": database_url,
            "service_secret_env": service_secret_env,
            "container_names": container_names,
            "service_containers": service_containers,
            "upstream_conf": upstream_conf,
            "webhook_url": webhook_url,
            "webhook_secrets_given": webhook_secrets_given,
            "webhook_checks": webhook_checks,
        }
