# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The graceful switch of an app's services to another release, in one go.

This is the logic of the ``switch`` module (roles/graceful_restart): one
Python process talks to the Docker engine (``docker_api``) instead of a
dozen Ansible tasks, so a switch (and a rollback) costs seconds of real work
and not a module start per step. Plain stdlib, unit tested with a fake engine.

The sequence, per service strategy (docs/zero-downtime.md has the contract):

1. The app's containers are listed (label ``fs.app``). Every service
   container of another release is *old*.
2. ``recreate`` services: their running old containers are stopped first
   (SIGTERM, their stop_timeout, SIGKILL): not zero-downtime.
3. The new release's containers start beside the old ones (one per
   service, ``<app>_<service>_<release>``). A container of that name that
   already runs with the same settings (the ``fs.config`` label, a hash of
   them) is kept; any other is replaced.
4. Ready: every new container runs, is not restarting, passes its health
   check when it has one (the engine reports ``healthy``, or the check run
   now by exec passes: no wait for the engine's ``--interval``), and passes
   its service's ``readiness``: its readiness path answers 200 from the
   server (``http``), it has a health check (``healthcheck``), its port
   accepts connections (``tcp``), or it ran ``ready_after`` seconds without
   a restart (``running``).
5. Services behind the proxy: their upstream files in the proxy container
   are rewritten, ``nginx -t`` checks the whole configuration, then one
   graceful ``nginx -s reload``. If the check or the reload fails, the
   previous files are put back: nginx never stopped serving them.
6. Old containers not behind the proxy get SIGTERM (a polling bot hands
   over to the new one in standby) and are removed; then, once the drain
   time since the reload has passed, the old containers behind the proxy.

If anything fails before the proxy switched (a container does not start or
never becomes ready, the proxy refuses the configuration), the new
containers are removed, the stopped ``recreate`` containers are started
again, and the old release keeps serving: ``SwitchError`` says why.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import re
import socket
import tarfile
import time
import urllib.parse
from dataclasses import dataclass, field

from ansible_collections.fieldservice.deploy.plugins.module_utils.readiness import READY, wait_ready
from ansible_collections.fieldservice.deploy.plugins.module_utils.services import (
    DEFAULT_PORT,
    DEFAULT_READINESS_PATH,
    DEFAULT_READY_AFTER,
    DOCS_READINESS,
    READINESS,
    STRATEGIES,
    container_name,
    default_strategy,
)

CONFIG_LABEL = "fs.config"
DOCS_STOP = "docs/zero-downtime.md#every-service"
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
            "h": 3_600_000_000_000}
_URL_CREDENTIALS = re.compile(r"(\w+://)[^@\s/]*@")


class SwitchError(Exception):
    """The switch did not happen; the old release keeps serving.

    ``stage`` is where it stopped: ``start``, ``ready``, ``probe`` or ``proxy``.
    ``proxy_missing`` is set when the proxy container does not run, and
    ``image_missing`` when the release's image is not on the server: nothing
    was changed (provision the proxy, build the image, then switch again).
    """

    def __init__(self, message: str, stage: str, proxy_missing: bool = False, image_missing: bool = False):
        super().__init__(message)
        self.stage = stage
        self.proxy_missing = proxy_missing
        self.image_missing = image_missing


