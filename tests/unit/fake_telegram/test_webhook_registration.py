"""The deploy's own Bot API calls (plugins/module_utils/telegram.py), against
the bundled stand-in Bot API: the webhook secret, the registration made only
when something differs, and what getWebhookInfo tells the health check."""

from __future__ import annotations

import os
import stat
import time

import pytest
from fake_support import Client, FakeTelegram
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.fieldservice.deploy.plugins.module_utils import telegram

TOKEN = "100001:demo-admin-token"
# the stand-in really posts to it: a closed loopback port (nothing leaves the machine)
URL = "http://127.0.0.1:9/admin_bot/webhook"


def test_a_secret_is_made_once_and_kept_private(tmp_path):
    folder = tmp_path / "webhooks"
    secret, made = telegram.ensure_secret(str(folder), "admin_bot")
    assert made and telegram.valid_secret(secret) and len(secret) >= 40
    path = folder / "admin_bot.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert telegram.ensure_secret(str(folder), "admin_bot") == (secret, False)  # the same next time
    # one from Vault wins, and is not written
    assert telegram.ensure_secret(str(folder), "other", "from-vault_1") == ("from-vault_1", False)
    assert not (folder / "other.secret").exists()
    with pytest.raises(ValueError, match=r"webhook_secrets\.other"):
        telegram.ensure_secret(str(folder), "other", "has spaces")
    # check mode makes one up but writes nothing
    _, made = telegram.ensure_secret(str(folder), "third", check_mode=True)
    assert made and not (folder / "third.secret").exists()
    path.write_text("not valid!\n")
    with pytest.raises(ValueError, match="fix or remove it"):
        telegram.ensure_secret(str(folder), "admin_bot")


def test_the_webhook_is_registered_only_when_it_differs(server: FakeTelegram, client: Client, tmp_path):
    base, folder = server.url, str(tmp_path)
    ids = client.queue(TOKEN, "sent before the registration")
    first = telegram.ensure_webhook(base, TOKEN, "admin_bot", URL, "secret-1", folder,
                                    allowed_updates=["message", "callback_query"])
    assert first["changed"] and first["reasons"] == ["no webhook is set"]
    stats = client.stats(TOKEN)
    assert stats["webhook_url"] == URL and stats["webhook_secret_set"]
    assert stats["webhook_allowed_updates"] == ["message", "callback_query"]
    assert stats["pending_ids"] == ids  # pending updates are never dropped
    assert stat.S_IMODE(os.stat(tmp_path / "admin_bot.registered").st_mode) == 0o600

    # the same again: one getWebhookInfo, no setWebhook
    again = telegram.ensure_webhook(base, TOKEN, "admin_bot", URL, "secret-1", folder,
                                    allowed_updates=["callback_query", "message"])
    assert not again["changed"] and client.stats(TOKEN)["webhook_registrations"] == 1

    # a new secret (Telegram never tells the old one back): registered again
    rotated = telegram.ensure_webhook(base, TOKEN, "admin_bot", URL, "secret-2", folder,
                                      allowed_updates=["message", "callback_query"])
    assert rotated["changed"] and "secret" in rotated["reasons"][0]

    # someone pointed it elsewhere: put back
    client.api(TOKEN, "setWebhook", url="http://127.0.0.1:9/elsewhere")
    back = telegram.ensure_webhook(base, TOKEN, "admin_bot", URL, "secret-2", folder,
                                   allowed_updates=["message", "callback_query"])
    assert back["reasons"] == ["it points at http://127.0.0.1:9/elsewhere"]
    assert client.stats(TOKEN)["webhook_url"] == URL and client.stats(TOKEN)["webhook_registrations"] == 4

    # check mode says why, and registers nothing
    client.api(TOKEN, "deleteWebhook")
    dry = telegram.ensure_webhook(base, TOKEN, "admin_bot", URL, "secret-2", folder, check_mode=True)
    assert dry["changed"] and client.stats(TOKEN)["webhook_url"] == ""


def test_a_self_signed_certificate_is_uploaded(server: FakeTelegram, client: Client, tmp_path):
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    telegram.ensure_webhook(server.url, TOKEN, "admin_bot", URL, "s", str(tmp_path), certificate=pem)
    info = telegram.call(server.url, TOKEN, "getWebhookInfo")
    assert info["has_custom_certificate"] is True and info["url"] == URL
    assert server._tokens[TOKEN].webhook["certificate"] == pem
    assert not telegram.ensure_webhook(server.url, TOKEN, "admin_bot", URL, "s", str(tmp_path),
                                       certificate=pem)["changed"]


