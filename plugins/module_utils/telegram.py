# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Bot API calls the deploy makes itself: a webhook's secret, its
registration (``setWebhook`` only when it is missing or differs) and what
``getWebhookInfo`` says about it (HTTP through ansible's open_url); the modules telegram_webhook
and health_check are thin shells around it, and the tests run it against the
bundled stand-in Bot API.

The secret Telegram sends back in ``X-Telegram-Bot-Api-Secret-Token`` cannot
be read back from Telegram, so what was registered is remembered on the
server as a fingerprint (a SHA-256 of the URL, the secret, the update types
and the certificate) beside the secret: a change of any of them registers
again, nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import urllib.error
import uuid

from ansible.module_utils.urls import open_url

# What Telegram accepts as a secret_token: 1-256 characters A-Z a-z 0-9 _ -.
SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
SECRET_BYTES = 32  # token_urlsafe: 43 characters of that alphabet
DEFAULT_TIMEOUT = 10.0


class TelegramError(Exception):
    """A Bot API call that failed: no answer, or ``ok: false``."""

    def __init__(self, method: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{method}: {message}")
        self.method = method
        self.code = code


def redact(text: str, token: str) -> str:
    """``text`` with the bot token (it is part of every Bot API URL) masked."""
    return text.replace(token, "<token>") if token else text


def _multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = []
    for key, value in fields.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
                   + str(value).encode() + b"\r\n")
    for key, (filename, data) in files.items():
        out.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


def call(base: str, token: str, method: str, params: dict | None = None, files: dict | None = None,
         timeout: float = DEFAULT_TIMEOUT):
    """``result`` of a Bot API method; raises TelegramError (token redacted)."""
    url = f"{base.rstrip('/')}/bot{token}/{method}"
    fields = {k: json.dumps(v) if isinstance(v, (list, dict, bool)) else v
              for k, v in (params or {}).items() if v is not None}
    if files:
        body, ctype = _multipart(fields, files)
    else:
        body, ctype = json.dumps({k: v for k, v in (params or {}).items() if v is not None}).encode(), \
            "application/json"
    try:
        with open_url(url, data=body, method="POST", headers={"Content-Type": ctype}, timeout=timeout,
                      follow_redirects="none") as resp:
            payload = json.loads(resp.read().decode("utf-8") or "{}")
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read().decode("utf-8") or "{}")
        except (ValueError, OSError):
            payload = {"ok": False, "description": f"HTTP {exc.code} {exc.reason}"}
        payload.setdefault("error_code", exc.code)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TelegramError(method, redact(f"no answer from {base}: {reason}", token)) from None
    if not payload.get("ok"):
        raise TelegramError(method, redact(str(payload.get("description") or payload), token),
                            payload.get("error_code"))
    return payload.get("result")


def valid_secret(secret: str) -> bool:
    return bool(SECRET_RE.match(secret or ""))


def _read_kept(path: str) -> str:
    """What the deploy kept in a small file on the server ('' when there is none)."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip()
    except FileNotFoundError:
        return ""


def ensure_secret(directory: str, service: str, given: str = "",
                  check_mode: bool = False) -> tuple[str, bool]:
    """(secret, changed): ``given`` (from Vault) when set, else the one kept
    in ``<directory>/<service>.secret`` (0600), made once when missing."""
    if given:
        if not valid_secret(given):
            raise ValueError(f"the webhook secret of {service} (webhook_secrets.{service}) must be 1-256 "
                             "characters A-Z, a-z, 0-9, _ or - (what Telegram accepts as secret_token)")
        return given, False
    path = os.path.join(directory, f"{service}.secret")
    secret = _read_kept(path)
    if secret:
        if not valid_secret(secret):
            raise ValueError(f"{path} does not hold a valid webhook secret (1-256 characters A-Z, a-z, "
                             "0-9, _ or -): fix or remove it (a new one is then made and registered)")
        return secret, False
    secret = secrets.token_urlsafe(SECRET_BYTES)
    if check_mode:
        return secret, True
    # made once: two runs at once (the app servers of a fleet) keep the first
    if not write_private(path, secret + "\n", exclusive=True):
        return ensure_secret(directory, service, given, check_mode)[0], False
    return secret, True


def write_private(path: str, text: str, exclusive: bool = False) -> bool:
    """Write ``path`` (0600, its folder 0700) atomically; with ``exclusive``
    only when it does not exist yet (False when it did: nothing written)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def fingerprint(url: str, secret: str, allowed_updates, certificate: bytes | None,
                max_connections: int | None) -> str:
    """What a registration was made with, as a hash (the secret is not kept in it)."""
    h = hashlib.sha256()
    updates = sorted(allowed_updates) if allowed_updates is not None else None
    doc = {"url": url, "secret": secret, "allowed_updates": updates, "max_connections": max_connections}
    h.update(json.dumps(doc, sort_keys=True).encode())
    h.update(b"\0")
    h.update(certificate or b"")
    return h.hexdigest()


