"""The graceful switch (plugins/module_utils/switch.py) against a fake Docker engine.

The fake keeps containers and the proxy's files in memory and records every
call, so that the order of the steps (the whole point of a graceful switch)
is asserted, as are the failure paths: nothing of the new release is left
and the old one keeps serving.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import (
    CONFIG_LABEL,
    ProxySettings,
    Service,
    Switcher,
    SwitchError,
    create_body,
    duration_ns,
    healthcheck_config,
    make_plan,
    scrub,
    tar_files,
    upstream_conf,
)

APP = "fs"
NET = "fs_net"


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeDocker:
    """Containers by name; the proxy's files by path; every call in ``calls``."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.containers: dict[str, dict] = {}
        self.files: dict[str, str] = {}
        self.calls: list[tuple] = []
        self.fail_start: set[str] = set()
        self.missing_images: set[str] = set()
        self.unhealthy: set[str] = set()
        self.starting: set[str] = set()  # the engine has not run the health check yet
        self.check_fails: set[str] = set()  # the health check command exits 1
        self.no_check: set[str] = set()  # containers without a HEALTHCHECK
        self.crash_after: dict[str, int] = {}  # container -> inspections before it exits
        self.hangs_on_stop: set = set()
        self.nginx_test_rc = 0
        self.reload_rc = 0
        self.ip = 10

    def add(self, name, labels, state="running"):
        self.containers[name] = {"Name": name, "Labels": dict(labels), "State": state, "Body": None}

    # -- the client's interface --------------------------------------------
    def list_containers(self, labels=None, all=True):  # noqa: A002
        self.calls.append(("list",))
        out = []
        for name, c in self.containers.items():
            if labels and any(c["Labels"].get(k) != v for k, v in labels.items()):
                continue
            out.append({"Names": ["/" + name], "Labels": c["Labels"], "State": c["State"]})
        return out

    def inspect_container(self, name):
        c = self.containers.get(name)
        if c is None:
            return None
        if name in self.crash_after:
            self.crash_after[name] -= 1
            if self.crash_after[name] < 0:
                c["State"] = "exited"
        running = c["State"] == "running"
        doc = {"Config": {"Labels": c["Labels"], "Healthcheck": {"Test": ["CMD", "true"]}},
               "State": {"Running": running, "Status": c["State"], "Restarting": False,
                         "ExitCode": c.get("ExitCode", 0),
                         "Health": {"Status": "unhealthy" if name in self.unhealthy
                                    else "starting" if name in self.starting else "healthy"}},
               "RestartCount": 0,
               "NetworkSettings": {"Networks": {NET: {"IPAddress": c.get("ip", "")}}}}
        if name in self.no_check:
            del doc["Config"]["Healthcheck"], doc["State"]["Health"]
        return doc

    def inspect_image(self, name):
        return None if name in self.missing_images else {"Id": name}

    def create_container(self, name, body):
        self.calls.append(("create", name))
        assert name not in self.containers
        self.ip += 1
        self.containers[name] = {"Name": name, "Labels": body["Labels"], "State": "created", "Body": body,
                                 "ip": f"172.20.0.{self.ip}"}
        return name

    def start_container(self, name):
        self.calls.append(("start", name))
        if name in self.fail_start:
            raise RuntimeError("image has no such command")
        self.containers[name]["State"] = "running"

    def stop_container(self, name, timeout):
        self.calls.append(("stop", name, timeout))
        if name in self.containers:
            self.containers[name]["State"] = "exited"
            # one that ignores SIGTERM: killed after the timeout
            self.containers[name]["ExitCode"] = 137 if name in self.hangs_on_stop else 0

    def remove_container(self, name, force=False, volumes=True):
        self.calls.append(("remove", name))
        self.containers.pop(name, None)

    def exec_run(self, container, cmd, timeout=60, **kw):
        self.calls.append(("exec", container, cmd[0] if cmd[0] != "sh" else "reload"))
        if cmd == ["true"]:  # the services' health check (Healthcheck.Test above)
            if container in self.containers and self.containers[container]["State"] != "running":
                raise RuntimeError(f"container {container} is not running")
            failing = container in self.unhealthy or container in self.check_fails
            return (1, "", "") if failing else (0, "", "")
        if cmd[0] == "cat":
            return (0, self.files[cmd[1]], "") if cmd[1] in self.files else (1, "", "No such file")
        if cmd[0] == "nginx":
            return self.nginx_test_rc, "", "" if self.nginx_test_rc == 0 else "host not found in upstream"
        return self.reload_rc, "", ""

    def put_archive(self, container, path, data):
        self.calls.append(("put", container))
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                self.files[f"{path}/{member.name}"] = tar.extractfile(member).read().decode()