@dataclass
class Service:
    name: str
    command: list
    strategy: str = "handoff"
    proxied: bool = False
    port: int = DEFAULT_PORT
    readiness_path: str = "/ready"
    stop_timeout: int = 20
    env: dict = field(default_factory=dict)
    readiness: str = "auto"  # http | healthcheck | tcp | running | auto
    ready_after: float = DEFAULT_READY_AFTER

    def __post_init__(self) -> None:
        if self.readiness == "http" and not self.readiness_path:
            self.readiness_path = DEFAULT_READINESS_PATH

    @classmethod
    def from_dict(cls, d: dict, default_stop_timeout: int = 20) -> Service:
        strategy = d.get("strategy") or default_strategy(d.get("mode"), bool(d.get("single_poller")))
        if strategy not in STRATEGIES:
            raise ValueError(f"service {d.get('name')!r}: unknown strategy {strategy!r}")
        path = str(d.get("readiness_path") or "")
        readiness = str(d.get("readiness") or "auto")
        if readiness == "auto" and path:
            readiness = "http"
        if readiness not in READINESS:
            raise ValueError(f"service {d.get('name')!r}: unknown readiness {readiness!r}")
        stop = d.get("stop_timeout")
        return cls(
            name=str(d["name"]),
            command=[str(c) for c in (d.get("command") or [])],
            strategy=strategy,
            proxied=bool(d.get("proxied")),
            port=int(d.get("port") or DEFAULT_PORT),
            readiness_path=path if readiness == "http" else "",
            readiness=readiness,
            ready_after=float(DEFAULT_READY_AFTER if d.get("ready_after") in (None, "")
                              else d["ready_after"]),
            stop_timeout=int(default_stop_timeout if stop in (None, "") else stop),
            env={str(k): "" if v is None else str(v) for k, v in (d.get("env") or {}).items()},
        )


@dataclass
class OldContainer:
    name: str
    service: str
    release: str
    strategy: str
    proxied: bool
    running: bool
    stop_timeout: int


@dataclass
class Plan:
    old: list
    new: list
    proxy_running: bool | None  # None: the app has no proxy container


def _name(doc: dict) -> str:
    names = doc.get("Names") or [""]
    return str(names[0]).lstrip("/")


def make_plan(containers: list, app: str, release: str, services: list,
              default_stop_timeout: int = 20) -> Plan:
    """Old containers (with how each is replaced) from ``GET /containers/json``.

    A container of a service no longer in ``services`` is old too and simply
    stopped (as a handoff service: after the new ones are ready).
    """
    by_name = {s.name: s for s in services}
    old = []
    proxy_running = None
    for doc in containers:
        labels = doc.get("Labels") or {}
        if labels.get("fs.app") != app:
            continue
        running = doc.get("State") in ("running", "restarting")
        if labels.get("fs.role") == "proxy":
            proxy_running = bool(proxy_running) or doc.get("State") == "running"
            continue
        if labels.get("fs.role") != "service" or labels.get("fs.release", "") == release:
            continue
        svc = by_name.get(labels.get("fs.service", ""))
        old.append(OldContainer(
            name=_name(doc),
            service=labels.get("fs.service", ""),
            release=labels.get("fs.release", ""),
            strategy=svc.strategy if svc else "handoff",
            proxied=svc.proxied if svc else False,
            running=running,
            stop_timeout=svc.stop_timeout if svc else default_stop_timeout,
        ))
    old.sort(key=lambda c: c.name)
    return Plan(old=old, new=[container_name(app, s.name, release) for s in services],
                proxy_running=proxy_running)


def duration_ns(value) -> int:
    """Docker's health check durations: ``2s``, ``1m30s``, ``500ms`` or seconds as a number."""
    if value is None or value == "":
        return 0
    if isinstance(value, (int, float)):
        return int(float(value) * 1_000_000_000)
    text = str(value).strip()
    try:
        return int(float(text) * 1_000_000_000)
    except ValueError:
        pass
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _UNIT_NS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {value!r} (examples: 2s, 500ms, 1m30s)")
    return total


def healthcheck_config(hc: dict | None) -> dict | None:
    """The engine's ``Healthcheck`` from docker_container-style keys (None: the image's own)."""
    if not hc:
        return None
    test = hc.get("test")
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    out: dict = {"Test": [str(t) for t in (test or [])]}
    for key, api in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod")):
        if hc.get(key) not in (None, ""):
            out[api] = duration_ns(hc[key])
    if hc.get("retries") not in (None, ""):
        out["Retries"] = int(hc["retries"])
    return out


