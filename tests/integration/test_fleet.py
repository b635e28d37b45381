"""Past one server (issue 13): a fleet of app servers on the test bed.

Each server of the test bed (tests/integration/testbed.py) has its own
network, Docker engine, /opt, crontab and sshd, and is reached over SSH; none
has a route to the package indexes, so none can build the sample app's
image. With ``docker_build_registry`` and ``docker_build_builder: localhost``
the control node's engine builds the release once, pushes it to a real
registry (Debian's docker-registry with TLS on the bed's bridge), and the
servers pull it by digest.

The fleet: two app servers, app1 and app2, sharing one PostgreSQL on a third
server, db1, behind a load balancer on a fourth, lb1 (roles/lb). The
pre-deploy backup and the migrations run once (on app1), the deploy lock,
the webhook secrets and the scheduled backups live on app1, and the servers
switch one batch after the other, each healthy before the next;
a failed batch puts the servers already switched back, and the servers not
reached yet keep what they serve. Webhook traffic through the load balancer
during the rolling deploy: no request fails, every answered update is kept.
A restore stops the services on every server and replaces the database once.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid

import fleet
import pytest
import testbed
from fleet import PROXY_PORT, last_log, serving
from harness import ROOT, Deployment, add_changelog_entry, failed_tasks, make_source, wait_for
from http_receiver import Receiver
from load import LoadGenerator, summarize
from traffic import MASTER_TOKEN, SECRET_HEADER, PollingFeed

pytestmark = pytest.mark.integration
ADMIN_MAIN = "field_service/bots/admin_bot/main.py"
# v3: admin_bot exits at start on a server whose environment says FLEET_BROKEN
BROKEN_WHERE_TOLD = '''"""admin_bot that cannot start where FLEET_BROKEN is set."""
import os
import sys

from field_service.runner import run_bot
from field_service.updates import default_reply


def main() -> int:
    if os.environ.get("FLEET_BROKEN"):
        print("admin_bot: FLEET_BROKEN is set on this server", file=sys.stderr)
        return 3
    return run_bot("admin_bot", "webhook", default_reply)


if __name__ == "__main__":
    sys.exit(main())
'''


@pytest.fixture(scope="module")
def bed():
    why = testbed.problem()
    if why:
        pytest.skip(why)
    with fleet.fleet(apps=2) as f:
        yield f


def _registry_tags(registry: str, repository: str) -> list[str]:
    ctx = ssl.create_default_context(cafile=os.path.join(testbed.CERTS_D, "ca.crt"))
    try:
        with urllib.request.urlopen(f"https://{registry}/v2/{repository}/tags/list", context=ctx,
                                    timeout=10) as resp:
            return sorted(json.loads(resp.read())["tags"] or [])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return []
        raise


def _images(host: testbed.Host, name: str) -> list[str]:
    """The images of the app's running service containers on the host (each once)."""
    return sorted(set(host.ssh(f"docker ps --filter label=fs.app={name} --filter label=fs.role=service "
                               "--format '{{.Image}}'").stdout.split()))


def _heartbeats(f: fleet.Fleet) -> dict:
    """The heartbeat rows of the fleet's database: {service: release}."""
    rows = f.psql("SELECT service, release FROM heartbeats WHERE beat_at > now() - interval '30 seconds'")
    return dict(line.split("|", 1) for line in rows.splitlines() if line)