def services():
    return [
        Service("admin_bot", ["python", "-m", "admin"], "blue_green", True, 8080, "/ready", 20, {"A": "1"}),
        Service("master_bot", ["python", "-m", "master"], "handoff", False, 8080, "/ready", 15, {}),
    ]


def service_labels(svc, release, strategy="blue_green"):
    return {"fs.app": APP, "fs.role": "service", "fs.service": svc, "fs.release": release,
            "fs.strategy": strategy}


def serving_v1(clock):
    eng = FakeDocker(clock)
    eng.add("fs_proxy", {"fs.app": APP, "fs.role": "proxy"})
    eng.add("fs_admin_bot_v1", service_labels("admin_bot", "v1"))
    eng.add("fs_master_bot_v1", service_labels("master_bot", "v1", "handoff"))
    eng.add("other_admin_bot_v1", {**service_labels("admin_bot", "v1"), "fs.app": "other"})
    eng.files["/etc/nginx/fs_upstream_admin_bot.conf"] = upstream_conf(
        "admin_bot", "v1", "fs_admin_bot_v1", 8080)
    return eng


def switcher(eng, clock, release="v2", svcs=None, probe=None, **kw):
    probes = []

    def default_probe(url):
        probes.append(url)
        return 200, ""

    s = Switcher(eng, APP, release, f"fs:{release}", NET, svcs or services(),
                 secret_env={"admin_bot": {"DATABASE_URL": "postgresql://u:secret@db/x"}},
                 proxy=ProxySettings("fs_proxy", drain_seconds=2), probe=probe or default_probe,
                 clock=clock, sleep=clock.sleep, **kw)
    s.probes = probes
    return s


def test_blue_green_and_handoff_in_the_right_order():
    clock = FakeClock()
    eng = serving_v1(clock)
    s = switcher(eng, clock)
    result = s.run()

    assert result["changed"] and result["switched"]
    assert sorted(result["created"]) == ["fs_admin_bot_v2", "fs_master_bot_v2"]
    assert result["stopped"] == ["fs_master_bot_v1", "fs_admin_bot_v1"]
    assert sorted(eng.containers) == ["fs_admin_bot_v2", "fs_master_bot_v2", "fs_proxy", "other_admin_bot_v1"]
    assert eng.files["/etc/nginx/fs_upstream_admin_bot.conf"] == upstream_conf(
        "admin_bot", "v2", "fs_admin_bot_v2", 8080)
    order = [c[:2] if c[0] != "exec" else ("exec", c[2]) for c in eng.calls if c[0] != "list"]
    # new ones start, then the proxy is checked and reloaded, then handoff
    # stops, then the blue_green old one after the drain
    i_start = max(order.index(("start", "fs_admin_bot_v2")), order.index(("start", "fs_master_bot_v2")))
    i_reload = order.index(("exec", "reload"))
    assert order.index(("exec", "nginx")) < i_reload
    assert i_start < order.index(("put", "fs_proxy")) < i_reload
    assert i_reload < order.index(("stop", "fs_master_bot_v1")) < order.index(("stop", "fs_admin_bot_v1"))
    # both readiness paths asked on the containers' addresses
    assert sorted(s.probes) == ["http://172.20.0.11:8080/ready", "http://172.20.0.12:8080/ready"]
    # each old one got its own stop timeout
    assert ("stop", "fs_master_bot_v1", 15) in eng.calls and ("stop", "fs_admin_bot_v1", 20) in eng.calls