def create_body(app: str, release: str, image: str, network: str, svc: Service,
                secret_env: dict | None = None, restart_policy: str = "unless-stopped",
                healthcheck: dict | None = None, log_driver: str = "json-file",
                log_options: dict | None = None) -> dict:
    """The ``POST /containers/create`` body of one service's container.

    Its ``fs.config`` label is a hash of everything else, so a container of
    the same name with other settings is told apart and replaced.
    """
    env = dict(svc.env)
    env.update({str(k): "" if v is None else str(v) for k, v in (secret_env or {}).items()})
    body: dict = {
        "Image": image,
        "Cmd": list(svc.command) or None,
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "Labels": {
            "fs.app": app,
            "fs.role": "service",
            "fs.service": svc.name,
            "fs.release": release,
            "fs.strategy": svc.strategy,
        },
        "StopTimeout": int(svc.stop_timeout),
        "HostConfig": {
            "NetworkMode": network,
            "RestartPolicy": {"Name": "" if restart_policy == "no" else restart_policy},
            "LogConfig": {"Type": log_driver,
                          "Config": {str(k): str(v) for k, v in (log_options or {}).items()}},
        },
        "NetworkingConfig": {"EndpointsConfig": {network: {"Aliases": [svc.name]}}},
    }
    if body["Cmd"] is None:
        del body["Cmd"]
    hc = healthcheck_config(healthcheck)
    if hc is not None:
        body["Healthcheck"] = hc
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    body["Labels"][CONFIG_LABEL] = digest
    return body


def upstream_conf(service: str, release: str, host: str, port: int) -> str:
    """One service's upstream file in the proxy (as roles/proxy/templates/upstream.conf.j2)."""
    return (
        f"# {service} -> {release or 'nothing deployed yet'}\n"
        "# Rewritten by the deploy at each switch, then `nginx -s reload`.\n"
        f'set $fs_upstream "{host}:{port}";\n'
    )


