"""The server knows which release serves, whatever dies mid-switch.

One app (releases Z, then A, serving A) takes webhook load through the proxy
and a polling feed the whole time. Then, at each point of a switch, a deploy
of a new release B is killed:

* the control node (``ansible-playbook`` and its workers, SIGKILL to the
  whole process group, as when a laptop's lid closes or a CI job is
  cancelled) at each stage the switch reports in its journal
  (``<app_root>/.switch.json``: new containers started, ready, proxy switched,
  serving, and after the switch ended, during the health check). The switch
  runs detached on the server and finishes: the record says B, B serves,
  ``health.yml`` says so, the next deploy is refused with a stale lock whose
  message tells which release serves, and ``rollback.yml`` with the lock
  break takes back B to A (not two releases back) with the database
  decision of the pair (B, A);
* the switch process itself (the server side dies) before and after it
  records B: the containers of two releases run, ``health.yml`` and the
  deploy say so with the command that fixes it, and that command does;
* what the tool before this change left after such a kill (the current link
  still at A while B served): the next rollback finds B serving from its
  containers, records it, and goes back to A.

Then a re-run of the deploy completes, and no webhook request failed and no
polling update was lost or answered twice through all of it.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from harness import Deployment, add_changelog_entry, failed_tasks, make_source
from traffic import PollingFeed, webhook_load, webhook_outcome

pytestmark = pytest.mark.integration

RATE = 20
SERVICES = ("admin_bot", "master_bot")


def set_version(d: Deployment, version: str) -> None:
    src = d.extravars["code_sync_source_dir"]
    make_source(src, 2)
    with open(os.path.join(src, "field_service", "VERSION"), "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
    add_changelog_entry(src, version)


def journal(d: Deployment) -> dict | None:
    try:
        with open(os.path.join(d.app_root, ".switch.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return None


def running(d: Deployment) -> dict:
    """{release: sorted services} of the running service containers."""
    out: dict = {}
    for c in d.containers():
        labels = dict(kv.split("=", 1) for kv in c["Labels"].split(",") if "=" in kv)
        out.setdefault(labels["fs.release"], []).append(labels["fs.service"])
    return {k: sorted(v) for k, v in out.items()}


def record(d: Deployment, release: str) -> dict:
    with open(os.path.join(d.app_root, "releases", release, "RELEASE.json"), encoding="utf-8") as fh:
        return json.load(fh)


def report(runner) -> dict:
    """The message of health.yml's "Show the report"."""
    for ev in runner.events:
        data = ev.get("event_data") or {}
        if ev.get("event") == "runner_on_ok" and data.get("task") == "Show the report":
            return data["res"]["msg"]
    raise AssertionError("health.yml showed no report")


def new_log_name() -> None:
    time.sleep(1.1)  # deploy logs are named by the second


def start_deploy_and_wait(d: Deployment, stage: str):
    """Start a deploy and return it (still running) once the switch reached
    ``stage`` (a stage of its journal, or "ended": the journal was there and
    is gone while the playbook still runs)."""
    proc = d.popen("deploy.yml", "killed.out")
    seen = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        j = journal(d)
        if j is not None:
            seen = True
            if stage != "ended" and j.get("stage") == stage:
                return proc, j
        elif seen and stage == "ended":
            return proc, None
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"the deploy never reached {stage!r} while running:\n"
                         f"{d.output('killed.out')[-3000:]}")