def test_readiness_does_not_wait_for_the_engines_next_health_check():
    # The engine has not run the (every --interval) health check of the new
    # containers yet: the switch runs it itself, and it passes at once.
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.starting.update({"fs_admin_bot_v2", "fs_master_bot_v2"})
    result = switcher(eng, clock).run()
    assert result["switched"] and result["timings"]["ready"] == 0
    assert ("exec", "fs_admin_bot_v2", "true") in eng.calls
    assert ("exec", "fs_master_bot_v2", "true") in eng.calls


def test_a_health_check_that_fails_when_run_keeps_the_container_waiting():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.starting.update({"fs_admin_bot_v2", "fs_master_bot_v2"})
    eng.check_fails.add("fs_master_bot_v2")
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock, ready_timeout=5).run()
    assert err.value.stage == "ready" and "fs_master_bot_v2: health starting" in str(err.value)
    assert "fs_admin_bot_v2" not in str(err.value).split("not ready after")[1]
    # asked again at every poll, until the timeout
    assert len([c for c in eng.calls if c[:2] == ("exec", "fs_master_bot_v2")]) >= 5
    assert sorted(eng.containers) == ["fs_admin_bot_v1", "fs_master_bot_v1", "fs_proxy", "other_admin_bot_v1"]


def test_drain_time_is_waited_between_the_reload_and_the_old_proxied_stop():
    clock = FakeClock()
    eng = serving_v1(clock)
    stamps = {}
    orig_exec, orig_stop = eng.exec_run, eng.stop_container

    def exec_run(container, cmd, timeout=60, **kw):
        if cmd[0] == "sh":
            stamps["reload"] = clock()
        return orig_exec(container, cmd, timeout, **kw)

    def stop(name, timeout):
        stamps[name] = clock()
        return orig_stop(name, timeout)

    eng.exec_run, eng.stop_container = exec_run, stop
    switcher(eng, clock).run()
    assert stamps["fs_admin_bot_v1"] - stamps["reload"] >= 2


def test_a_second_run_changes_nothing():
    clock = FakeClock()
    eng = serving_v1(clock)
    switcher(eng, clock).run()
    calls_before = len(eng.calls)
    again = switcher(eng, clock).run()
    assert not again["changed"] and not again["switched"]
    assert sorted(again["kept"]) == ["fs_admin_bot_v2", "fs_master_bot_v2"]
    assert set(again["guarantees"].values()) == {"kept (it was already running)"}
    assert not [c for c in eng.calls[calls_before:] if c[0] in ("create", "start", "stop", "remove", "put")]


def test_a_container_of_the_release_with_other_settings_is_replaced():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.add("fs_admin_bot_v2", {**service_labels("admin_bot", "v2"), CONFIG_LABEL: "stale"})
    result = switcher(eng, clock).run()
    assert ("remove", "fs_admin_bot_v2") in eng.calls
    assert "fs_admin_bot_v2" in result["created"]


def test_an_old_container_killed_at_its_stop_timeout_is_said_so():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.hangs_on_stop.add("fs_admin_bot_v1")
    result = switcher(eng, clock).run()
    [killed] = result["killed"]
    assert killed.startswith("fs_admin_bot_v1 did not stop within its stop_timeout (20 s) and was killed")
    assert "docs/zero-downtime.md#every-service" in killed
    # the one that stopped on SIGTERM (exit 0) is not named
    assert "fs_master_bot_v1" not in killed and result["stopped"] == ["fs_master_bot_v1", "fs_admin_bot_v1"]


def test_recreate_stops_the_old_one_before_starting_the_new_one():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.add("fs_worker_v1", service_labels("worker", "v1", "recreate"))
    svcs = services() + [Service("worker", ["w"], "recreate", False, 8080, "", 5, {})]
    switcher(eng, clock, svcs=svcs).run()
    order = [c[:2] for c in eng.calls]
    assert order.index(("stop", "fs_worker_v1")) < order.index(("create", "fs_worker_v2"))
    assert "fs_worker_v1" not in eng.containers and eng.containers["fs_worker_v2"]["State"] == "running"


