"""Readiness verdicts from inspect documents, and the polling loop."""

import fs_readiness as r


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
