"""The services' one set of defaults (plugins/module_utils/services.py), as the
roles see them (the filter plugins) and as the switch module sees them."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.fieldservice.deploy.plugins.filter import services as filters
from ansible_collections.fieldservice.deploy.plugins.module_utils import services
from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import Service, upstream_conf

APP_SERVICES = [
    {"name": "admin_bot", "command": ["python", "-m", "a"], "mode": "webhook",
     "env": {"BOT_MODE": "webhook"}},
    {"name": "master_bot", "command": ["python", "-m", "m"], "mode": "polling", "single_poller": True},
    {"name": "worker", "command": ["w"]},
    {"name": "stock_bot", "command": ["s"], "mode": "polling", "readiness": "running", "ready_after": 2,
     "heartbeat": False},
    {"name": "api", "command": ["api"], "mode": "http", "port": 9000, "readiness_path": "",
     "stop_timeout": 5},
    {"name": "reports", "command": ["r"], "strategy": "recreate", "public_path": "/reports/"},
]


def test_the_roles_and_the_switch_module_default_a_service_alike():
    resolved = {s["name"]: s for s in filters.resolve_services(APP_SERVICES)}
    for svc in APP_SERVICES:
        # what the switch module makes of the bare service (no strategy given)
        module_view = Service.from_dict({k: v for k, v in svc.items() if k != "public_path"})
        assert module_view.strategy == resolved[svc["name"]]["strategy"], svc["name"]
        assert module_view.port == resolved[svc["name"]]["port"], svc["name"]
        assert module_view.readiness_path == resolved[svc["name"]]["readiness_path"], svc["name"]
    # polling: never blue_green; handoff only when the app guarantees a single
    # poller, else recreate (two pollers at once: Telegram answers 409)
    assert resolved["master_bot"]["strategy"] == "handoff"
    assert resolved["worker"]["strategy"] == "recreate" and resolved["worker"]["mode"] == "polling"
    assert resolved["stock_bot"]["strategy"] == "recreate"
    assert resolved["admin_bot"]["strategy"] == "blue_green" and resolved["api"]["strategy"] == "blue_green"
    assert resolved["reports"]["strategy"] == "recreate"


def test_resolved_services_have_every_key():
    resolved = {s["name"]: s for s in filters.resolve_services(APP_SERVICES)}
    assert resolved["admin_bot"]["public_path"] == "/admin_bot/" and resolved["admin_bot"]["proxied"]
    assert resolved["master_bot"]["public_path"] == "" and not resolved["master_bot"]["proxied"]
    assert resolved["reports"]["proxied"] and resolved["reports"]["public_path"] == "/reports/"
    assert resolved["api"]["port"] == 9000 and resolved["api"]["readiness_path"] == ""
    assert resolved["api"]["readiness"] == "auto"  # "" no longer asks for a path
    assert resolved["worker"]["port"] == 8080 and resolved["worker"]["readiness_path"] == ""
    assert resolved["worker"]["readiness"] == "auto" and resolved["worker"]["heartbeat"] == "auto"
    assert resolved["stock_bot"]["readiness"] == "running" and resolved["stock_bot"]["ready_after"] == 2.0
    assert resolved["stock_bot"]["heartbeat"] == "off"
    assert resolved["worker"]["env"] == {}
    # the input is not changed
    assert "strategy" not in APP_SERVICES[0]
    with pytest.raises(AnsibleFilterError):
        filters.resolve_services([{"command": ["x"]}])


def test_what_the_switch_module_is_given():
    given = {s["name"]: s for s in filters.switch_services(
        filters.resolve_services(APP_SERVICES), "r2", {"LOG": "1", "BOT_MODE": "app"}, 20)}
    assert set(given["admin_bot"]) == {"name", "command", "mode", "strategy", "proxied", "port",
                                       "readiness", "readiness_path", "ready_after", "stop_timeout", "env"}
    # the app's env, then the release, then the service's own (which wins)
    assert given["admin_bot"]["env"] == {"LOG": "1", "BOT_MODE": "webhook", "APP_RELEASE": "r2",
                                         "SERVICE_NAME": "admin_bot"}
    assert given["api"]["stop_timeout"] == 5 and given["worker"]["stop_timeout"] == 20
    assert all(Service.from_dict(s) for s in given.values())


def test_secret_env_and_database_url():
    url = filters.database_url("fs user", "p@ss/w:rd", "db", 5432, "field_service")
    assert url == "postgresql://fs%20user:p%40ss%2Fw%3Ard@db:5432/field_service"
    secret = filters.service_secret_env(
        [{"name": "a"}, {"name": "b", "env": {"DATABASE_URL": "own"}}], url,
        {"SENTRY_DSN": "x"}, {"a": {"BOT_TOKEN": "t", "SENTRY_DSN": "y"}})
    assert secret == {"a": {"DATABASE_URL": url, "SENTRY_DSN": "y", "BOT_TOKEN": "t"},
                      "b": {"SENTRY_DSN": "x"}}


def test_container_names_have_one_rule():
    assert filters.container_names(APP_SERVICES[:2], "fs", "r1") == {
        "admin_bot": services.container_name("fs", "admin_bot", "r1"), "master_bot": "fs_master_bot_r1"}
    assert filters.container_names(APP_SERVICES, "fs", "") == {}
    assert filters.service_containers(APP_SERVICES[:1], "fs", "r1") == [
        {"name": "admin_bot", "container": "fs_admin_bot_r1", "release": "r1", "heartbeat": "auto",
         "heartbeat_key": "admin_bot"}]
    assert filters.service_containers(APP_SERVICES, "fs", "") == []


def test_on_a_fleet_each_server_has_its_heartbeat_row_and_the_poller_one():
    # one server: nothing new in the environment (a no-op deploy replaces nothing)
    resolved = filters.resolve_services(APP_SERVICES)
    one = {s["name"]: s for s in filters.switch_services(resolved, "r2", {}, 20)}
    assert all("HEARTBEAT_KEY" not in s["env"] for s in one.values())
    fleet = {s["name"]: s for s in filters.switch_services(resolved, "r2", {}, 20, "app2")}
    assert fleet["admin_bot"]["env"]["HEARTBEAT_KEY"] == "admin_bot@app2"
    assert fleet["api"]["env"]["HEARTBEAT_KEY"] == "api@app2"
    # pollers (the fleet has one of each) keep the service's row
    assert "HEARTBEAT_KEY" not in fleet["master_bot"]["env"] and "HEARTBEAT_KEY" not in fleet["worker"]["env"]
    checked = {s["name"]: s
               for s in filters.service_containers(APP_SERVICES, "fs", "r2", "app2", ["r2", "r1", ""])}
    assert checked["admin_bot"]["heartbeat_key"] == "admin_bot@app2"
    assert "releases" not in checked["admin_bot"]
    assert checked["master_bot"]["heartbeat_key"] == "master_bot"
    assert checked["master_bot"]["releases"] == ["r2", "r1"]
    # the switch writes the row the health check reads
    for name, svc in fleet.items():
        assert svc["env"].get("HEARTBEAT_KEY", name) == checked[name]["heartbeat_key"]


def test_the_first_upstream_is_what_a_switch_writes():
    assert filters.upstream_conf("admin_bot", "fs", "r1", "8080") == upstream_conf(
        "admin_bot", "r1", "fs_admin_bot_r1", 8080)
    empty = filters.upstream_conf("admin_bot", "fs", "", 8080)
    assert "nothing deployed yet" in empty and '"fs_admin_bot_none:8080"' in empty


def test_readiness_and_heartbeat_settings():
    assert services.readiness_of({"name": "a"}) == ("auto", "")
    assert services.readiness_of({"name": "a", "readiness_path": "/health"}) == ("http", "/health")
    assert services.readiness_of({"name": "a", "readiness": "http"}) == ("http", "/ready")
    assert services.readiness_of({"name": "a", "readiness": "tcp", "readiness_path": "/x"}) == ("tcp", "")
    with pytest.raises(ValueError, match="docs/zero-downtime.md#readiness"):
        services.readiness_of({"name": "a", "readiness": "ping"})
    assert [services.heartbeat_mode(v) for v in (None, True, False, "auto", "yes", "off")] == [
        "auto", "required", "off", "auto", "required", "off"]
    with pytest.raises(ValueError, match="true, false or auto"):
        services.heartbeat_mode("sometimes")


def test_webhook_settings_and_url():
    resolved = {s["name"]: s for s in filters.resolve_services(APP_SERVICES + [
        {"name": "shop_bot", "command": ["s"], "mode": "webhook", "public_path": "/", "webhook_path": "/tg",
         "token_env": "TG_TOKEN", "webhook_secret_env": "", "allowed_updates": ["message"],
         "register_webhook": False}])}
    admin, shop = resolved["admin_bot"], resolved["shop_bot"]
    assert (admin["webhook_path"], admin["token_env"], admin["webhook_secret_env"]) == \
        ("/webhook", "BOT_TOKEN", "WEBHOOK_SECRET")
    assert admin["register_webhook"] and admin["allowed_updates"] is None
    # what is not a webhook service has no webhook settings
    assert resolved["master_bot"]["webhook_path"] == "" and not resolved["master_bot"]["register_webhook"]
    assert resolved["api"]["webhook_secret_env"] == ""
    assert filters.webhook_url("https://bot.example.com/", admin) == "https://bot.example.com/admin_bot/webhook"
    assert filters.webhook_url("https://bot.example.com", shop) == "https://bot.example.com/tg"
    assert filters.webhook_url("", admin) == ""  # no public URL: nothing registered
    assert filters.webhook_url("https://bot.example.com", resolved["master_bot"]) == ""
    assert shop["allowed_updates"] == ["message"] and not shop["register_webhook"]


def test_a_webhook_service_is_given_the_secret_the_proxy_checks():
    resolved = filters.resolve_services(APP_SERVICES)
    secret_env = filters.service_secret_env(
        resolved, "postgresql://x", {}, {"admin_bot": {"BOT_TOKEN": "1:a", "WEBHOOK_SECRET": "vault-one"},
                                         "master_bot": {"BOT_TOKEN": "2:m"}}, {"admin_bot": "s3cret"})
    # the secret the proxy checks and Telegram was given wins over an old one
    assert secret_env["admin_bot"]["WEBHOOK_SECRET"] == "s3cret"
    assert "WEBHOOK_SECRET" not in secret_env["master_bot"]
    # a WEBHOOK_SECRET already kept in Vault is the one taken (then registered and checked)
    old = filters.service_secret_env(resolved, "postgresql://x", {},
                                     {"admin_bot": {"WEBHOOK_SECRET": "vault-one"}})
    assert filters.webhook_secrets_given(resolved, old, {}) == {"admin_bot": "vault-one"}
    assert filters.webhook_secrets_given(resolved, old, {"admin_bot": "given"}) == {"admin_bot": "given"}
    assert filters.webhook_secrets_given(resolved, filters.service_secret_env(
        resolved, "postgresql://x", {}, {}), {}) == {}


def test_what_the_health_check_asks_telegram_about():
    resolved = filters.resolve_services(APP_SERVICES)
    secret_env = filters.service_secret_env(resolved, "postgresql://x", {}, {
        "admin_bot": {"BOT_TOKEN": "1:a"}, "master_bot": {"BOT_TOKEN": "2:m"}})
    checks = filters.webhook_checks(resolved, secret_env, "https://bot.example.com")
    # only bots with a token; http and tokenless services are not asked about
    assert checks == [
        {"service": "admin_bot", "mode": "webhook", "token": "1:a",
         "url": "https://bot.example.com/admin_bot/webhook"},
        {"service": "master_bot", "mode": "polling", "token": "2:m", "url": ""},
    ]
    # no public URL: the webhook's URL is not checked (nobody registered it here)
    assert filters.webhook_checks(resolved, secret_env, "")[0]["url"] == ""