def test_a_container_that_never_gets_healthy_is_removed_and_the_old_ones_keep_serving():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.add("fs_worker_v1", service_labels("worker", "v1", "recreate"))
    eng.unhealthy.add("fs_admin_bot_v2")
    svcs = services() + [Service("worker", ["w"], "recreate", False, 8080, "", 5, {})]
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock, svcs=svcs, ready_timeout=10).run()
    assert err.value.stage == "ready" and "fs_admin_bot_v2: health unhealthy" in str(err.value)
    assert "The new release v2 did not become ready; its containers were removed" in str(err.value)
    assert sorted(eng.containers) == ["fs_admin_bot_v1", "fs_master_bot_v1", "fs_proxy", "fs_worker_v1",
                                      "other_admin_bot_v1"]
    assert eng.containers["fs_worker_v1"]["State"] == "running"  # the stopped recreate one is back
    assert eng.files["/etc/nginx/fs_upstream_admin_bot.conf"].endswith('"fs_admin_bot_v1:8080";\n')
    assert not [c for c in eng.calls if c[0] == "put" or (c[0] == "exec" and c[1] == "fs_proxy")]


def test_a_container_that_cannot_start_gives_the_release_up_without_leaking_secrets():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.fail_start.add("fs_master_bot_v2")
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock).run()
    assert err.value.stage == "start" and "Could not start fs_master_bot_v2" in str(err.value)
    assert "fs_admin_bot_v2" not in eng.containers and "fs_master_bot_v2" not in eng.containers
    assert eng.containers["fs_admin_bot_v1"]["State"] == "running"


def test_a_readiness_path_that_never_answers_gives_the_release_up():
    clock = FakeClock()
    eng = serving_v1(clock)
    s = switcher(eng, clock, probe=lambda url: (503, "HTTP 503"), probe_retries=3)
    with pytest.raises(SwitchError) as err:
        s.run()
    assert err.value.stage == "probe" and "GET /ready: HTTP 503" in str(err.value)
    assert "fs_admin_bot_v2" not in eng.containers
    assert clock() - 1000.0 < 5  # three attempts, one second apart


def test_a_configuration_nginx_refuses_puts_the_previous_upstreams_back():
    clock = FakeClock()
    eng = serving_v1(clock)
    before = dict(eng.files)
    eng.nginx_test_rc = 1
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock).run()
    assert err.value.stage == "proxy" and "host not found in upstream" in str(err.value)
    assert "previous upstreams were put back" in str(err.value)
    assert eng.files == before
    assert "fs_admin_bot_v2" not in eng.containers and eng.containers["fs_admin_bot_v1"]["State"] == "running"
    assert not [c for c in eng.calls if c[0] == "exec" and c[2] == "reload"]


def test_a_proxy_that_does_not_run_changes_nothing():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.containers["fs_proxy"]["State"] = "exited"
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock).run()
    assert err.value.proxy_missing and not err.value.image_missing
    assert [c for c in eng.calls if c[0] != "list"] == []


def test_a_missing_image_changes_nothing_and_is_said_with_a_missing_proxy():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.missing_images.add("fs:v2")
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock).run()
    assert err.value.image_missing and not err.value.proxy_missing and err.value.stage == "image"
    eng.containers["fs_proxy"]["State"] = "exited"
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock).run()
    assert err.value.image_missing and err.value.proxy_missing
    assert "fs:v2 is not on the server" in str(err.value)
    assert [c for c in eng.calls if c[0] != "list"] == []


def test_check_mode_changes_nothing():
    clock = FakeClock()
    eng = serving_v1(clock)
    result = switcher(eng, clock).run(check_mode=True)
    assert result["changed"] and result["old"] == ["fs_admin_bot_v1", "fs_master_bot_v1"]
    assert [c for c in eng.calls if c[0] != "list"] == []


def test_without_a_proxy_only_handoff_happens():
    clock = FakeClock()
    eng = FakeDocker(clock)
    eng.add("fs_master_bot_v1", service_labels("master_bot", "v1", "handoff"))
    svcs = [Service("master_bot", ["m"], "handoff", False, 8080, "/ready", 15, {})]
    s = Switcher(eng, APP, "v2", "fs:v2", NET, svcs, proxy=None, probe=lambda url: (200, ""),
                 clock=clock, sleep=clock.sleep)
    result = s.run()
    assert result["stopped"] == ["fs_master_bot_v1"] and not result["switched"]


