# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Does the serving release still run on the schema the deploy will migrate
to? (the ``serving_check`` module, before anything on the server changes)

During a switch the serving release runs on the new schema for a few
seconds, and after an automatic rollback for as long as it takes to fix
things: if it cannot, the rollback puts back a release that cannot run. So,
on the server (where the serving release's image is, exactly the image a
rollback would start), in a network of its own with no way out:

1. a throwaway PostgreSQL of the app's database image is loaded with the
   schema the pending migrations make (a dump of the throwaway database the
   control node upgraded to head);
2. the stand-in Bot API (the collection's ``fake_telegram.py``, run with the
   serving image's own Python, so no other image is needed) answers the bots
   in place of Telegram: no real update is taken, no message sent;
3. the serving release's services start with their own settings (the
   database URL and the Bot API's address pointed at those two) and must get
   ready as the switch judges it (``switch.Switcher``: running, healthy, the
   service's readiness);
4. each bot is sent a few test messages (polling: queued for its
   ``getUpdates``; webhook: delivered to its webhook path with its secret) and
   must take them;
5. the health check (``health.run_health_check``) must pass: running, not
   restarting, no critical line in the logs (a handler that failed on the
   new schema logs its traceback), heartbeat fresh when used, the database
   answers.

When that fails, the same is done on the schema the serving release runs on
now: if it fails there too, the check cannot tell (``inconclusive``: the
release does not run in isolation, e.g. it talks to a service the network
does not reach); if it passes there, the new schema is what breaks it
(``refused``). Everything the check made is removed at the end.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import time
import uuid

from ansible_collections.fieldservice.deploy.plugins.module_utils import health
from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import (
    Service,
    Switcher,
    SwitchError,
    scrub,
    tar_files,
)

DOCS = "docs/migrations.md#the-serving-release-on-the-new-schema"
ROLE = "serving_check"
DB_NAME = "serving_check"
DB_PASSWORD = "serving-check"  # of a database that lives in a network nothing else reaches
API_PORT = 8081
SETTLE = 0.5  # seconds after a webhook bot took its test messages, before the health check
LEFTOVER_AGE = 3600  # seconds: older check containers and networks are a killed run's


class CheckFailed(Exception):
    """One run of the check failed, at ``stage``: the reason."""

    def __init__(self, message: str, stage: str):
        super().__init__(message)
        self.stage = stage


def _post_json(host: str, port: int, path: str, body, timeout: float = 5.0):
    """POST JSON to a container's address (direct, no proxy of the environment)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(data or b"null")


def _get_json(host: str, port: int, path: str, timeout: float = 5.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, json.loads(data or b"null")


class _CheckSwitcher(Switcher):
    """The switch's start-and-readiness, for containers of the check: a
    failure just says why (the check removes what it made itself)."""

    def _give_up(self, reason: str, stage: str) -> None:
        raise SwitchError(scrub(reason), stage)


class ServingCheck:
    """Runs the check against a Docker client (``docker_api.DockerClient``)."""

    def __init__(self, client, app: str, release: str, image: str, services: list, secret_env: dict,
                 bots: list, db_image: str, bot_api_script: str, texts: list, healthcheck: dict | None = None,
                 ready_timeout: float = 60, update_timeout: float = 15, health_timeout: float = 20,
                 health: dict | None = None, heartbeats: dict | None = None, clock=time.monotonic,
                 sleep=time.sleep, cleanup=None):
        self.client = client
        # how the containers and the network of a run are removed: at once
        # (the default), or handed to a detached process (the module: nobody
        # needs to wait for it; see remove_leftovers for a killed one)
        self.cleanup = cleanup or (lambda remove: remove())
        self.app = app
        self.release = release
        self.image = image
        self.services = [s if isinstance(s, Service) else Service.from_dict(s) for s in services]
        self.secret_env = secret_env or {}
        self.bots = bots or []
        self.db_image = db_image
        self.bot_api_script = bot_api_script
        self.texts = [str(t) for t in texts or []]
        self.healthcheck = healthcheck or None
        self.ready_timeout = ready_timeout
        self.update_timeout = update_timeout
        self.health_timeout = health_timeout
        self.health = dict(health or {})
        self.heartbeats = dict(heartbeats or {})
        self.clock = clock
        self.sleep = sleep

    # -- one run ---------------------------------------------------------------

    def _container(self, name: str, body: dict, files: dict | None = None, directory: str = "/tmp") -> None:
        self.client.create_container(name, body)
        if files:
            self.client.put_archive(name, directory, tar_files(files))
        self.client.start_container(name)

    def _address(self, name: str, network: str) -> str:
        doc = self.client.inspect_container(name) or {}
        nets = (doc.get("NetworkSettings") or {}).get("Networks") or {}
        return (nets.get(network) or {}).get("IPAddress", "")

    def _labels(self, prefix: str) -> dict:
        return {"fs.app": prefix, "fs.role": ROLE, "fs.check.of": self.app,
                "fs.check.started": str(int(time.time()))}

    def _start_database(self, prefix: str, network: str) -> str:
        name = f"{prefix}_db"
        self._container(name, {
            "Image": self.db_image,
            "Env": [f"POSTGRES_PASSWORD={DB_PASSWORD}", f"POSTGRES_DB={DB_NAME}"],
            "Labels": self._labels(prefix),
            "HostConfig": {"NetworkMode": network, "Tmpfs": {"/var/lib/postgresql/data": ""}},
            "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": ["db"]}}},
        })
        return name

    def _wait_database(self, name: str, deadline: float) -> None:
        while True:
            # TCP: the image's init server (before the real one) listens on the socket only
            code, dummy, err = self.client.exec_run(name, ["pg_isready", "-h", "127.0.0.1", "-U", "postgres",
                                                           "-d", DB_NAME], timeout=20)
            if code == 0:
                return
            state = (self.client.inspect_container(name) or {}).get("State") or {}
            if not state.get("Running"):
                raise CheckFailed(f"the throwaway database ({self.db_image}) stopped while starting: "
                                  + self._tail(name), "database")
            if self.clock() > deadline:
                raise CheckFailed(f"the throwaway database ({self.db_image}) was not ready in time "
                                  f"({err.strip()[:200]})", "database")
            self.sleep(0.2)

    def _load_schema(self, name: str, schema: str) -> None:
        self.client.put_archive(name, "/tmp", tar_files({"fs_schema.sql": schema}))
        code, dummy, err = self.client.exec_run(  # the local socket: trusted by the image
            name, ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", DB_NAME,
                   "-f", "/tmp/fs_schema.sql"], timeout=120)
        if code != 0:
            raise CheckFailed(f"the schema could not be loaded into the throwaway database: "
                              f"{' | '.join(err.strip().splitlines()[-3:])}", "database")

    def _start_bot_api(self, prefix: str, network: str) -> str:
        name = f"{prefix}_telegram"
        self._container(name, {
            "Image": self.image,
            "Entrypoint": ["python3", "/tmp/fs_bot_api.py", "--host", "0.0.0.0", "--port", str(API_PORT)],
            "Cmd": [],
            "User": "",
            "Labels": self._labels(prefix),
            "HostConfig": {"NetworkMode": network},
            "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": ["telegram"]}}},
        }, files={"fs_bot_api.py": self.bot_api_script})
        return name

    def _wait_bot_api(self, name: str, network: str, deadline: float) -> str:
        while True:
            address = self._address(name, network)
            if address:
                try:
                    status, dummy = _get_json(address, API_PORT, "/_control/health", timeout=2)
                    if status == 200:
                        return address
                except (OSError, ValueError, http.client.HTTPException):
                    pass
            state = (self.client.inspect_container(name) or {}).get("State") or {}
            if not state.get("Running") or self.clock() > deadline:
                raise CheckFailed("the stand-in Bot API did not start with the serving image's python3: "
                                  + self._tail(name), "bot_api")
            self.sleep(0.1)

    def _tail(self, name: str, lines: int = 6) -> str:
        try:
            text = self.client.container_logs(name, tail=lines)
        except Exception:  # noqa: BLE001 - only for the message
            return "(no logs)"
        return (" | ".join(health.truncate(line, 200) for line in text.strip().splitlines()[-lines:])
                or "(no logs)")

    def _send_updates(self, api: str) -> dict:
        """Each bot's test messages, sent through the stand-in; {service: (token, count)}."""
        sent = {}
        names = {s.name: s for s in self.services}
        for bot in self.bots:
            svc = names.get(str(bot.get("name") or ""))
            env = self.secret_env.get(str(bot.get("name") or "")) or {}
            token = str(env.get(bot.get("token_env") or "BOT_TOKEN") or "")
            if svc is None or not token or bot.get("mode") not in ("polling", "webhook") or not self.texts:
                continue
            if bot["mode"] == "webhook":
                secret = str(env.get(bot.get("webhook_secret_env") or "") or "")
                url = f"http://{svc.name}:{svc.port}{bot.get('webhook_path') or '/webhook'}"
                body = {"url": url, **({"secret_token": secret} if secret else {})}
                status, answer = _post_json(api, API_PORT, f"/bot{token}/setWebhook", body)
                if status != 200:
                    raise CheckFailed(f"{svc.name}: the stand-in refused its webhook: {answer}", "updates")
            items = [{"text": text, "chat_id": 4242} for text in self.texts]
            status, answer = _post_json(api, API_PORT, f"/_control/{token}/updates", items)
            if status != 200:
                raise CheckFailed(f"{svc.name}: the stand-in did not take the test messages: {answer}",
                                  "updates")
            sent[svc.name] = (token, len(items))
        return sent

    def _wait_updates(self, api: str, sent: dict, prefix: str) -> dict:
        deadline = self.clock() + self.update_timeout
        taken = {}
        while True:
            for name, (token, count) in sent.items():
                dummy, answer = _get_json(api, API_PORT, f"/_control/{token}/stats")
                stats = (answer or {}).get("result") or {}
                taken[name] = {"sent": count, "taken": int(stats.get("confirmed") or 0),
                               "error": str(stats.get("last_webhook_error") or "")}
            waiting = [n for n, t in taken.items() if t["taken"] < t["sent"]]
            if not waiting:
                return taken
            if self.clock() > deadline:
                parts = []
                for name in waiting:
                    t = taken[name]
                    container = f"{prefix}_{name}_{self.release}"
                    parts.append(f"{name} took {t['taken']} of {t['sent']} test message(s) in "
                                 f"{self.update_timeout:g} s"
                                 + (f" (webhook: {t['error']})" if t["error"] else "")
                                 + f"; its last lines: {self._tail(container)}")
                raise CheckFailed("; ".join(parts), "updates")
            self.sleep(0.2)

    def run_once(self, schema: str) -> dict:
        """Start the serving release on ``schema`` in a network of its own:
        {ok, stage, reason, seconds, readiness, updates}. Everything made is
        removed before it returns."""
        began = self.clock()
        prefix = f"{self.app}_check_{uuid.uuid4().hex[:6]}"
        network = prefix
        made: list = []
        out = {"ok": False, "stage": "", "reason": "", "readiness": {}, "updates": {}, "seconds": 0.0,
               "timings": {}}

        def mark(phase: str) -> None:
            out["timings"][phase] = round(self.clock() - began, 2)

        try:
            self.client.create_network(network, internal=True, labels=self._labels(prefix))
            deadline = self.clock() + self.ready_timeout
            made.append(self._start_database(prefix, network))
            made.append(self._start_bot_api(prefix, network))
            self._wait_database(made[0], deadline)
            mark("database_ready")
            self._load_schema(made[0], schema)
            mark("schema_loaded")
            api = self._wait_bot_api(made[1], network, deadline)
            mark("bot_api_ready")
            secret_env = {}
            for svc in self.services:
                env = dict(self.secret_env.get(svc.name) or {})
                env["DATABASE_URL"] = f"postgresql://postgres:{DB_PASSWORD}@db:5432/{DB_NAME}"
                secret_env[svc.name] = env
            # (the secret environment wins over the plain one: DATABASE_URL is the check's)
            services = [dataclasses.replace(svc, strategy="blue_green",
                                            env={**svc.env, "TELEGRAM_API_BASE": f"http://telegram:{API_PORT}"})
                        for svc in self.services]
            switcher = _CheckSwitcher(self.client, prefix, self.release, self.image, network, services,
                                      secret_env=secret_env, restart_policy="no",
                                      healthcheck=self.healthcheck,
                                      ready_timeout=max(1.0, deadline - self.clock()), probe_retries=10,
                                      probe_delay=0.5, sleep=self.sleep, clock=self.clock)
            made.extend(f"{prefix}_{s.name}_{self.release}" for s in services)
            try:
                result = switcher.run()
            except SwitchError as exc:
                raise CheckFailed(f"{exc}; last lines: " + " ; ".join(
                    f"{n.rsplit('_', 1)[0][len(prefix) + 1:]}: {self._tail(n)}" for n in made[2:]),
                    "ready") from exc
            out["readiness"] = result.get("readiness") or {}
            mark("services_ready")
            sent = self._send_updates(api)
            out["updates"] = self._wait_updates(api, sent, prefix) if sent else {}
            if any(bot.get("mode") == "webhook" for bot in self.bots if str(bot.get("name")) in sent):
                # a webhook bot that answers before it processes (python-telegram-bot's
                # own webhook server) logs a failed handler just after
                self.sleep(SETTLE)
            mark("messages_taken")
            params = dict(self.health, services=[
                {"name": s.name, "container": f"{prefix}_{s.name}_{self.release}", "release": self.release,
                 "heartbeat": self.heartbeats.get(s.name, "auto"),
                 # the row the container writes (its HEARTBEAT_KEY on one of several servers)
                 "heartbeat_key": s.env.get("HEARTBEAT_KEY") or s.name} for s in services],
                db_container=made[0], db_user="postgres", db_name=DB_NAME, timeout=self.health_timeout)
            report = health.run_health_check(self.client, params, clock=time.time, sleep=self.sleep)
            if report["status"] != health.PASSED:
                raise CheckFailed(f"health check FAILED ({report['reason']})", "health")
            mark("healthy")
            out["ok"] = True
        except CheckFailed as exc:
            out.update(stage=exc.stage, reason=scrub(str(exc)))
        except Exception as exc:  # noqa: BLE001 - an engine error: reported, the cleanup still runs
            out.update(stage="engine", reason=scrub(f"{type(exc).__name__}: {exc}"))
        finally:
            self.cleanup(lambda: self._remove(made, network))
            out["seconds"] = round(self.clock() - began, 2)
        return out

    def _remove(self, names: list, network: str) -> None:
        for name in reversed(names):
            try:
                self.client.remove_container(name, force=True)
            except Exception:  # noqa: BLE001 - the next one is still removed
                pass
        try:
            self.client.remove_network(network)
        except Exception:  # noqa: BLE001
            pass

    # -- the check -------------------------------------------------------------

    def remove_leftovers(self) -> list:
        """Containers and networks of a check of this app that was killed
        (older than an hour: a check running now in another deploy is left)."""
        removed = []
        cutoff = time.time() - LEFTOVER_AGE
        for doc in self.client.list_containers({"fs.check.of": self.app}):
            labels = doc.get("Labels") or {}
            if int(labels.get("fs.check.started") or 0) < cutoff:
                name = str((doc.get("Names") or [""])[0]).lstrip("/")
                self.client.remove_container(name, force=True)
                removed.append(name)
        for net in self.client.list_networks({"fs.check.of": self.app}):
            labels = net.get("Labels") or {}
            if int(labels.get("fs.check.started") or 0) < cutoff:
                self.client.remove_network(net["Name"])
                removed.append(net["Name"])
        return removed

    def run(self, schema: str, serving_schema: str = "") -> dict:
        """The verdict: ``passed``, ``refused`` (it fails on the new schema,
        not on its own) or ``inconclusive`` (it fails on both)."""
        result = {"changed": False, "verdict": "passed", "reason": "", "new_schema": {}, "own_schema": {},
                  "leftovers_removed": self.remove_leftovers()}
        if self.client.inspect_image(self.image) is None:
            result.update(verdict="inconclusive",
                          reason=f"the serving release's image {self.image} is not on the server")
            return result
        first = self.run_once(schema)
        result["new_schema"] = first
        if first["ok"]:
            result["reason"] = (f"the serving release {self.release} runs on the new schema and took its "
                                f"test messages ({first['seconds']:g} s)")
            return result
        if not serving_schema:
            result.update(verdict="refused", reason=f"the serving release {self.release} fails on the new "
                                                    f"schema: {first['reason']}")
            return result
        control = self.run_once(serving_schema)
        result["own_schema"] = control
        if control["ok"]:
            result.update(verdict="refused", reason=(
                f"the serving release {self.release} fails on the new schema ({first['reason']}), and runs "
                f"on its own: an automatic rollback would put back a release that cannot run"))
        else:
            result.update(verdict="inconclusive", reason=(
                f"the serving release {self.release} does not run in the check's isolated network on its "
                f"own schema either ({control['reason']}), so the check cannot tell whether the new schema "
                f"breaks it (on the new one: {first['reason']})"))
        return result