def tar_files(files: dict, mode: int = 0o644) -> bytes:
    """A tar archive of {name: text} (owner root) for ``PUT /containers/{id}/archive``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in sorted(files.items()):
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.uid = info.gid = 0
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def scrub(text: str) -> str:
    """Credentials out of URLs in a message (a DATABASE_URL in an engine error)."""
    return _URL_CREDENTIALS.sub(r"\1***@", str(text))


def http_probe(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """GET url; (status, error). Status 0 when nothing answered.

    A direct connection to the container's address: never through a proxy
    of the environment (``http_proxy`` names a way to the internet, not to a
    container on the app network), so plain ``http.client``, not urllib.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return 0, f"not an http:// URL: {url}"
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
                     headers={"Connection": "close"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return 0, str(exc) or type(exc).__name__
    finally:
        conn.close()
    return status, "" if 200 <= status < 300 else f"HTTP {status}"


def tcp_probe(host: str, port: int, timeout: float = 3.0) -> tuple[bool, str]:
    """Whether host:port accepts a TCP connection; (ok, error)."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, str(exc) or type(exc).__name__


def has_healthcheck(inspect: dict | None) -> bool:
    """Whether the container has a health check (its image's or its own)."""
    test = (((inspect or {}).get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


@dataclass
class ProxySettings:
    container: str
    directory: str = "/etc/nginx"
    conf: str = "/etc/nginx/fs_nginx.conf"
    drain_seconds: float = 2.0
    pid_file: str = "/run/fs_nginx.pid"


class Switcher:
    """Runs one switch against a Docker client (``docker_api.DockerClient``
    or a fake with the same methods)."""

    def __init__(self, client, app: str, release: str, image: str, network: str, services: list,
                 secret_env: dict | None = None, proxy: ProxySettings | None = None,
                 restart_policy: str = "unless-stopped", healthcheck: dict | None = None,
                 log_driver: str = "json-file", log_options: dict | None = None,
                 ready_timeout: float = 120, probe_retries: int = 30, probe_delay: float = 1.0,
                 ready_interval: float = 0.5, default_stop_timeout: int = 20,
                 probe=http_probe, tcp=None, clock=time.monotonic, sleep=time.sleep, log=None,
                 on_stage=None, on_serving=None):
        self.client = client
        self.app = app
        self.release = release
        self.image = image
        self.network = network
        self.services = services
        self.secret_env = secret_env or {}
        self.proxy = proxy
        self.restart_policy = restart_policy
        self.healthcheck = healthcheck
        self.log_driver = log_driver
        self.log_options = log_options or {}
        self.ready_timeout = ready_timeout
        self.probe_retries = max(1, int(probe_retries))
        self.probe_delay = probe_delay
        self.ready_interval = ready_interval
        self.default_stop_timeout = default_stop_timeout
        self.probe = probe
        self.tcp = tcp or tcp_probe
        self.clock = clock
        self.sleep = sleep
        self.log = log or (lambda msg: None)
        # on_stage(name): the switch got that far; on_serving(): the new
        # containers take the traffic (proxy reloaded, handoff done), the
        # moment the server's record must say so (plugins/modules/switch.py)
        self.on_stage = on_stage or (lambda stage: None)
        self.on_serving = on_serving or (lambda: None)
        self.result: dict = {"changed": False, "created": [], "kept": [], "stopped": [],
                             "switched": False, "addresses": {}, "timings": {}, "readiness": {},
                             "guarantees": {}, "gaps": {}, "summary": [], "killed": []}
        self._t0 = clock()
        self._created: list = []
        self._recreate_stopped: list = []
        self._serving_before: set = set()
        self._down_since: dict = {}  # service -> when its recreate stop began
        self._started_at: dict = {}  # container -> when this switch started it
        self._ready_at: dict = {}  # service -> when it passed its readiness

    # -- helpers -----------------------------------------------------------

    def _mark(self, phase: str) -> None:
        self.result["timings"][phase] = round(self.clock() - self._t0, 2)

    @property
    def proxied(self) -> list:
        return [s for s in self.services if s.proxied]

    def _upstream_path(self, svc: Service) -> str:
        return f"{self.proxy.directory.rstrip('/')}/fs_upstream_{svc.name}.conf"

    def _read_upstreams(self) -> dict:
        """Current upstream files of the services behind the proxy ({service: text or None})."""
        out = {}
        for svc in self.proxied:
            rc, text, dummy = self.client.exec_run(self.proxy.container, ["cat", self._upstream_path(svc)],
                                                   timeout=30)
            out[svc.name] = text if rc == 0 else None
        return out

    def _write_upstreams(self, texts: dict) -> None:
        files = {f"fs_upstream_{name}.conf": text for name, text in texts.items() if text is not None}
        if files:
            self.client.put_archive(self.proxy.container, self.proxy.directory, tar_files(files))

    def _stop(self, name: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; an old container that had
        to be killed (exit 137) is said so: what it had taken and not
        finished (a webhook server's queue) may be lost."""
        self.client.stop_container(name, timeout)
        state = (self.client.inspect_container(name) or {}).get("State") or {}
        if state.get("ExitCode") == 137 and not state.get("OOMKilled"):
            self.result["killed"].append(
                f"{name} did not stop within its stop_timeout ({timeout} s) and was killed: what it had "
                "taken and not finished may be lost; give the service a longer stop_timeout, or make it "
                f"finish faster on SIGTERM ({DOCS_STOP})")

    def _stop_and_remove(self, name: str, timeout: int) -> None:
        self._stop(name, timeout)
        self.client.remove_container(name, force=True)
        self.result["stopped"].append(name)
        self.result["changed"] = True

    def _give_up(self, reason: str, stage: str) -> None:
        """Remove what this switch started, restart what it stopped, raise."""
        if stage == "proxy" and not self._serving_before:
            message = (f"The proxy could not be switched to the new release {self.release} ({reason}); "
                       "its containers were removed. Nothing of this app was serving before this switch, "
                       "and nothing serves now.")
        elif stage == "proxy":
            message = (f"The proxy could not be switched to the new release {self.release} ({reason}); "
                       "its containers were removed, the previous upstreams were put back and keep serving.")
        elif not self._serving_before:
            message = (f"The new release {self.release} did not become ready; its containers were "
                       "removed. Nothing of this app was serving before this switch, and nothing "
                       f"serves now. {reason}")
        elif self._recreate_stopped:
            message = (f"The new release {self.release} did not become ready; its containers were "
                       f"removed and the containers it had stopped (recreate) were started again. {reason}")
        else:
            message = (f"The new release {self.release} did not become ready; its containers were removed "
                       f"and the serving release keeps serving. {reason}")
        problems = []
        for name in self._created:
            try:
                self.client.remove_container(name, force=True)
            except Exception as exc:  # noqa: BLE001 - reported, the next one is still tried
                problems.append(f"could not remove {name}: {exc}")
        for name in self._recreate_stopped:
            try:
                self.client.start_container(name)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"could not start {name} again: {exc}")
        if problems:
            message += " (" + "; ".join(problems) + ")"
        raise SwitchError(scrub(message), stage)

    # -- the switch ----------------------------------------------------------

    def plan(self) -> Plan:
        containers = self.client.list_containers({"fs.app": self.app})
        return make_plan(containers, self.app, self.release, self.services, self.default_stop_timeout)

    def run(self, check_mode: bool = False) -> dict:
        plan = self.plan()
        self.result["old"] = [c.name for c in plan.old]
        self.result["new"] = plan.new
        use_proxy = bool(self.proxied) and self.proxy is not None
        proxy_missing = use_proxy and not plan.proxy_running
        image_missing = self.client.inspect_image(self.image) is None
        if proxy_missing or image_missing:
            missing = [f"the proxy container {self.proxy.container} is not running"] if proxy_missing else []
            missing += [f"the image {self.image} is not on the server"] if image_missing else []
            raise SwitchError("; ".join(missing), "proxy" if proxy_missing else "image",
                              proxy_missing=proxy_missing, image_missing=image_missing)
        if check_mode:
            self.result["changed"] = bool(plan.old) or any(
                self.client.inspect_container(n) is None for n in plan.new)
            return self.result

        # 2. recreate: the old container stops before the new one starts
        self._serving_before = {c.service for c in plan.old if c.running}
        for c in plan.old:
            if c.strategy == "recreate" and c.running:
                self.log(f"stopping {c.name} (recreate)")
                self._down_since.setdefault(c.service, self.clock())
                self._stop(c.name, c.stop_timeout)
                self._recreate_stopped.append(c.name)
                self.result["changed"] = True
        self._mark("recreate_stopped")

        # 3. start the new containers beside the old ones
        for svc in self.services:
            name = container_name(self.app, svc.name, self.release)
            body = create_body(self.app, self.release, self.image, self.network, svc,
                               self.secret_env.get(svc.name), self.restart_policy, self.healthcheck,
                               self.log_driver, self.log_options)
            try:
                current = self.client.inspect_container(name)
                if current is not None:
                    labels = (current.get("Config") or {}).get("Labels") or {}
                    state = current.get("State") or {}
                    if labels.get(CONFIG_LABEL) == body["Labels"][CONFIG_LABEL] and state.get("Running"):
                        self.result["kept"].append(name)
                        continue
                    self.client.remove_container(name, force=True)
                self.client.create_container(name, body)
                self._created.append(name)
                self.client.start_container(name)
                self._started_at[name] = self.clock()
            except Exception as exc:  # noqa: BLE001 - any engine error gives the release up
                self._give_up(f"Could not start {name}: {exc}", "start")
            self.result["created"].append(name)
            self.result["changed"] = True
        self._mark("started")
        self.on_stage("new containers started")

        # 4. ready: running, healthy, and the readiness path answers 200
        ok, verdicts, reason, dummy = wait_ready(self.client.inspect_container, plan.new, self.ready_timeout,
                                                 self.ready_interval, clock=self.clock, sleep=self.sleep,
                                                 run_check=self._run_health_check)
        self.result["ready"] = {v.name: v.state == READY for v in verdicts}
        if not ok:
            self._give_up(reason, "ready")
        self._mark("ready")
        for svc in self.services:
            name = container_name(self.app, svc.name, self.release)
            doc = self.client.inspect_container(name) or {}
            nets = (doc.get("NetworkSettings") or {}).get("Networks") or {}
            self.result["addresses"][svc.name] = (nets.get(self.network) or {}).get("IPAddress", "")
        for svc in self.services:
            self._check_readiness(svc)
        self._mark("probed")
        self.on_stage("new containers ready")

        # 5. the proxy: new upstreams, nginx -t, one graceful reload
        switched_at = None
        if use_proxy:
            previous = self._read_upstreams()
            wanted = {svc.name: upstream_conf(svc.name, self.release,
                                              container_name(self.app, svc.name, self.release), svc.port)
                      for svc in self.proxied}
            if any(previous.get(name) != text for name, text in wanted.items()):
                self._switch_proxy(previous, wanted)
                switched_at = self.clock()
                self.result["switched"] = True
                self.result["changed"] = True
        self._mark("switched")
        self.on_stage("proxy switched")

        # 6. the old containers: not behind the proxy first (handoff), then,
        # after the drain time, those behind it
        for c in plan.old:
            if not c.proxied:
                self._stop_and_remove(c.name, c.stop_timeout)
        self._mark("handed_over")
        # the new release takes all the traffic now: the record says so
        # before anything else happens
        self._guarantees()
        self.on_serving()
        self.result["recorded"] = True
        self.on_stage("serving; stopping the old containers behind the proxy")
        behind = [c for c in plan.old if c.proxied]
        if switched_at is not None and any(c.running for c in behind):
            left = self.proxy.drain_seconds - (self.clock() - switched_at)
            if left > 0:
                self.sleep(left)
        for c in behind:
            self._stop_and_remove(c.name, c.stop_timeout)
        self._mark("old_stopped")
        return self.result

    def _readiness_kind(self, svc: Service, doc: dict) -> str:
        """The service's readiness with ``auto`` decided: its readiness path,
        else the image's health check, else its port behind the proxy, else
        running for ``ready_after`` seconds."""
        if svc.readiness != "auto":
            return svc.readiness
        if svc.readiness_path:
            return "http"
        if has_healthcheck(doc):
            return "healthcheck"
        return "tcp" if svc.proxied else "running"

    def _check_readiness(self, svc: Service) -> None:
        name = container_name(self.app, svc.name, self.release)
        doc = self.client.inspect_container(name) or {}
        kind = self._readiness_kind(svc, doc)
        addr = self.result["addresses"].get(svc.name)
        fix = (f"set readiness (http, healthcheck, tcp or running) or readiness_path of {svc.name} in "
               f"app_services; see {DOCS_READINESS}")
        if kind == "http":
            self.result["readiness"][svc.name] = f"http GET {svc.readiness_path}"
            url = f"http://{addr}:{svc.port}{svc.readiness_path}"
            status, error = 0, "no address in the app network"
            for attempt in range(self.probe_retries):
                if not addr:
                    break
                status, error = self.probe(url)
                if status == 200:
                    break
                if attempt + 1 < self.probe_retries:
                    self.sleep(self.probe_delay)
            if status != 200:
                self._give_up(f"{svc.name}: readiness path not ready: GET {svc.readiness_path}: "
                              f"{error or status} ({fix})", "probe")
        elif kind == "tcp":
            self.result["readiness"][svc.name] = f"tcp port {svc.port}"
            ok, error = False, "no address in the app network"
            for attempt in range(self.probe_retries):
                if not addr:
                    break
                ok, error = self.tcp(addr, svc.port)
                if ok:
                    break
                if attempt + 1 < self.probe_retries:
                    self.sleep(self.probe_delay)
            if not ok:
                self._give_up(f"{svc.name}: port {svc.port} does not accept connections: {error} ({fix})",
                              "probe")
        elif kind == "healthcheck":
            self.result["readiness"][svc.name] = "the image's HEALTHCHECK"
            if not has_healthcheck(doc):
                self._give_up(f"{svc.name}: readiness is healthcheck but the container has no "
                              "HEALTHCHECK (add one to the Dockerfile or graceful_restart_healthcheck, "
                              f"or {fix})", "probe")
        else:  # running: not restarting for ready_after seconds
            self.result["readiness"][svc.name] = f"running {svc.ready_after:g} s"
            # a container this switch created has not restarted yet: any
            # restart since is a crash, however late this check comes
            first = 0 if name in self._started_at else int(doc.get("RestartCount") or 0)
            started = self._started_at.get(name)
            left = 0.0 if started is None else svc.ready_after - (self.clock() - started)
            if left > 0:
                self.sleep(left)
            now = self.client.inspect_container(name) or {}
            state = now.get("State") or {}
            restarted = int(now.get("RestartCount") or 0) > first
            if not state.get("Running") or state.get("Restarting") or restarted:
                self._give_up(f"{svc.name}: did not keep running for {svc.ready_after:g} s "
                              f"({state.get('Status') or 'gone'}, exit code {state.get('ExitCode')}; "
                              "its logs say why)", "probe")
        # a container judged by running takes its work as soon as it runs:
        # its gap ends when it started, not after the observation window
        now = self.clock()
        self._ready_at[svc.name] = self._started_at.get(name, now) if kind == "running" else now

    def _guarantees(self) -> None:
        """What each service got from this switch, in words, and the measured gap of a recreate."""
        for svc in self.services:
            gap = None
            if container_name(self.app, svc.name, self.release) in self.result["kept"]:
                text = "kept (it was already running)"
            elif svc.name not in self._serving_before:
                text = "first start (none of it was serving)"
            elif svc.strategy == "recreate":
                # from the SIGTERM to the old container until the new one is
                # ready (readiness running: until it started)
                since = self._down_since.get(svc.name)
                ready = self._ready_at.get(svc.name, self.clock())
                gap = round(ready - since, 2) if since is not None else 0.0
                text = f"recreate: down for {gap:.1f} s"
            elif svc.strategy == "handoff":
                text = "handoff, no overlap"
            elif svc.proxied:
                text = "blue/green behind the proxy"
            else:
                text = "blue/green, not behind the proxy (old and new overlap until the old one stops)"
            self.result["guarantees"][svc.name] = text
            self.result["gaps"][svc.name] = gap
            ready = self.result["readiness"].get(svc.name, "kept")
            self.result["summary"].append(f"{svc.name} {text} (ready: {ready})")

    def _run_health_check(self, name: str, argv: list, timeout: float) -> bool:
        """The container's own health check, run now (an exec) instead of at
        the engine's next ``--interval``: passed or not."""
        try:
            rc, dummy, dummy = self.client.exec_run(name, argv, timeout=min(timeout, 30.0))
        except Exception:  # noqa: BLE001 - not passed; the engine's own checks still count
            return False
        return rc == 0

    def _switch_proxy(self, previous: dict, wanted: dict) -> None:
        try:
            self._write_upstreams(wanted)
            rc, out, err = self.client.exec_run(
                self.proxy.container, ["nginx", "-t", "-q", "-c", self.proxy.conf], timeout=30)
            if rc != 0:
                raise RuntimeError(f"nginx -t: {(err or out).strip()}")
            wait_pid = (f"i=0; until [ -s {self.proxy.pid_file} ] || [ $i -ge 50 ]; do sleep 0.1; "
                        f"i=$((i+1)); done; exec nginx -c {self.proxy.conf} -s reload")
            rc, out, err = self.client.exec_run(self.proxy.container, ["sh", "-c", wait_pid], timeout=30)
            if rc != 0:
                raise RuntimeError(f"nginx -s reload: {(err or out).strip()}")
        except Exception as exc:  # noqa: BLE001 - the previous upstreams go back whatever failed
            restore = {name: text for name, text in previous.items() if text is not None}
            try:
                self._write_upstreams(restore)
            except Exception as exc2:  # noqa: BLE001
                exc = f"{exc}; putting the previous upstreams back failed too: {exc2}"
            self._give_up(str(exc), "proxy")