def test_plan_sorts_out_old_containers_of_gone_services():
    containers = [
        {"Names": ["/fs_gone_v1"], "Labels": service_labels("gone", "v1"), "State": "running"},
        {"Names": ["/fs_admin_bot_v2"], "Labels": service_labels("admin_bot", "v2"), "State": "running"},
        {"Names": ["/fs_proxy"], "Labels": {"fs.app": APP, "fs.role": "proxy"}, "State": "running"},
    ]
    plan = make_plan(containers, APP, "v2", services(), default_stop_timeout=7)
    assert [(c.name, c.strategy, c.proxied, c.stop_timeout) for c in plan.old] == [
        ("fs_gone_v1", "handoff", False, 7)]
    assert plan.new == ["fs_admin_bot_v2", "fs_master_bot_v2"] and plan.proxy_running is True


def test_create_body_carries_labels_network_alias_and_secrets():
    svc = services()[0]
    body = create_body(APP, "v2", "fs:v2", NET, svc, {"DATABASE_URL": "postgresql://u:p@db/x"},
                       "no", {"test": ["CMD", "true"], "interval": "2s", "retries": 3}, "json-file",
                       {"max-size": "10m"})
    assert body["Labels"]["fs.release"] == "v2" and len(body["Labels"][CONFIG_LABEL]) == 16
    assert body["NetworkingConfig"]["EndpointsConfig"][NET]["Aliases"] == ["admin_bot"]
    assert "A=1" in body["Env"] and "DATABASE_URL=postgresql://u:p@db/x" in body["Env"]
    assert body["HostConfig"]["RestartPolicy"] == {"Name": ""}
    assert body["Healthcheck"] == {"Test": ["CMD", "true"], "Interval": 2_000_000_000, "Retries": 3}
    other = create_body(APP, "v2", "fs:v2", NET, svc, {"DATABASE_URL": "postgresql://u:CHANGED@db/x"})
    assert other["Labels"][CONFIG_LABEL] != body["Labels"][CONFIG_LABEL]


@pytest.mark.parametrize("text,ns", [("2s", 2_000_000_000), ("500ms", 500_000_000), ("1m30s", 90_000_000_000),
                                     (3, 3_000_000_000), ("1.5", 1_500_000_000), ("", 0)])
def test_durations(text, ns):
    assert duration_ns(text) == ns


