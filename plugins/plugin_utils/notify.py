# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Notifications: one message per event to the channels the team configured.

Used on the control node (the ``notify`` action: deploy, rollback, restore,
backups by hand) and, as ``fs_backup/notify.py`` (a link to this file, packed
with the backup program), on the server by the scheduled backups, their
verify and the dead-man check. Standard library only, no relative imports.

Channels (each a dict):

* ``telegram``: ``bot_token``, ``chat_id`` (and ``api_base``, default
  ``https://api.telegram.org``): ``sendMessage`` of the text;
* ``slack``: ``url`` of an incoming webhook (Slack, Mattermost, Rocket.Chat,
  Discord's ``/slack`` endpoint): ``{"text": ...}``;
* ``webhook``: ``url`` (and ``headers``): the event as JSON with its ``text``.

Each may list the ``events`` it wants (default: all). A message that cannot
be delivered is retried (network errors, 429 and 5xx: ``retries`` more times,
waiting 1, 2, 4... s, or what a 429 asks, at most 30 s); it never raises.
What is reported names the channel by its type and host only: a bot token or
a webhook's secret path never reaches a log.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

EVENTS = {
    "deploy_start": "deploy started",
    "deploy_success": "deploy succeeded",
    "deploy_failure": "deploy FAILED",
    "deploy_rolled_back": "deploy FAILED, rolled back automatically",
    "rollback_success": "rollback done",
    "rollback_failure": "rollback FAILED",
    "restore_success": "restore done",
    "restore_failure": "restore FAILED",
    "backup_success": "backup done",
    "backup_failure": "backup FAILED",
    "backup_missing": "backup MISSING",
    "verify_success": "backup verified",
    "verify_failure": "backup verify FAILED",
}
# what a team is told unless it chooses
DEFAULT_EVENTS = sorted(set(EVENTS) - {"backup_success", "verify_success"})
TYPES = ("telegram", "slack", "webhook")
TELEGRAM_API = "https://api.telegram.org"
TELEGRAM_LIMIT = 4096
MAX_WAIT = 30.0
USER_AGENT = "fieldservice-deploy-notify"
# The standard library's opener (the environment's proxies, the system's CAs):
# this file also runs in the backup program on the server, without Ansible,
# so ansible.module_utils.urls is not at hand.
_OPENER = urllib.request.build_opener()


class ConfigError(ValueError):
    """A channel that can never work as written (named by its index and setting)."""


def check_channels(channels, setting: str = "notify_channels") -> list:
    """The channels, checked: a ConfigError names the first wrong setting."""
    if channels is None:
        return []
    if not isinstance(channels, list):
        raise ConfigError(f"{setting} must be a list of channels, not {type(channels).__name__}")
    out = []
    for i, channel in enumerate(channels):
        where = f"{setting}[{i}]"
        if not isinstance(channel, dict):
            raise ConfigError(f"{where} must be a dict with a type (one of {', '.join(TYPES)})")
        kind = channel.get("type")
        if kind not in TYPES:
            raise ConfigError(f"{where}.type is {kind!r}: it must be one of {', '.join(TYPES)}")
        need = ("bot_token", "chat_id") if kind == "telegram" else ("url",)
        for key in need:
            if not str(channel.get(key) or "").strip():
                raise ConfigError(f"{where}.{key} is empty: a {kind} channel needs it")
        url = (channel.get("api_base") or TELEGRAM_API) if kind == "telegram" else channel["url"]
        if urllib.parse.urlsplit(str(url)).scheme not in ("http", "https"):
            raise ConfigError(f"{where}: the address must start with https:// (or http://)")
        events = channel.get("events")
        if events is not None:
            unknown = [e for e in events if e not in EVENTS] if isinstance(events, list) else [events]
            if unknown:
                raise ConfigError(f"{where}.events: unknown {unknown!r}; the events are {', '.join(EVENTS)}")
        headers = channel.get("headers")
        if headers is not None and not isinstance(headers, dict):
            raise ConfigError(f"{where}.headers must be a dict")
        out.append(channel)
    return out


def check_events(events, setting: str = "notify_events") -> list:
    if not isinstance(events, list):
        raise ConfigError(f"{setting} must be a list of events")
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ConfigError(f"{setting}: unknown {unknown!r}; the events are {', '.join(EVENTS)}")
    return events


def _seconds(value) -> str:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return ""
    if seconds >= 120:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds:.1f} s"


def text_of(event: dict) -> str:
    """The message a person reads: what, where, which release, who, how long,
    why (on failure) and the log's last lines."""
    name = event.get("event", "")
    what = EVENTS.get(name, name)
    bad = name.endswith(("failure", "missing", "rolled_back"))
    where = " ".join(str(x) for x in (event.get("app"), event.get("server")) if x)
    lines = [f"{'❌' if bad else ('🚀' if name.endswith('start') else '✅')} {where}: {what}"]
    release = str(event.get("release") or "")
    previous = str(event.get("previous") or "")
    if release:
        was = f" (was {previous})" if previous and previous != release else ""
        lines.append(f"release: {release}{was}")
    if event.get("who"):
        lines.append(f"by: {event['who']}")
    took = _seconds(event.get("seconds"))
    if took:
        lines.append(f"took: {took}")
    if event.get("reason"):
        lines.append(f"reason: {event['reason']}")
    tail = [str(x) for x in event.get("log_tail") or []]
    if tail:
        lines.append("last lines of the log:")
        lines.extend(tail)
    return "\n".join(lines)


def _where(channel: dict) -> str:
    """The channel as it may be shown: its type and host, never a token or a path."""
    if channel["type"] == "telegram":
        url = channel.get("api_base") or TELEGRAM_API
    else:
        url = channel["url"]
    return f"{channel['type']} ({urllib.parse.urlsplit(str(url)).hostname or '?'})"


def _request(channel: dict, event: dict, text: str) -> urllib.request.Request:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    if channel["type"] == "telegram":
        base = str(channel.get("api_base") or TELEGRAM_API).rstrip("/")
        url = f"{base}/bot{channel['bot_token']}/sendMessage"
        if len(text) > TELEGRAM_LIMIT:
            text = text[: TELEGRAM_LIMIT - 2] + " …"
        body = {"chat_id": channel["chat_id"], "text": text, "disable_web_page_preview": True}
    elif channel["type"] == "slack":
        url, body = channel["url"], {"text": text}
    else:
        url, body = channel["url"], dict(event, text=text)
        headers.update({str(k): str(v) for k, v in (channel.get("headers") or {}).items()})
    return urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    """Seconds a 429 asks to wait (Telegram's parameters.retry_after, or Retry-After)."""
    try:
        body = json.loads(exc.read(4096) or b"{}")
        value = (body.get("parameters") or {}).get("retry_after")
        if value is not None:
            return float(value)
    except (ValueError, AttributeError, OSError):
        pass
    try:
        return float(exc.headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def deliver(channel: dict, event: dict, text: str, retries: int = 3, timeout: float = 10.0,
            sleep=time.sleep) -> dict:
    """Send one message to one channel: {channel, ok, attempts, error}."""
    out = {"channel": _where(channel), "ok": False, "attempts": 0, "error": ""}
    wait = 1.0
    for attempt in range(1, max(0, retries) + 2):
        out["attempts"] = attempt
        again = True
        try:
            with _OPENER.open(_request(channel, event, text), timeout=timeout) as response:
                response.read(4096)
            out.update(ok=True, error="")
            return out
        except urllib.error.HTTPError as exc:
            out["error"] = f"HTTP {exc.code}"
            again = exc.code == 429 or exc.code >= 500
            if exc.code == 429:
                asked = _retry_after(exc)
                if asked is not None:
                    wait = asked
        except (OSError, ValueError) as exc:  # refused, timed out, DNS, TLS
            reason = getattr(exc, "reason", exc)
            out["error"] = f"{type(reason).__name__}: {reason}"
        if not again or attempt > retries:
            break
        sleep(min(wait, MAX_WAIT))
        wait *= 2
    # never a token: the error names the status or the exception, not the address
    for secret in (str(channel.get("bot_token") or ""), str(channel.get("url") or "")):
        if secret:
            out["error"] = out["error"].replace(secret, "***")
    return out


def send(channels: list, event: dict, events: list | None = None, retries: int = 3, timeout: float = 10.0,
         sleep=time.sleep) -> list:
    """The event to every channel that wants it (``events``: the team's
    choice, default DEFAULT_EVENTS; a channel's own ``events`` wins). A list
    of what happened per channel; it never raises."""
    name = event.get("event", "")
    wanted = DEFAULT_EVENTS if events is None else events
    text = text_of(event)
    results = []
    for channel in channels or []:
        if name not in (channel.get("events") if channel.get("events") is not None else wanted):
            continue
        try:
            results.append(deliver(channel, event, text, retries=retries, timeout=timeout, sleep=sleep))
        except Exception as exc:  # noqa: BLE001 - a notification never fails what it reports
            results.append({"channel": _where(channel), "ok": False, "attempts": 0,
                            "error": type(exc).__name__})
    return results