def _webhook_status(host: testbed.Host, secret: str, port: int = PROXY_PORT) -> str:
    """What the server's proxy (on its own address and ``port``: the stand-in's port + 1) answers a
    webhook delivery carrying ``secret``, sent on the server."""
    chat = {"id": 1, "type": "private"}
    update = json.dumps({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": chat, "text": "hi"}})
    return host.ssh(f"curl -s -o /dev/null -w '%{{http_code}}' -X POST -H 'Content-Type: application/json' "
                    f"-H 'X-Telegram-Bot-Api-Secret-Token: {secret}' --data '{update}' "
                    f"http://{host.address}:{port}/admin_bot/webhook").stdout.strip()


def _post(url: str, secret: str, cafile: str | None = None) -> int:
    """One webhook delivery with the secret, from the machine; the HTTP status (over HTTPS: the
    certificate checked against ``cafile``)."""
    chat = {"id": 1, "type": "private"}
    update = {"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": chat, "text": "hi"}}
    body = json.dumps(update).encode()
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json", SECRET_HEADER: secret})
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_fleet_deploys_once_switches_in_batches_and_puts_a_failed_batch_back(bed, tmp_path):
    f = bed
    app1, app2, lb1 = f.apps["app1"], f.apps["app2"], f.lb
    servers = f.apps
    name = f"fleet_{uuid.uuid4().hex[:6]}"
    repository = f"{f.registry}/{name}"
    inventory = str(tmp_path / "inventory" / "hosts.json")
    d = f.deployment(name, str(tmp_path))
    receiver = Receiver()  # the team's notifications (a JSON webhook channel)
    d.extravars.update(notify_retries=1, notify_channels=[{"type": "webhook", "url": receiver.url + "/hook"}])
    try:
        # Given servers that cannot build (no route to PyPI): without a registry the build fails there
        assert app1.ssh("python3 -c \"import socket; socket.create_connection(('pypi.org', 443), 3)\"",
                        check=False).returncode != 0
        make_source(str(tmp_path / "src"), 1)

        # When v1 is deployed to the fleet
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        v1 = serving(app1, name)
        log = last_log(d)
        # Then both servers serve it, built once on the control node and pulled by digest on each
        assert serving(app2, name) == v1
        assert "Building Docker images... (once, on localhost, for 2 server(s))" in log
        for host in servers:
            assert f"Image of {v1} pulled on {host}: {repository}@sha256:" in log, log
        assert _registry_tags(f.registry, name) == [v1]
        digest = log.split(f"{repository}@", 1)[1].split()[0]
        for host in servers.values():
            got = json.loads(host.ssh(f"docker image inspect {name}:{v1}").stdout)[0]
            assert f"{repository}@{digest}" in got["RepoDigests"]
            assert _images(host, name) == [f"{name}:{v1}"]
        # from the servers' own engines: the control node runs none of it
        assert subprocess.run(["docker", "ps", "-q", "--filter", f"label=fs.app={name}"], capture_output=True,
                              text=True, check=True).stdout.split() == []
        # one message per event for the fleet, naming both servers
        sent = [(g["body"]["event"], g["body"]["server"]) for g in receiver.got]
        assert sent == [("deploy_start", "app1, app2"), ("deploy_success", "app1, app2")], sent
        # the migrations ran once, against the shared database on db1
        assert log.count("Running migrations...") == 1, log
        assert f.psql("SELECT version_num FROM alembic_version") != ""
        # the scheduled backups are on app1 only; the webhook secret is kept on app1 and app2 checks it too
        assert f"{name} backup daily" in app1.ssh("crontab -l", check=False).stdout
        assert name not in app2.ssh("crontab -l", check=False).stdout
        secret = app1.ssh(f"cat /opt/{name}/shared/webhooks/admin_bot.secret").stdout.strip()
        assert secret and app2.ssh(f"test -e /opt/{name}/shared/webhooks/admin_bot.secret",
                                   check=False).returncode != 0
        for host in servers.values():  # each proxy lets in app1's secret, and only it
            assert _webhook_status(host, secret) == "200"
            assert _webhook_status(host, "not-the-secret") == "401"
        # each server's webhook bot beats in its own row; the polling bot runs on both servers and
        # one of them polls (the lock in the shared database): one row, and Telegram saw no 409
        assert _heartbeats(f) == {"admin_bot@app1": v1, "admin_bot@app2": v1, "master_bot": v1}
        for host in servers.values():
            running = host.docker("inspect", "-f", "{{.State.Running}}", f"{name}_master_bot_{v1}")
            assert running.stdout.strip() == "true"
        assert f.telegram("GET", f"/_control/{MASTER_TOKEN}/stats")["result"]["conflicts_409"] == 0

        # The load balancer reaches the servers, over HTTPS too, with the certificate it was given
        url = f.lb_url()
        assert _post(url, secret) == 200
        assert _post(f.lb_url(tls=True), secret, cafile=f.lb_cert) == 200
        # When the same release is deployed again, with a new certificate for the load balancer
        os.makedirs(tmp_path / "cert2")
        f.make_lb_certificate(str(tmp_path / "cert2"))
        with pytest.raises(urllib.error.URLError):  # (not served yet)
            _post(f.lb_url(tls=True), secret, cafile=f.lb_cert)
        with open(f.lb_cert, encoding="utf-8") as cert, open(f.lb_key, encoding="utf-8") as key:
            d.extravars.update(lb_tls_certificate=cert.read(), lb_tls_key=key.read())
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        log = last_log(d)
        # Then nothing is built or pulled, and the load balancer serves the new certificate
        assert "Building Docker images" not in log and " pulled on " not in log
        assert _post(f.lb_url(tls=True), secret, cafile=f.lb_cert) == 200

        # When v2 is deployed under webhook traffic through the load balancer
        make_source(str(tmp_path / "src"), 2)
        load = LoadGenerator(url=url, rate=20, headers={SECRET_HEADER: secret})
        feed = PollingFeed(f, interval=0.1).start()  # and a steady feed for the fleet's poller
        load.start()
        try:
            r = d.run("deploy.yml")
        finally:
            samples = load.stop()
            feed.stop()
        assert r.rc == 0, failed_tasks(r)
        v2 = serving(app1, name)
        log = last_log(d)
        backup_v2 = log.split("Backup created: ", 1)[1].split()[0]  # the database as v1 left it
        # Then the servers switched one after the other, each out of the load balancer while it switched
        # and healthy before the next
        assert v2 != v1 and serving(app2, name) == v2
        assert "Rolling switch over 2 hosts in 2 batch(es) of 1: app1 | app2" in log, log
        drained = log.index("Load balancer: app1 taken out, draining 2 s")
        first = log.index(f"Batch 1/2 (app1): health PASSED; serving: app1: {v2}, app2: {v1}")
        second = log.index("Load balancer: app2 taken out, draining 2 s")
        assert drained < first < second
        assert log.index(f"Batch 2/2 (app2): health PASSED; serving: app1: {v2}, app2: {v2}") > second
        lb_conf = lb1.docker("exec", f"{name}_lb", "cat", "/etc/fs_lb.conf").stdout
        assert lb_conf.count(":18082 max_fails") == 2, lb_conf  # both servers back in
        # and the traffic never noticed: no request failed, every answered update was kept, and both
        # releases answered part of it
        web = summarize(samples)
        assert web["requests_sent"] >= 200 and web["requests_failed"] == 0, web
        stored = {int(x) for x in f.psql("SELECT update_id FROM processed_updates "
                                        "WHERE service = 'admin_bot' AND update_id >= 1000000").split()}
        assert {s.update_id for s in samples if s.ok} <= stored
        releases = set(f.psql("SELECT DISTINCT release FROM processed_updates "
                             "WHERE service = 'admin_bot' AND update_id >= 1000000").split())
        assert releases == {v1, v2}, releases
        # the poller moved to v2 (on one of the servers) without losing, repeating or doubling an update
        polled = feed.measure()
        assert polled["updates_sent"] >= 100 and polled["feed_errors"] == 0, polled
        assert polled["updates_lost"] == 0 and polled["updates_duplicated"] == 0, polled
        assert polled["conflicts_409"] == 0 and polled["still_queued"] == 0, polled
        assert _heartbeats(f) == {"admin_bot@app1": v2, "admin_bot@app2": v2, "master_bot": v2}

        # When the server whose bot polls drops off the network, as a server that lost its power
        # does (no connection closed), while updates keep coming
        active = f.poller_host()
        assert active in servers, active
        other = next(n for n in servers if n != active)
        feed = PollingFeed(f, interval=0.1).start()
        servers[active].unplug()
        try:
            # Then the standby on the other server takes the lock (the database ends the lost
            # server's session) and polls
            took_over = wait_for(lambda: f.poller_host() == other, timeout=60, interval=1)
        finally:
            feed.stop()
            servers[active].plug()
        assert took_over, f"the poller is still on {f.poller_host()}"
        polled = feed.measure()
        # nothing lost; an update is answered twice only if the server vanished between its answer
        # and its commit (then the standby answers it again: at least once, as Telegram's own)
        assert polled["updates_sent"] >= 50 and polled["updates_lost"] == 0, polled
        assert polled["updates_duplicated"] <= 1 and polled["conflicts_409"] == 0, polled
        assert polled["max_gap_s"] < 40, polled
        # (the server that came back finds its session gone once its connections retry: checked at the end)
        assert log.count("Running migrations...") == 1 and log.count("Backup created: ") == 1, log
        assert _registry_tags(f.registry, name) == sorted([v1, v2])

        # When v3 cannot start on app2 (the second batch)
        broken = _overlay(tmp_path, "broken", ADMIN_MAIN, BROKEN_WHERE_TOLD)
        make_source(str(tmp_path / "src"), 2, overlays=(broken,))
        add_changelog_entry(str(tmp_path / "src"), "3.0.0")
        f.inventory(inventory, broken="app2")
        r = d.run("deploy.yml")
        assert r.rc != 0
        log = last_log(d)
        v3 = log.split("Batch 1/2 (app1): health PASSED; serving: app1: ", 1)[1].split(",")[0]
        # Then app1 switched and was healthy, app2 failed, and app1 was put back: both serve v2
        assert v3 not in (v1, v2)
        assert "Batch 2/2 (app2): FAILED" in log, log
        assert f"Serving: app1: {v2}, app2: {v2}" in log, log
        assert "The rollout stopped at batch 2 of 2: app2: " in log, log
        assert f"app1 was healthy and went back to {v2}" in log, log
        failed = receiver.got[-1]["body"]
        assert failed["event"] in ("deploy_rolled_back", "deploy_failure"), failed
        assert failed["server"] == "app1, app2", failed
        assert "app1: " in failed["reason"] and "app2: " in failed["reason"], failed
        # three deploys of a new release so far (v1, v2, v3; the same v1 again sends no start)
        assert [g["body"]["event"] for g in receiver.got].count("deploy_start") == 3
        for host in servers.values():
            assert serving(host, name) == v2
            assert _images(host, name) == [f"{name}:{v2}"]

        # When v3 cannot start on app1 (the first batch)
        f.inventory(inventory, broken="app1")
        r = d.run("deploy.yml")
        assert r.rc != 0
        log = last_log(d)
        # Then app2 was never switched (its unpacked release is removed) and both still serve v2
        assert "Batch 1/2 (app1): FAILED" in log and "Batch 2/2" not in log, log
        assert f"app2 was not switched: it still serves {v2}" in log, log
        assert app2.ssh(f"test -e /opt/{name}/releases/{v3}", check=False).returncode != 0
        for host in servers.values():
            assert serving(host, name) == v2
            assert _images(host, name) == [f"{name}:{v2}"]

        # When v3 (which starts everywhere now) is deployed and app2 drops off the network once the
        # rollout began (app1's batch switching)
        f.inventory(inventory)
        run = _deploy_in_background(d)
        try:
            assert wait_for(run.rollout_began, timeout=600, interval=0.5)
            app2.unplug()
            r = run.result()
        finally:
            app2.plug()
        log = last_log(d)
        # Then the rollout stopped at app2, unreachable, and app1 went back: the fleet serves v2
        assert r.rc != 0
        assert "Batch 1/2 (app1): health PASSED" in log and "The rollout stopped at batch 2 of 2" in log, log
        assert "app2: " in log and "unreachable" in log, log
        assert f"app1 was healthy and went back to {v2}" in log, log
        for host in servers.values():
            assert serving(host, name) == v2
        # and once app2 is back, a re-run completes, though the database server restarts (its
        # PostgreSQL stopped and started) while the servers switch
        run = _deploy_in_background(d)
        assert wait_for(run.rollout_began, timeout=600, interval=0.5)
        f.db.docker("restart", "-t", "5", fleet.DB_CONTAINER)
        r = run.result()
        assert r.rc == 0, failed_tasks(r)
        assert serving(app1, name) == serving(app2, name) == v3
        assert wait_for(lambda: _heartbeats(f).get("master_bot") == v3, timeout=30), _heartbeats(f)

        # When v1's image is removed on app1 and the fleet is taken back to v1
        app1.ssh(f"docker rmi {name}:{v1} {repository}@{digest}")
        r = d.run("rollback.yml", release=v1)
        assert r.rc == 0, failed_tasks(r)
        log = last_log(d)
        # Then app1 pulled v1 again by the same digest, with no build, and both serve v1
        assert f"Image of {v1} pulled on app1: {repository}@{digest}" in log, log
        assert "Building Docker images" not in log
        for host in servers.values():
            assert serving(host, name) == v1
        assert wait_for(lambda: _heartbeats(f).get("master_bot") == v1, timeout=30), _heartbeats(f)

        # When the fleet's database gets a table after the v2 deploy's backup, and that backup is
        # restored: first on app2 alone, then on the whole fleet
        f.psql("CREATE TABLE restore_marker (x int)")
        assert f.psql("SELECT to_regclass('restore_marker')") == "restore_marker"
        started = {n: h.docker("inspect", "-f", "{{.State.StartedAt}}", f"{name}_admin_bot_{v1}").stdout
                   for n, h in servers.items()}
        r = d.run("restore.yml", limit="app2", backup_file=backup_v2)
        # Then a run without app1 is refused (app1 would write on), and nothing changed
        assert r.rc != 0
        assert "so it runs on all of them (each stops its services first), and app1 is not in this run: " \
               "run it without -l" in last_log(d), last_log(d)
        assert f.psql("SELECT to_regclass('restore_marker')") == "restore_marker"
        r = d.run("restore.yml", backup_file=backup_v2)
        assert r.rc == 0, failed_tasks(r)
        log = last_log(d)
        # and then the database is restored once, on app1 (which keeps the backups), after every
        # server stopped its services, which all run again on the restored database
        assert f.psql("SELECT to_regclass('restore_marker')") == ""
        assert log.count(f"Database restored from {backup_v2}") == 1, log
        assert log.count("Safety backup: ") == 1, log
        safety = log.split("Safety backup: ", 1)[1].split("(", 1)[1].split(";")[0]
        assert app1.ssh(f"test -s {safety}", check=False).returncode == 0, safety
        for n, host in servers.items():
            assert serving(host, name) == v1
            now = host.docker("inspect", "-f", "{{.State.StartedAt}}", f"{name}_admin_bot_{v1}").stdout
            assert now != started[n], n  # stopped and started again
        beats = {"admin_bot@app1": v1, "admin_bot@app2": v1, "master_bot": v1}
        assert wait_for(lambda: _heartbeats(f) == beats, timeout=60), _heartbeats(f)
        assert [g["body"]["event"] for g in receiver.got][-1] == "restore_success"

        # and through all of it, the server that dropped off included, Telegram never saw two pollers
        assert f.telegram("GET", f"/_control/{MASTER_TOKEN}/stats")["result"]["conflicts_409"] == 0
    finally:
        receiver.close()
        f.remove_app(name)


def test_a_fleet_is_refused_what_would_run_once_per_server(tmp_path):
    """Two app servers (both this machine here, reached locally: the checks stop the run before it
    does anything) with what would run on each of them: a database of its own, a poller of its own."""
    shutil.copytree(os.path.join(ROOT, "inventory", "local", "group_vars"),
                    tmp_path / "inventory" / "group_vars")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    with open(tmp_path / "inventory" / "hosts.json", "w", encoding="utf-8") as fh:
        json.dump({"all": {"children": {"app_servers": {"hosts": {"app1": local, "app2": local}}}}}, fh)
    d = Deployment.isolated("fs_twice", lambda n: str(tmp_path / n))
    d.inventory = str(tmp_path / "inventory" / "hosts.json")
    d.extravars.update(app_root=d.app_root, app_backup_root=d.backup_root)
    make_source(d.extravars["code_sync_source_dir"], 1)

    r = d.run("deploy.yml")  # the default: a managed database beside the services
    assert r.rc != 0
    assert "2 app servers with app_db_managed true would each run a database of their own: set " \
           "app_db_managed false and app_db_host" in last_log(d), last_log(d)

    d.extravars.update(app_db_managed=False, app_db_host="10.0.0.20", app_services=[
        {"name": "admin_bot", "mode": "webhook", "command": ["python", "-m", "x"]},
        {"name": "stock_bot", "mode": "polling", "command": ["python", "-m", "y"]}])
    r = d.run("deploy.yml")
    assert r.rc != 0
    assert "stock_bot would poll Telegram on each of the 2 app servers (409 Conflict for all but one): " \
           "set single_poller true" in last_log(d), last_log(d)
    # nothing was started
    assert subprocess.run(["docker", "ps", "-aq", "--filter", f"label=fs.app={d.name}"], capture_output=True,
                          text=True, check=True).stdout.split() == []


class _deploy_in_background:  # noqa: N801 - reads as what it does
    """deploy.yml in a thread; ``rollout_began`` once its deploy log says the rolling switch began."""

    def __init__(self, d):
        self.d, self.before, self.outcome = d, set(d.logs()), {}
        self.thread = threading.Thread(target=lambda: self.outcome.update(r=d.run("deploy.yml")))
        self.thread.start()

    def rollout_began(self) -> bool:
        new = [p for p in self.d.logs() if p not in self.before]
        if not new:
            return False
        with open(new[-1], encoding="utf-8") as fh:
            return "Rolling switch over " in fh.read()

    def result(self, timeout: float = 900):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the deploy did not end"
        return self.outcome["r"]


def _overlay(tmp_path, name: str, rel: str, text: str) -> str:
    path = tmp_path / name / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(tmp_path / name)