@pytest.mark.parametrize("text", ["2x", "s", "1s2", "ten seconds"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError):
        duration_ns(text)


def test_healthcheck_shell_form_and_empty():
    assert healthcheck_config({}) is None
    assert healthcheck_config({"test": "curl -f localhost"})["Test"] == ["CMD-SHELL", "curl -f localhost"]


def test_scrub_and_tar():
    assert scrub("bad env postgresql://user:pw@db:5432/x") == "bad env postgresql://***@db:5432/x"
    with tarfile.open(fileobj=io.BytesIO(tar_files({"a.conf": "x\n"}))) as tar:
        (member,) = tar.getmembers()
        assert member.name == "a.conf" and member.mode == 0o644 and member.uid == 0


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown strategy"):
        Service.from_dict({"name": "x", "strategy": "rolling"})


def test_the_readiness_probe_goes_straight_to_the_container_not_through_a_proxy(monkeypatch):
    import http.server
    import threading

    from ansible_collections.fieldservice.deploy.plugins.module_utils.switch import http_probe

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200 if self.path == "/ready" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # a proxy of the environment that nothing answers on: a probe sent
    # through it would fail
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert http_probe(f"{base}/ready") == (200, "")
        assert http_probe(f"{base}/other?x=1") == (503, "HTTP 503")
    finally:
        server.shutdown()
        server.server_close()
    status, error = http_probe(f"{base}/ready", timeout=1)
    assert status == 0 and error


def test_the_record_is_written_once_the_new_release_takes_all_the_traffic():
    """on_serving comes after the proxy reload and the handoff (old polling
    container stopped), before the old container behind the proxy is stopped
    after its drain; each stage is reported on the way."""
    clock = FakeClock()
    eng = serving_v1(clock)
    seen = []
    stages = []

    def on_serving():
        seen.append(list(eng.calls))

    s = switcher(eng, clock, on_serving=on_serving, on_stage=stages.append)
    result = s.run()
    assert result["recorded"] is True
    assert len(seen) == 1
    before = seen[0]
    assert ("exec", "fs_proxy", "reload") in before
    assert ("stop", "fs_master_bot_v1", 15) in before  # the handoff is done
    assert ("stop", "fs_admin_bot_v1", 20) not in before  # still draining
    assert ("stop", "fs_admin_bot_v1", 20) in eng.calls
    assert stages == ["new containers started", "new containers ready", "proxy switched",
                      "serving; stopping the old containers behind the proxy"]


def test_a_switch_given_up_never_records():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.unhealthy.add("fs_admin_bot_v2")
    seen = []
    s = switcher(eng, clock, on_serving=lambda: seen.append(1))
    with pytest.raises(SwitchError):
        s.run()
    assert seen == []


# -- readiness kinds and what each service got ---------------------------------


def stock(name="stock_bot", strategy="recreate", readiness="auto", proxied=False, ready_after=5.0):
    return Service(name, ["python", "bot.py"], strategy, proxied, 8080, "", 10, {}, readiness=readiness,
                   ready_after=ready_after)


def stock_serving(clock, name="stock_bot", strategy="recreate", no_check=True):
    eng = FakeDocker(clock)
    eng.add(f"fs_{name}_v1", service_labels(name, "v1", strategy))
    if no_check:
        eng.no_check.update({f"fs_{name}_v1", f"fs_{name}_v2"})
    return eng


def test_a_stock_poller_is_recreated_and_its_gap_is_measured():
    clock = FakeClock()
    eng = stock_serving(clock)
    orig_stop = eng.stop_container

    def slow_stop(name, timeout):  # the old one takes 1.5 s to finish its update and exit
        clock.sleep(1.5)
        return orig_stop(name, timeout)

    eng.stop_container = slow_stop
    result = switcher(eng, clock, svcs=[stock()]).run()
    # auto, no HEALTHCHECK, not behind the proxy: running for ready_after (5 s)
    assert result["readiness"] == {"stock_bot": "running 5 s"}
    # down from the SIGTERM to the old one until the new one runs (1.5 s);
    # the 5 s it is then watched for are not a gap: it polls meanwhile
    assert result["gaps"] == {"stock_bot": 1.5}
    assert result["guarantees"] == {"stock_bot": "recreate: down for 1.5 s"}
    assert clock() - 1000.0 >= 6.5  # but it was watched for 5 s before the switch ended
    order = [c[:2] for c in eng.calls]
    assert order.index(("stop", "fs_stock_bot_v1")) < order.index(("start", "fs_stock_bot_v2"))


def test_a_recreate_with_an_http_readiness_is_down_until_it_answers():
    clock = FakeClock()
    eng = stock_serving(clock)
    answers = iter([(0, "refused"), (0, "refused"), (200, "")])
    result = switcher(eng, clock, svcs=[stock(readiness="http")], probe=lambda url: next(answers)).run()
    assert result["readiness"] == {"stock_bot": "http GET /ready"}
    assert result["gaps"] == {"stock_bot": 2.0}  # two retries, one second apart


def test_a_container_that_exits_within_ready_after_is_given_up():
    clock = FakeClock()
    eng = stock_serving(clock)
    eng.crash_after["fs_stock_bot_v2"] = 1  # runs when first seen, exited after ready_after
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock, svcs=[stock()]).run()
    text = str(err.value)
    assert err.value.stage == "probe" and "stock_bot: did not keep running for 5 s (exited" in text
    # the stopped old one is started again: Telegram kept the updates, none lost
    assert "the containers it had stopped (recreate) were started again" in text
    assert "serving release keeps serving" not in text
    assert eng.containers["fs_stock_bot_v1"]["State"] == "running"
    assert "fs_stock_bot_v2" not in eng.containers


def test_auto_readiness_uses_the_images_healthcheck_when_there_is_one():
    clock = FakeClock()
    eng = stock_serving(clock, no_check=False)
    eng.starting.add("fs_stock_bot_v2")
    result = switcher(eng, clock, svcs=[stock()]).run()
    assert result["readiness"] == {"stock_bot": "the image's HEALTHCHECK"}
    assert ("exec", "fs_stock_bot_v2", "true") in eng.calls  # run by the switch itself


