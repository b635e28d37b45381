"""TLS on the proxy, against real certificates.

* ``proxy_tls: self_signed``: a certificate made on the server, uploaded with
  the webhook registration; the stand-in Bot API (like Telegram) delivers over
  HTTPS trusting exactly that certificate.
* ``proxy_tls: acme``: Debian's ``pebble`` (Let's Encrypt's test CA) issues the
  certificate to certbot over HTTP-01 through the proxy's plain port; the
  renewal (the cron job's own command) reloads nginx under webhook load with
  no failed request.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request

import pytest
from harness import Deployment, docker, failed_tasks, free_ports, make_source, wait_for
from load import LoadGenerator, NamedHTTPSConnection
from traffic import SECRET_HEADER, proxy_port, webhook_outcome

pytestmark = pytest.mark.integration

UPDATE = {"message": {"message_id": 1, "date": 0, "chat": {"id": 7, "type": "private"}, "text": "/start"}}


def tls_port(d: Deployment) -> int:
    return proxy_port(d) + 1  # roles/app: app_proxy_tls_port on demo machines


def deployment(tmp_path, proxy_tls: str, **extravars) -> tuple[Deployment, str]:
    d = Deployment.isolated("tls", lambda n: str(tmp_path / n))
    name = f"{d.name.replace('_', '-')}.fs.test"
    d.extravars.update({
        "proxy_tls": proxy_tls,
        "app_public_url": f"https://{name}:8443",
        "proxy_network_aliases": [name],
        **extravars,
    })
    make_source(d.extravars["code_sync_source_dir"], 1)
    return d, name


def handshake(d: Deployment, name: str, ctx: ssl.SSLContext) -> tuple[str, str, dict]:
    with socket.create_connection(("127.0.0.1", tls_port(d)), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as tls:
            return tls.version(), tls.cipher()[0], tls.getpeercert()


def https_post(d: Deployment, name: str, ctx: ssl.SSLContext, path: str, body: dict, headers=None) -> int:
    conn = NamedHTTPSConnection("127.0.0.1", tls_port(d), name, context=ctx, timeout=10)
    try:
        conn.request("POST", path, body=json.dumps(body).encode(),
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def plain_get(d: Deployment, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy_port(d), timeout=5)
    try:
        conn.request("GET", path, headers={"Host": "example.invalid"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, resp.getheader("Location") or ""
    finally:
        conn.close()


def check_https_webhook(d: Deployment, name: str, ctx: ssl.SSLContext, token: str) -> None:
    """Telegram's deliveries arrive over HTTPS and are processed; forged ones
    are refused there too; plain HTTP only redirects."""
    version, cipher, _ = handshake(d, name, ctx)
    assert version in ("TLSv1.2", "TLSv1.3") and ("GCM" in cipher or "CHACHA20" in cipher), (version, cipher)
    secret = d.webhook_secret("admin_bot")
    assert https_post(d, name, ctx, "/admin_bot/webhook", {"update_id": 9_100_001, **UPDATE}) == 401
    assert https_post(d, name, ctx, "/admin_bot/webhook", {"update_id": 9_100_002, **UPDATE},
                      {SECRET_HEADER: secret}) == 200
    queued = d.telegram("POST", f"/_control/{token}/updates", {"text": "/start", "chat_id": 44})["update_ids"]
    sql = f"SELECT count(*) FROM processed_updates WHERE update_id = {queued[0]}"
    assert wait_for(lambda: d.psql(sql) == "1", 30), d.telegram("GET", f"/_control/{token}/stats")
    stats = d.telegram("GET", f"/_control/{token}/stats")["result"]
    assert stats["webhook_url"] == f"https://{name}:8443/admin_bot/webhook" and stats["webhook_failures"] == 0
    stored = d.psql("SELECT update_id FROM processed_updates WHERE update_id >= 9100000 ORDER BY 1").split()
    assert stored == ["9100002"]
    status, location = plain_get(d, "/admin_bot/webhook")
    assert status == 301 and location == f"https://example.invalid:{tls_port(d)}/admin_bot/webhook"
    assert plain_get(d, "/_proxy/health")[0] == 200
    key = os.path.join(d.app_root, "shared", "tls", "key.pem")
    assert os.stat(os.path.realpath(key)).st_mode & 0o777 == 0o600


def admin_token(d: Deployment) -> str:
    env = docker("inspect", "--format", "{{json .Config.Env}}", f"{d.name}_admin_bot_{d.current_release()}")
    return next(e.split("=", 1)[1] for e in json.loads(env) if e.startswith("BOT_TOKEN="))


def test_self_signed_certificate_is_uploaded_and_deliveries_come_over_https(tmp_path):
    d, name = deployment(tmp_path, "self_signed")
    try:
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        cert = os.path.join(d.app_root, "shared", "tls", "self_signed", "cert.pem")
        ctx = ssl.create_default_context(cafile=cert)
        token = admin_token(d)
        info = d.telegram_api(token, "getWebhookInfo")
        assert info["has_custom_certificate"] is True, info
        check_https_webhook(d, name, ctx, token)
        # a client that does not trust the certificate is refused the handshake
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(d, name, ssl.create_default_context())
        # again: nothing changes, nothing is registered again
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        assert d.telegram("GET", f"/_control/{token}/stats")["result"]["webhook_registrations"] == 1
        # only the given networks may reach the webhook path (none of this machine's here)
        r = d.run("deploy.yml", proxy_webhook_sources=["192.0.2.0/24"])
        assert r.rc == 0, failed_tasks(r)
        hdr = {SECRET_HEADER: d.webhook_secret("admin_bot")}
        assert https_post(d, name, ctx, "/admin_bot/webhook", {"update_id": 9_100_003, **UPDATE}, hdr) == 403
        assert plain_get(d, "/_proxy/health")[0] == 200
        r = d.run("deploy.yml", proxy_webhook_sources=["0.0.0.0/0"])  # the positive control
        assert r.rc == 0, failed_tasks(r)
        assert https_post(d, name, ctx, "/admin_bot/webhook", {"update_id": 9_100_004, **UPDATE}, hdr) == 200
    finally:
        d.destroy()


# -- ACME ------------------------------------------------------------------------------


class Pebble:
    """pebble and pebble-challtestsrv (its DNS: every name is 127.0.0.1), with
    HTTP-01 validation sent to the proxy's plain port."""

    def __init__(self, workdir: str, http_port: int) -> None:
        os.makedirs(workdir, exist_ok=True)
        self.dir = workdir
        base = free_ports(3)
        self.dns_port, self.acme_port, self.mgmt_port = base, base + 1, base + 2
        self.api_cert = os.path.join(workdir, "api-cert.pem")
        key = os.path.join(workdir, "api-key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=pebble", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", self.api_cert], check=True, capture_output=True)
        config = os.path.join(workdir, "pebble.json")
        with open(config, "w", encoding="utf-8") as fh:
            json.dump({"pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
                "certificate": self.api_cert, "privateKey": key,
                "httpPort": http_port, "tlsPort": http_port + 1,
                "ocspResponderURL": "", "externalAccountBindingRequired": False,
            }}, fh)
        env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
               "PEBBLE_AUTHZREUSE": "0"}  # every order validated again (the renewal too)
        self.logs = [open(os.path.join(workdir, n), "w") for n in ("dns.log", "pebble.log")]  # noqa: SIM115
        self.procs = [
            subprocess.Popen(["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                              "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
                              "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_port + 10000}"],
                             stdout=self.logs[0], stderr=subprocess.STDOUT),
            subprocess.Popen(["pebble", "-config", config, "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                             env=env, stdout=self.logs[1], stderr=subprocess.STDOUT),
        ]
        self.directory = f"https://127.0.0.1:{self.acme_port}/dir"
        ctx = ssl.create_default_context(cafile=self.api_cert)
        assert wait_for(lambda: self._get(self.directory, ctx) is not None, 20), self.log()
        self.root = os.path.join(workdir, "root.pem")
        with open(self.root, "wb") as fh:
            fh.write(self._get(f"https://127.0.0.1:{self.mgmt_port}/roots/0", ctx))

    @staticmethod
    def _get(url: str, ctx: ssl.SSLContext) -> bytes | None:
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
                return resp.read()
        except OSError:
            return None

    def log(self) -> str:
        with open(os.path.join(self.dir, "pebble.log"), encoding="utf-8") as fh:
            return fh.read()[-3000:]

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
            p.wait(10)
        for f in self.logs:
            f.close()


def test_acme_certificate_from_pebble_then_renewal_reloads_under_load(tmp_path):
    d, name = deployment(tmp_path, "acme")
    ca = Pebble(str(tmp_path / "pebble"), proxy_port(d))
    cron_file = f"/etc/cron.d/fs_tls_{d.name}"
    d.extravars.update({
        "proxy_acme_directory": ca.directory,
        "proxy_acme_ca_bundle": ca.api_cert,
        "demo_telegram_ca_file": ca.root,
        # every renewal run finds the certificate due (pebble's last years)
        "proxy_acme_renew_before_days": 100_000,
    })
    try:
        r = d.run("deploy.yml")
        assert r.rc == 0, (failed_tasks(r), ca.log())
        ctx = ssl.create_default_context(cafile=ca.root)
        _, _, first = handshake(d, name, ctx)
        assert ("DNS", name) in first["subjectAltName"]
        assert "Pebble" in json.dumps(first["issuer"]), first["issuer"]
        token = admin_token(d)
        assert d.telegram_api(token, "getWebhookInfo")["has_custom_certificate"] is False
        check_https_webhook(d, name, ctx, token)
        # the challenge folder is served on the plain port (certbot's files)
        assert plain_get(d, "/.well-known/acme-challenge/none")[0] == 404

        # the renewal, as cron runs it, under webhook load over HTTPS
        with open(cron_file, encoding="utf-8") as fh:
            job = next(line for line in fh.read().splitlines() if "certbot.sh renew" in line)
        command = re.split(r"\s+", job, maxsplit=6)[6]
        assert command.startswith(os.path.join(d.app_root, "shared", "tls", "certbot.sh renew")), job
        started = docker("inspect", "--format", "{{.State.StartedAt}}", f"{d.name}_proxy")
        load = LoadGenerator(url=f"https://127.0.0.1:{tls_port(d)}/admin_bot/webhook", rate=20, workers=16,
                             headers={SECRET_HEADER: d.webhook_secret("admin_bot")},
                             ssl_context=ctx, server_name=name).start()
        try:
            time.sleep(2)
            # (cron's runs sleep a random while first, as certbot does: not here)
            renew = subprocess.run(["sh", "-c", command.split(" >>")[0] + " --no-random-sleep-on-renew"],
                                   capture_output=True, text=True, timeout=180)
            time.sleep(2)
        finally:
            samples = load.stop()
        assert renew.returncode == 0, (renew.stdout, renew.stderr, ca.log())
        assert wait_for(lambda: handshake(d, name, ctx)[2]["serialNumber"] != first["serialNumber"], 10)
        outcome = webhook_outcome(d, samples)
        print(f"\nrenewal under load: {outcome}")
        assert outcome["requests_sent"] > 50 and outcome["requests_failed"] == 0, outcome
        assert outcome["answered_not_stored"] == 0, outcome
        # nginx was reloaded (certbot's deploy hook), never restarted
        assert docker("inspect", "--format", "{{.State.StartedAt}}", f"{d.name}_proxy") == started
        assert "certbot renew" in renew.stdout
    finally:
        ca.stop()
        d.destroy()
        if os.path.exists(cron_file):
            os.remove(cron_file)
        shutil.rmtree(str(tmp_path / "pebble"), ignore_errors=True)