def wait_switch_ended(d: Deployment, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while journal(d) is not None and time.monotonic() < deadline:
        j = journal(d)
        pid = int(j.get("pid") or 0) if j else 0
        if pid and not os.path.exists(f"/proc/{pid}"):
            return  # killed on purpose: the journal stays
        time.sleep(0.1)
    assert journal(d) is None or not os.path.exists(f"/proc/{journal(d).get('pid')}"), journal(d)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = Deployment.isolated("fs_ks", lambda n: str(tmp_path_factory.mktemp(n)))
    try:
        set_version(d, "2.9.0")
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        z = d.current_release()
        new_log_name()
        set_version(d, "2.9.1")
        r = d.run("deploy.yml")
        assert r.rc == 0, failed_tasks(r)
        a = d.current_release()
        assert a != z
        load = webhook_load(d, RATE).start()
        feed = PollingFeed(d, interval=0.1).start()
        time.sleep(1)
        state = {"d": d, "z": z, "a": a, "load": load, "feed": feed, "versions": iter(range(2, 100))}
        yield state
        load.stop()
        feed.stop()
    finally:
        d.destroy()


def next_b(served) -> str:
    """The source of a new release B (same schema as A)."""
    set_version(served["d"], f"2.9.{next(served['versions'])}")
    new_log_name()


def assert_serves_alone(d: Deployment, release: str) -> None:
    assert running(d) == {release: list(SERVICES)}, running(d)
    assert d.current_release() == release


def rollback_to_a(served, b: str) -> None:
    d, a = served["d"], served["a"]
    new_log_name()
    r = d.run("rollback.yml", deploy_lock_break=True)
    assert r.status == "successful", failed_tasks(r)
    assert_serves_alone(d, a)
    text = open(d.logs()[-1], encoding="utf-8").read()
    assert f"Rolling back to {a} (from {b}); database: none" in text, text[-2000:]
    assert record(d, b)["outcome"] == "rolled_back"


STAGES = ["new containers started", "new containers ready", "proxy switched",
          "serving; stopping the old containers behind the proxy", "ended"]


@pytest.mark.parametrize("stage", STAGES)
def test_control_node_killed_mid_switch(served, stage):
    d, a = served["d"], served["a"]
    next_b(served)
    proc, _ = start_deploy_and_wait(d, stage)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_switch_ended(d)

    # the switch finished on the server and recorded it: B serves, alone
    running_now = running(d)
    assert len(running_now) == 1, running_now
    (b,) = running_now
    assert b != a
    assert_serves_alone(d, b)
    assert journal(d) is None
    rec = record(d, b)
    assert rec["activated_at"] and rec["replaced"] == a and rec["outcome"] == "activated", rec

    # health.yml tells the truth
    new_log_name()
    r = d.run("health.yml")
    assert r.status == "successful", failed_tasks(r)
    shown = report(r)
    assert shown["status"] == "PASSED" and shown["serving"] == b, shown
    assert shown["record"] == "the record and the containers agree", shown

    if stage == STAGES[0]:
        # the next deploy is refused by the stale lock, which says what the killed run left
        new_log_name()
        r = d.run("deploy.yml")
        assert r.status == "failed"
        msgs = [t for t in failed_tasks(r) if "stale lock" in t]
        assert msgs, failed_tasks(r)
        assert f"release {b} serves; no switch in progress" in msgs[0], msgs[0]

    # the rollback goes back one release, to the one that served before
    rollback_to_a(served, b)


@pytest.mark.parametrize("stage", [STAGES[1], STAGES[3]])
def test_switch_process_killed_on_the_server(served, stage):
    d, a = served["d"], served["a"]
    next_b(served)
    proc, j = start_deploy_and_wait(d, stage)
    os.kill(int(j["pid"]), signal.SIGKILL)  # the server side dies, not the control node
    assert proc.wait(timeout=300) != 0
    b = j["to"]
    recorded = d.current_release()
    assert recorded == (a if stage == "new containers ready" else b)
    assert set(running(d)) == {a, b}, running(d)
    assert journal(d)["stage"] == stage  # left behind: an interrupted switch
    fix = f"ansible-playbook playbooks/rollback.yml -e release={recorded}"

    new_log_name()
    r = d.run("health.yml")
    assert r.status == "failed"
    msg = " ".join(failed_tasks(r))
    assert "cannot tell which release serves" in msg and f"the record says {recorded} serves" in msg, msg
    assert f"was interrupted at '{stage}'" in msg and fix in msg, msg

    new_log_name()
    r = d.run("deploy.yml", deploy_lock_break=True)
    assert r.status == "failed"
    msg = " ".join(failed_tasks(r))
    assert "Cannot tell which release serves" in msg and fix in msg, msg

    # the command it names puts it right
    new_log_name()
    r = d.run("rollback.yml", release=recorded)
    assert r.status == "successful", failed_tasks(r)
    assert_serves_alone(d, recorded)
    assert journal(d) is None
    if recorded == b:
        rollback_to_a(served, b)


def test_the_link_left_behind_by_a_killed_run_of_the_old_tool(served):
    """The case of the issue: B serves, current still points at A, whose
    previous is Z. The rollback must go to A, not to Z."""
    d, a, z = served["d"], served["a"], served["z"]
    next_b(served)
    r = d.run("deploy.yml")
    assert r.status == "successful", failed_tasks(r)
    b = d.current_release()
    # what the tool before the switch recorded itself left: link and record at A
    link = os.path.join(d.app_root, "current")
    os.unlink(link)
    os.symlink(f"releases/{a}", link)
    rec = record(d, b)
    rec.pop("activated_at")
    rec["outcome"] = "switching"
    with open(os.path.join(d.app_root, "releases", b, "RELEASE.json"), "w", encoding="utf-8") as fh:
        json.dump(rec, fh)

    new_log_name()
    r = d.run("health.yml")
    assert r.status == "successful", failed_tasks(r)
    shown = report(r)
    assert shown["serving"] == b and shown["status"] == "PASSED", shown
    assert f"the record says {a} serves" in shown["record"], shown

    new_log_name()
    r = d.run("rollback.yml")
    assert r.status == "successful", failed_tasks(r)
    text = open(d.logs()[-1], encoding="utf-8").read()
    assert f"Recorded {b} as the serving release (the record said {a})" in text, text[-3000:]
    assert f"Rolling back to {a} (from {b})" in text and z not in text.split("Rolling back to")[1][:40]
    assert_serves_alone(d, a)


def test_a_rerun_completes_and_nobody_noticed(served):
    d, a = served["d"], served["a"]
    new_log_name()
    r = d.run("deploy.yml")
    assert r.status == "successful", failed_tasks(r)
    b = d.current_release()
    assert b != a
    assert_serves_alone(d, b)
    assert record(d, b)["outcome"] == "success"
    time.sleep(1)
    samples = served["load"].stop()
    served["feed"].stop()
    web = webhook_outcome(d, samples)
    poll = served["feed"].measure()
    assert web["requests_sent"] >= RATE * 60, web
    assert web["requests_failed"] == 0, web
    assert web["answered_not_stored"] == 0, web
    assert poll["updates_sent"] >= 300, poll
    assert poll["updates_lost"] == 0 and poll["updates_unanswered"] == 0, poll
    assert poll["updates_duplicated"] == 0 and poll["conflicts_409"] == 0, poll
    assert poll["feed_errors"] == 0 and poll["still_queued"] == 0, poll