def test_readiness_healthcheck_without_one_names_the_setting():
    clock = FakeClock()
    eng = stock_serving(clock)
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock, svcs=[stock(readiness="healthcheck")]).run()
    assert "has no HEALTHCHECK" in str(err.value) and "docs/zero-downtime.md#readiness" in str(err.value)
    assert "readiness (http, healthcheck, tcp or running)" in str(err.value)


def test_a_webhook_without_a_readiness_path_waits_for_its_port_behind_the_proxy():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.no_check.update({"fs_admin_bot_v2", "fs_master_bot_v2"})
    tried = []

    def tcp(host, port):
        tried.append((host, port))
        return len(tried) >= 3, "connection refused"

    svcs = [Service("admin_bot", ["a"], "blue_green", True, 8080, "", 20, {}),
            Service("master_bot", ["m"], "handoff", False, 8080, "/ready", 15, {})]
    result = switcher(eng, clock, svcs=svcs, tcp=tcp).run()
    assert result["readiness"] == {"admin_bot": "tcp port 8080", "master_bot": "http GET /ready"}
    assert tried == [("172.20.0.11", 8080)] * 3
    assert result["guarantees"] == {"admin_bot": "blue/green behind the proxy",
                                    "master_bot": "handoff, no overlap"}
    assert result["gaps"] == {"admin_bot": None, "master_bot": None}
    assert result["summary"] == ["admin_bot blue/green behind the proxy (ready: tcp port 8080)",
                                 "master_bot handoff, no overlap (ready: http GET /ready)"]


def test_a_port_that_never_opens_gives_the_release_up():
    clock = FakeClock()
    eng = serving_v1(clock)
    eng.no_check.update({"fs_admin_bot_v2", "fs_master_bot_v2"})
    svcs = [Service("admin_bot", ["a"], "blue_green", True, 8080, "", 20, {}),
            Service("master_bot", ["m"], "handoff", False, 8080, "/ready", 15, {})]
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock, svcs=svcs, tcp=lambda h, p: (False, "connection refused"), probe_retries=3).run()
    assert "admin_bot: port 8080 does not accept connections: connection refused" in str(err.value)
    assert "serving release keeps serving" in str(err.value)  # v1 did serve


def test_a_first_deploy_that_fails_does_not_claim_anything_serves():
    clock = FakeClock()
    eng = FakeDocker(clock)
    eng.add("fs_proxy", {"fs.app": APP, "fs.role": "proxy"})
    s = switcher(eng, clock, probe=lambda url: (0, "Connection refused"), probe_retries=2)
    with pytest.raises(SwitchError) as err:
        s.run()
    text = str(err.value)
    assert "Nothing of this app was serving before this switch, and nothing serves now" in text
    assert "keeps serving" not in text
    assert "GET /ready: Connection refused" in text and "docs/zero-downtime.md#readiness" in text


def test_a_first_start_says_so():
    clock = FakeClock()
    eng = FakeDocker(clock)
    eng.no_check.add("fs_stock_bot_v2")
    result = switcher(eng, clock, svcs=[stock(ready_after=2)]).run()
    assert result["guarantees"] == {"stock_bot": "first start (none of it was serving)"}
    assert result["gaps"] == {"stock_bot": None}


def test_a_new_container_that_restarted_before_its_check_is_given_up():
    clock = FakeClock()
    eng = stock_serving(clock)
    orig = eng.inspect_container

    def inspect(name):
        doc = orig(name)
        if doc and name == "fs_stock_bot_v2":
            doc["RestartCount"] = 2  # it crashed twice since it was started
        return doc

    eng.inspect_container = inspect
    with pytest.raises(SwitchError) as err:
        switcher(eng, clock, svcs=[stock()]).run()
    assert "did not keep running" in str(err.value)


def test_auto_readiness_with_a_path_probes_it():
    svc = Service.from_dict({"name": "a", "readiness": "auto", "readiness_path": "/ready"})
    assert svc.readiness == "http" and svc.readiness_path == "/ready"
