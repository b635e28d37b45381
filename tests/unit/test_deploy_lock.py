"""The deploy lock: one holder, clear refusal, stale locks only broken on request."""

import os
import subprocess
import sys
import time

import pytest

from ansible_collections.fieldservice.deploy.plugins.module_utils import deploy_lock as lock

UTILS = "ansible_collections.fieldservice.deploy.plugins.module_utils"
# Where the collection is importable from (tests/conftest.py puts it on sys.path).
COLLECTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "playbooks", "collections")


def holder(token, host="ctl", pid=123, since=None):
    return lock.Holder(host=host, pid=pid, user="alice", playbook="deploy.yml",
                       since=since or time.time(), token=token)


def test_second_run_is_refused_with_who_and_since(tmp_path):
    path = str(tmp_path / "deploy.lock")
    assert lock.acquire(path, holder("a"), False, False)["changed"] is True
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(lock.LockError) as err:
        lock.acquire(path, holder("b", pid=456), False, False)
    msg = str(err.value)
    assert "deploy.yml by alice@ctl (pid 123) since" in msg and "stale" not in msg
    # the same run may ask again
    assert lock.acquire(path, holder("a"), False, False)["changed"] is False


def test_stale_lock_is_only_broken_when_asked(tmp_path):
    path = str(tmp_path / "deploy.lock")
    lock.acquire(path, holder("old"), False, False)
    with pytest.raises(lock.LockError) as err:
        lock.acquire(path, holder("new"), True, False)
    assert "deploy_lock_break=true" in str(err.value)
    out = lock.acquire(path, holder("new"), True, True)
    assert out["broke"].token == "old" and lock.read_holder(path).token == "new"


def test_release_only_by_its_holder(tmp_path):
    path = str(tmp_path / "deploy.lock")
    lock.acquire(path, holder("a"), False, False)
    with pytest.raises(lock.LockError):
        lock.release(path, "b")
    assert lock.release(path, "a") is True
    assert lock.release(path, "a") is False


def test_staleness_rules():
    now = time.time()
    h = holder("a", host="ctl", pid=99, since=now - 10)
    assert lock.is_stale(h, "ctl", lambda pid: False, 0, now)
    assert not lock.is_stale(h, "ctl", lambda pid: True, 0, now)
    # another control node: we cannot see its processes, only the age counts
    assert not lock.is_stale(h, "other", lambda pid: False, 0, now)
    assert lock.is_stale(h, "other", lambda pid: True, 5, now)


def test_pid_alive_and_playbook_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert lock.pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
    assert not lock.pid_alive(child.pid)
    # not running under ansible-playbook here
    assert lock.playbook_pid() == 0


def test_playbook_pid_is_the_main_process_not_a_worker(tmp_path):
    """ansible-playbook -> worker (a fork, same command line) -> module: the
    lock must name the main process, which lives as long as the run."""
    script = tmp_path / "ansible-playbook"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {COLLECTIONS!r})\n"
        f"from {UTILS} import deploy_lock as l\n"
        "if len(sys.argv) > 1:  # the 'worker': same command line, one level down\n"
        "    print(os.getppid(), l.playbook_pid())\n"
        "else:\n"
        "    import subprocess\n"
        "    subprocess.run([sys.executable, sys.argv[0], 'worker'], check=True)\n")
    # under a wrapper that mentions ansible-playbook (a shell, a CI step):
    # the wrapper is not the run
    wrapper = f"{sys.executable} {script}; true"
    out = subprocess.run(["sh", "-c", wrapper], capture_output=True, text=True, check=True)
    main_pid, found = out.stdout.split()
    assert found == main_pid


def test_racing_runs_get_one_winner(tmp_path):
    path = str(tmp_path / "deploy.lock")
    code = (
        f"import sys, time; sys.path.insert(0, {COLLECTIONS!r}); from {UTILS} import deploy_lock as l\n"
        "h = l.Holder('ctl', 1, 'u', 'deploy.yml', time.time(), sys.argv[1])\n"
        f"try:\n    l.acquire({path!r}, h, False, False); print('won')\n"
        "except l.LockError:\n    print('refused')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, f"t{i}"], stdout=subprocess.PIPE, text=True)
             for i in range(8)]
    outs = [p.communicate()[0].strip() for p in procs]
    assert outs.count("won") == 1 and outs.count("refused") == 7


def lookup_whoami(**options) -> dict:
    """query('fieldservice.deploy.whoami', **options) through a real ``ansible``
    run on this machine (its plugin loader reads the lookup's options)."""
    import json

    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in options.items())
    expr = "{{ query('fieldservice.deploy.whoami'" + (", " + args if args else "") + ") | first }}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
               ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    out = subprocess.run([ansible, "localhost", "-c", "local",
                          "-i", "localhost,", "-m", "ansible.builtin.debug", "-a", f"msg={expr}"],
                         capture_output=True, text=True, env=env, check=True, timeout=120)
    return json.loads(out.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]["msg"]


def test_the_whoami_lookup_describes_this_process_without_a_module():
    import socket

    me = lookup_whoami()
    assert me["host"] == socket.gethostname() and me["user"]
    assert me["pid"] == 0  # an ad-hoc `ansible`, not an ansible-playbook run
    assert "holder_stale" not in me


def test_the_whoami_lookup_tells_a_gone_holder_from_a_running_one():
    import socket

    here = socket.gethostname()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = holder("a", host=here, pid=child.pid).as_dict()
        assert lookup_whoami(holder=running, max_age=0)["holder_stale"] is False
    finally:
        child.kill()
        child.wait()
    assert lookup_whoami(holder=running, max_age=0)["holder_stale"] is True  # the same run, now gone
    # another control node: only the age counts
    far = holder("b", host="elsewhere", pid=child.pid, since=time.time() - 100).as_dict()
    assert lookup_whoami(holder=far, max_age=0)["holder_stale"] is False
    assert lookup_whoami(holder=far, max_age=50)["holder_stale"] is True
