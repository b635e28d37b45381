"""Readiness verdicts from inspect documents, and the polling loop."""

from ansible_collections.fieldservice.deploy.plugins.module_utils import readiness as r


def doc(status="running", running=True, restarting=False, health=None, restarts=0, exit_code=0):
    state = {"Status": status, "Running": running, "Restarting": restarting, "ExitCode": exit_code,
             "StartedAt": "2025-10-10T15:30:00Z"}
    if health:
        state["Health"] = {"Status": health, "Log": [{"ExitCode": 1, "Output": "not ready: db down\n"}]}
    return {"State": state, "RestartCount": restarts}


def test_verdicts():
    assert r.judge("a", None).state == r.FAILED
    assert r.judge("a", doc()).state == r.READY
    assert r.judge("a", doc(health="healthy")).state == r.READY
    v = r.judge("a", doc(health="starting"))
    assert v.state == r.WAITING and "db down" in v.reason
    assert r.judge("a", doc(status="exited", running=False, exit_code=2)).state == r.FAILED
    assert r.judge("a", doc(restarting=True)).state == r.FAILED
    assert r.judge("a", doc(restarts=3), first_restart_count=1).state == r.FAILED
    # a health check is configured but has not reported yet: not ready
    configured = doc()
    configured["Config"] = {"Healthcheck": {"Test": ["CMD", "false"]}}
    assert r.judge("a", configured).state == r.WAITING
    configured["Config"] = {"Healthcheck": {"Test": ["NONE"]}}
    assert r.judge("a", configured).state == r.READY


def test_wait_ready_passes_when_health_turns_healthy():
    now = [0.0]
    seq = iter([doc(health="starting"), doc(health="starting"), doc(health="healthy")])
    current = {}

    def inspect(name):
        current[name] = next(seq, current.get(name))
        return current[name]

    ok, verdicts, reason, elapsed = r.wait_ready(
        inspect, ["a"], timeout=10, interval=1, clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert ok and reason == "" and elapsed == 2.0


def test_wait_ready_times_out_with_reason():
    now = [0.0]
    ok, _, reason, _ = r.wait_ready(
        lambda n: doc(health="unhealthy"), ["a", "b"], timeout=5, interval=1,
        clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not ok and reason.startswith("not ready after 5s") and "a: health unhealthy" in reason


def test_wait_ready_fails_fast_on_crash():
    now = [0.0]
    ok, _, reason, elapsed = r.wait_ready(
        lambda n: doc(status="exited", running=False, exit_code=1), ["a"], timeout=100,
        clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not ok and elapsed == 0 and "exit code 1" in reason


def test_health_test_argv_of_each_form():
    def with_check(test, timeout=None):
        hc = {"Test": test}
        if timeout:
            hc["Timeout"] = timeout
        return {**doc(), "Config": {"Healthcheck": hc}}

    assert r.health_test(with_check(["CMD", "python", "-m", "x"], 3_000_000_000)) == (
        ["python", "-m", "x"], 3.0)
    assert r.health_test(with_check(["CMD-SHELL", "pg_isready -q"])) == (
        ["/bin/sh", "-c", "pg_isready -q"], 30.0)
    assert r.health_test(with_check(["NONE"])) is None
    assert r.health_test(with_check([])) is None
    assert r.health_test(doc()) is None
    assert r.health_test(None) is None


def starting_with_check():
    d = doc(health="starting")
    d["Config"] = {"Healthcheck": {"Test": ["CMD", "check"], "Timeout": 2_000_000_000}}
    return d


def test_wait_ready_runs_the_health_check_instead_of_waiting_for_the_engine():
    now = [0.0]
    asked = []

    def run_check(name, argv, timeout):
        asked.append((name, argv, timeout))
        return True

    ok, verdicts, reason, elapsed = r.wait_ready(
        lambda n: starting_with_check(), ["a"], timeout=10, interval=1, clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s), run_check=run_check)
    assert ok and elapsed == 0 and verdicts[0].details["checked"] == "exec"
    assert asked == [("a", ["check"], 2.0)]


def test_wait_ready_keeps_waiting_while_the_health_check_fails():
    now = [0.0]
    passes_at = 3.0
    ok, _, _, elapsed = r.wait_ready(
        lambda n: starting_with_check(), ["a"], timeout=10, interval=1, clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s), run_check=lambda *a: now[0] >= passes_at)
    assert ok and elapsed == passes_at
    now[0] = 0.0
    ok, _, reason, _ = r.wait_ready(
        lambda n: starting_with_check(), ["a"], timeout=4, interval=1, clock=lambda: now[0],
        sleep=lambda s: now.__setitem__(0, now[0] + s), run_check=lambda *a: False)
    assert not ok and "a: health starting" in reason


def test_a_container_that_is_down_is_not_checked():
    now = [0.0]
    asked = []
    ok, _, _, _ = r.wait_ready(
        lambda n: {**doc(status="exited", running=False, exit_code=1),
                   "Config": starting_with_check()["Config"]},
        ["a"], timeout=10, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s),
        run_check=lambda *a: asked.append(a) or True)
    assert not ok and asked == []
