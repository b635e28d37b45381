"""Work run detached: its answer comes back, its failure too, and it
finishes when whoever started it is killed with its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.fieldservice.deploy.plugins.module_utils.detach import DetachedFailure, run_detached


def test_the_answer_comes_back_from_another_session():
    def work():
        return {"pid": os.getpid(), "sid": os.getsid(0)}

    out = run_detached(work, lambda exc: {"msg": str(exc)})
    assert out["pid"] != os.getpid()
    assert out["sid"] == out["pid"] != os.getsid(0)  # a session of its own


def test_a_failure_comes_back_as_what_on_error_made_of_it():
    def work():
        raise ValueError("no such image")

    with pytest.raises(DetachedFailure) as err:
        run_detached(work, lambda exc: {"msg": f"failed: {exc}", "stage": "image"})
    assert err.value.payload == {"msg": "failed: no such image", "stage": "image"}


def test_a_child_that_dies_without_an_answer_is_said_so():
    def work():
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(DetachedFailure) as err:
        run_detached(work, lambda exc: {})
    assert err.value.payload is None and "died before it answered" in str(err.value)


def test_the_work_finishes_when_its_caller_and_its_process_group_are_killed(tmp_path):
    done = tmp_path / "done"
    started = tmp_path / "started"
    script = textwrap.dedent(f"""
        import time
        from ansible_collections.fieldservice.deploy.plugins.module_utils.detach import run_detached

        def work():
            open({str(started)!r}, "w").close()
            time.sleep(1.5)
            with open({str(done)!r}, "w") as fh:
                fh.write("finished")
            return {{}}

        run_detached(work, lambda exc: {{}})
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert started.exists()
    os.killpg(proc.pid, signal.SIGKILL)  # the caller's whole group, as a cancelled CI job
    proc.wait()
    assert not done.exists()  # positive control: the work was still running at the kill
    deadline = time.monotonic() + 30
    while not done.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert done.read_text() == "finished"
