"""Configuration from environment variables (see README.md for the contract)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from field_service import __version__

MODES = ("polling", "webhook")


class ConfigError(Exception):
    """The configuration is missing or invalid: the bot cannot start."""


@dataclass(frozen=True)
class Config:
    service_name: str
    bot_mode: str  # "polling" | "webhook"
    database_url: str
    bot_token: str
    telegram_api_base: str
    http_port: int
    heartbeat_interval: float
    app_release: str
    shutdown_timeout: float
    poll_timeout: int
    webhook_secret: str
    db_pool_size: int = 10
    version: str = __version__
    # The row of ``heartbeats`` this container writes: its service's name, or
    # what the deploy says on one of several servers (<service>@<host>).
    heartbeat_key: str = ""

    @property
    def poller_lock_name(self) -> str:
        """Key hashed (hashtext) into the poller's advisory lock id."""
        return f"field_service:poller:{self.service_name}"


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError(f"{name} is required but not set")
    return default


def _number(env: Mapping[str, str], name: str, default: str, kind: type, minimum: float,
            exclusive: bool = False) -> float:
    raw = _get(env, name, default)
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum or (exclusive and value == minimum):
        rel = ">" if exclusive else ">="
        raise ConfigError(f"{name} must be {rel} {minimum}, got {raw!r}")
    return value


def load_config(default_service: str, default_mode: str,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the configuration; raise ConfigError when unusable."""
    env = os.environ if environ is None else environ
    database_url = _get(env, "DATABASE_URL")
    if not database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("DATABASE_URL must look like postgresql://user:pass@host:port/db")
    bot_mode = _get(env, "BOT_MODE", default_mode).lower()
    if bot_mode not in MODES:
        raise ConfigError(f"BOT_MODE must be one of {', '.join(MODES)}, got {bot_mode!r}")
    port = int(_number(env, "HTTP_PORT", "8080", int, 1))
    if port > 65535:
        raise ConfigError(f"HTTP_PORT must be <= 65535, got {port}")
    service_name = _get(env, "SERVICE_NAME", default_service)
    return Config(
        service_name=service_name,
        bot_mode=bot_mode,
        database_url=database_url,
        bot_token=_get(env, "BOT_TOKEN"),
        telegram_api_base=_get(env, "TELEGRAM_API_BASE", "https://api.telegram.org").rstrip("/"),
        http_port=port,
        heartbeat_interval=_number(env, "HEARTBEAT_INTERVAL", "5", float, 0, exclusive=True),
        app_release=_get(env, "APP_RELEASE", "dev"),
        shutdown_timeout=_number(env, "SHUTDOWN_TIMEOUT", "10", float, 0, exclusive=True),
        poll_timeout=int(_number(env, "POLL_TIMEOUT", "1", int, 0)),
        webhook_secret=env.get("WEBHOOK_SECRET", ""),
        db_pool_size=int(_number(env, "DB_POOL_SIZE", "10", int, 1)),
        heartbeat_key=_get(env, "HEARTBEAT_KEY", service_name),
    )