def test_errors_never_show_the_token(server: FakeTelegram):
    with pytest.raises(telegram.TelegramError) as bad:
        telegram.call(server.url, TOKEN, "setWebhook", {"url": "ftp://x", "secret_token": "ok"})
    assert "invalid URL" in str(bad.value) and TOKEN not in str(bad.value) and bad.value.code == 400
    with pytest.raises(telegram.TelegramError, match="unallowed characters"):
        telegram.call(server.url, TOKEN, "setWebhook", {"url": URL, "secret_token": "no spaces"})
    with pytest.raises(telegram.TelegramError) as gone:
        telegram.call("http://127.0.0.1:9", TOKEN, "getWebhookInfo", timeout=2)
    assert "no answer from http://127.0.0.1:9" in str(gone.value) and TOKEN not in str(gone.value)


def test_what_the_health_check_makes_of_getwebhookinfo(server: FakeTelegram, client: Client):
    started = time.time() - 1
    info = telegram.call(server.url, TOKEN, "getWebhookInfo")
    assert telegram.webhook_problems(info, "polling", "", started) == []
    assert "nothing" in telegram.webhook_problems(info, "webhook", URL, started)[0]
    # a webhook nobody answers: Telegram's error, dated after the check began
    client.api(TOKEN, "setWebhook", url="http://127.0.0.1:9/hook")
    client.queue(TOKEN, "hello")
    deadline = time.time() + 10
    while "last_error_message" not in info and time.time() < deadline:
        time.sleep(0.1)
        info = telegram.call(server.url, TOKEN, "getWebhookInfo")
    problems = telegram.webhook_problems(info, "webhook", "http://127.0.0.1:9/hook", started)
    assert problems and problems[0].startswith("Telegram cannot deliver to it: Connection failed")
    # the same error from before the check is not held against the release
    assert telegram.webhook_problems(info, "webhook", "http://127.0.0.1:9/hook", time.time() + 5) == []
    # for a polling bot, any webhook is a failure (its getUpdates gets 409)
    assert "409" in telegram.webhook_problems(info, "polling", "", started)[0]


@given(pending=st.integers(0, 1000), first=st.one_of(st.none(), st.integers(0, 1000)),
       limit=st.integers(0, 500))
def test_a_backlog_fails_only_when_large_and_growing(pending, first, limit):
    info = {"url": URL, "pending_update_count": pending}
    problems = telegram.webhook_problems(info, "webhook", URL, 0, first_pending=first, max_pending=limit)
    growing = first is None or pending > first
    assert bool(problems) == (pending > limit and growing)


def _https_webhook(tmp_path, name: str):
    """An HTTPS server on loopback with a self-signed certificate for
    ``name``; returns (url, certificate PEM, received bodies, server)."""
    import http.server
    import ssl
    import subprocess
    import threading

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=IP:{name}",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append((self.headers.get("X-Telegram-Bot-Api-Secret-Token"),
                             self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer((name, 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"https://{name}:{httpd.server_address[1]}/hook", cert.read_bytes(), received, httpd


def test_https_deliveries_trust_only_the_uploaded_certificate(server: FakeTelegram, client: Client, tmp_path):
    """Like Telegram: an HTTPS webhook with a self-signed certificate is
    delivered to only when that certificate was uploaded; else the delivery
    fails with an SSL error that getWebhookInfo reports."""
    url, pem, received, httpd = _https_webhook(tmp_path, "127.0.0.1")
    try:
        client.api(TOKEN, "setWebhook", url=url, secret_token="s1")
        client.queue(TOKEN, "/start")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "last_error_message" not in telegram.call(server.url, TOKEN,
                                                                                         "getWebhookInfo"):
            time.sleep(0.1)
        info = telegram.call(server.url, TOKEN, "getWebhookInfo")
        error = info["last_error_message"]
        assert error.startswith("SSL error") and "verify failed" in error, error
        assert received == [] and info["pending_update_count"] == 1
        # the positive control: uploaded, the same update is delivered, with the secret
        telegram.ensure_webhook(server.url, TOKEN, "admin_bot", url, "s1", str(tmp_path), certificate=pem)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not received:
            time.sleep(0.1)
        assert len(received) == 1 and received[0][0] == "s1" and b"/start" in received[0][1]
    finally:
        httpd.shutdown()
