from __future__ import annotations

import subprocess
import sys

import pytest
from field_service import __version__
from field_service.config import ConfigError, load_config
from field_service.db import sqlalchemy_url
from fs_support import PROJECT

BASE = {"DATABASE_URL": "postgresql://u:p@db:5432/fs", "BOT_TOKEN": "1:abc"}


def test_version_is_read_from_file() -> None:
    assert __version__ == (PROJECT / "field_service" / "VERSION").read_text().strip()
    assert __version__ == "1.0.0"


def test_defaults() -> None:
    cfg = load_config("master_bot", "polling", BASE)
    assert cfg.service_name == "master_bot" and cfg.bot_mode == "polling"
    assert cfg.telegram_api_base == "https://api.telegram.org"
    assert cfg.http_port == 8080 and cfg.heartbeat_interval == 5
    assert cfg.app_release == "dev" and cfg.shutdown_timeout == 10
    assert 1 <= cfg.poll_timeout <= 2 and cfg.webhook_secret == ""
    assert cfg.poller_lock_name == "field_service:poller:master_bot"
    assert cfg.heartbeat_key == "master_bot"
    fleet = load_config("admin_bot", "webhook", {**BASE, "HEARTBEAT_KEY": "admin_bot@app2"})
    assert fleet.heartbeat_key == "admin_bot@app2" and fleet.service_name == "admin_bot"
    assert load_config("admin_bot", "webhook", BASE).bot_mode == "webhook"


def test_overrides() -> None:
    env = {**BASE, "BOT_MODE": "POLLING", "HTTP_PORT": "9000", "HEARTBEAT_INTERVAL": "0.5",
           "SERVICE_NAME": "x", "APP_RELEASE": "20260101-abc", "SHUTDOWN_TIMEOUT": "3",
           "POLL_TIMEOUT": "2", "TELEGRAM_API_BASE": "http://fake:8081/", "WEBHOOK_SECRET": "s"}
    cfg = load_config("admin_bot", "webhook", env)
    assert (cfg.bot_mode, cfg.http_port, cfg.heartbeat_interval, cfg.service_name) == (
        "polling", 9000, 0.5, "x")
    assert cfg.telegram_api_base == "http://fake:8081"
    assert (cfg.app_release, cfg.shutdown_timeout, cfg.poll_timeout) == ("20260101-abc", 3, 2)


@pytest.mark.parametrize("env, message", [
    ({"BOT_TOKEN": "1:a"}, "DATABASE_URL is required"),
    ({"DATABASE_URL": "postgresql://x/y"}, "BOT_TOKEN is required"),
    ({**BASE, "DATABASE_URL": "mysql://x/y"}, "DATABASE_URL must look like"),
    ({**BASE, "BOT_MODE": "push"}, "BOT_MODE must be one of"),
    ({**BASE, "HTTP_PORT": "http"}, "HTTP_PORT must be a number"),
    ({**BASE, "HTTP_PORT": "70000"}, "HTTP_PORT must be <= 65535"),
    ({**BASE, "HEARTBEAT_INTERVAL": "0"}, "HEARTBEAT_INTERVAL must be > 0"),
    ({**BASE, "POLL_TIMEOUT": "-1"}, "POLL_TIMEOUT must be >= 0"),
])
def test_invalid(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("master_bot", "polling", env)


def test_sqlalchemy_url() -> None:
    assert sqlalchemy_url("postgresql://u:p@h:1/d") == "postgresql+psycopg://u:p@h:1/d"
    assert sqlalchemy_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"


@pytest.mark.parametrize("bot", ["admin_bot", "master_bot"])
def test_missing_config_logs_critical_and_exits_2(bot: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", f"field_service.bots.{bot}.main"], cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert " CRITICAL field_service: invalid configuration: DATABASE_URL is required" in proc.stdout
    assert proc.stderr == ""