def differences(info: dict, url: str, allowed_updates, certificate: bool, max_connections: int | None,
                stored: str, wanted: str) -> list[str]:
    """Why the webhook must be registered again; empty when it is as wanted."""
    out = []
    have = str(info.get("url") or "")
    if not have:
        return ["no webhook is set"]
    if have != url:
        out.append(f"it points at {have}")
    if allowed_updates is not None and sorted(info.get("allowed_updates") or []) != sorted(allowed_updates):
        out.append("its update types differ")
    if bool(info.get("has_custom_certificate")) != bool(certificate):
        out.append("its certificate differs")
    if max_connections is not None and info.get("max_connections") not in (None, max_connections):
        out.append("its max_connections differs")
    if not out and stored != wanted:
        out.append("its secret or certificate changed since it was registered")
    return out


def ensure_webhook(base: str, token: str, service: str, url: str, secret: str, directory: str,
                   allowed_updates=None, certificate: bytes | None = None, max_connections: int | None = None,
                   check_mode: bool = False, api=call) -> dict:
    """Register ``url`` with ``secret`` when the webhook is missing or
    differs; pending updates are never dropped. Returns {changed, reasons,
    url, pending_update_count}."""
    info = api(base, token, "getWebhookInfo")
    mark = os.path.join(directory, f"{service}.registered")
    stored = _read_kept(mark)
    wanted = fingerprint(url, secret, allowed_updates, certificate, max_connections)
    reasons = differences(info, url, allowed_updates, bool(certificate), max_connections, stored, wanted)
    result = {"changed": bool(reasons), "reasons": reasons, "url": url,
              "pending_update_count": int(info.get("pending_update_count") or 0)}
    if not reasons or check_mode:
        return result
    params = {"url": url, "secret_token": secret, "drop_pending_updates": False,
              "allowed_updates": list(allowed_updates) if allowed_updates is not None else None,
              "max_connections": max_connections}
    files = {"certificate": ("certificate.pem", certificate)} if certificate else None
    api(base, token, "setWebhook", params, files)
    write_private(mark, wanted + "\n")
    return result


def webhook_problems(info: dict, mode: str, url: str, since: float, first_pending: int | None = None,
                     max_pending: int = 100) -> list[str]:
    """What getWebhookInfo says is wrong with a service's webhook.

    * a webhook service: a URL other than ``url``; a delivery error dated at
      or after ``since`` (the check's start: older ones may be from before
      the release served); more than ``max_pending`` updates waiting and
      more than at the check's first look (``first_pending``);
    * a polling service: any webhook set (its getUpdates fails with 409).
    """
    have = str(info.get("url") or "")
    pending = int(info.get("pending_update_count") or 0)
    if mode == "polling":
        return [f"a webhook is set ({have}) so its getUpdates fails with 409 Conflict: delete it "
                "(deleteWebhook) or make the service a webhook one"] if have else []
    if mode != "webhook" or not url:
        return []
    out = []
    if have != url:
        out.append(f"its webhook points at {have or 'nothing'}, not {url} (run the deploy again to "
                   "register it)")
    error_date = info.get("last_error_date")
    if error_date and float(error_date) >= since:
        out.append(f"Telegram cannot deliver to it: {info.get('last_error_message') or 'unknown error'}")
    if pending > max_pending and (first_pending is None or pending > first_pending):
        out.append(f"{pending} updates wait for it and their number grows (health_check_webhook_max_pending "
                   f"is {max_pending})")
    return out
