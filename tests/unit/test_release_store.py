"""Release records: current from the link, previous from the records, prune rules."""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.fieldservice.deploy.plugins.module_utils import release_store as store


def make_release(root, rid, activated_at=None, created_at="2025-01-01T00:00:00Z"):
    path = os.path.join(root, "releases", rid)
    os.makedirs(path)
    with open(os.path.join(path, "REVISION"), "w") as fh:
        fh.write(rid + "\n")
    record = {"created_at": created_at}
    if activated_at:
        record["activated_at"] = activated_at
    with open(os.path.join(path, store.RECORD_NAME), "w") as fh:
        json.dump(record, fh)
    return path


def set_current(root, rid):
    tmp = os.path.join(root, ".cur")
    os.symlink(f"releases/{rid}", tmp)
    os.replace(tmp, os.path.join(root, "current"))


def test_current_and_previous_come_from_link_and_records_not_mtime(tmp_path):
    root = str(tmp_path)
    make_release(root, "aaa", activated_at="2025-01-01T10:00:00Z")
    make_release(root, "bbb", activated_at="2025-01-02T10:00:00Z")
    make_release(root, "ccc", activated_at="2025-01-03T10:00:00Z")
    # mtimes say the opposite of the records
    for i, rid in enumerate(["ccc", "bbb", "aaa"]):
        os.utime(os.path.join(root, "releases", rid), (1000 + i, 1000 + i))
    set_current(root, "ccc")
    info = store.info(root)
    assert info["current"] == "ccc"
    assert info["previous"] == "bbb"
    assert [r["id"] for r in info["releases"]] == ["ccc", "bbb", "aaa"]


def test_a_rolled_back_release_is_never_the_previous_one(tmp_path):
    """After an automatic rollback (v3 failed its health check, v2 serves
    again), rollback.yml's default target is v1, not the broken v3."""
    root = str(tmp_path)
    make_release(root, "v1", activated_at="2025-03-01T00:00:00Z")
    make_release(root, "v2", activated_at="2025-03-02T00:00:00Z")
    make_release(root, "v3", activated_at="2025-03-03T00:00:00Z")
    for rid, data in (("v3", {"outcome": "rolled_back", "health": "admin_bot: heartbeat stale"}),
                      ("v1", {"outcome": "success", "health": "PASSED"})):
        store.write_record(root, rid, store.merged_record(root, rid, data)[1])
    set_current(root, "v2")
    assert store.previous_id(root) == "v1"
    # and it is the first to go when releases are pruned
    assert store.plan_prune(root, 2) == ["v3"]
    # a release taken back by rollback.yml (healthy, just not wanted now) is
    # still where a plain rollback goes
    store.write_record(root, "v1", store.merged_record(root, "v1", {"outcome": "rolled_back"})[1])
    assert store.previous_id(root) == "v1"


def test_incomplete_and_hidden_directories_are_not_releases(tmp_path):
    root = str(tmp_path)
    make_release(root, "good", activated_at="2025-01-01T00:00:00Z")
    os.makedirs(os.path.join(root, "releases", "half.partial"))
    os.makedirs(os.path.join(root, "releases", "norevision"))
    os.makedirs(os.path.join(root, "releases", ".hidden"))
    assert [r.id for r in store.list_releases(root)] == ["good"]


def test_prune_never_removes_current_or_previous(tmp_path):
    root = str(tmp_path)
    for day in range(1, 8):
        make_release(root, f"r{day}", activated_at=f"2025-01-0{day}T00:00:00Z")
    # roll back to an old release: current is r2, previous is r7
    set_current(root, "r2")
    doomed = store.plan_prune(root, keep=3)
    assert "r2" not in doomed and "r7" not in doomed
    assert sorted(doomed) == ["r1", "r3", "r4", "r5"]
    store.prune(root, doomed)
    assert sorted(r.id for r in store.list_releases(root)) == ["r2", "r6", "r7"]
    assert store.plan_prune(root, keep=3) == []


def test_record_merges_and_ignores_none(tmp_path):
    root = str(tmp_path)
    make_release(root, "abc")
    before, after = store.merged_record(root, "abc", {"outcome": "activated", "backup": None})
    assert after["outcome"] == "activated" and "backup" not in after and after["id"] == "abc"
    store.write_record(root, "abc", after)
    before2, after2 = store.merged_record(root, "abc", {"outcome": "activated"})
    assert before2 == after2


@pytest.mark.parametrize("bad", ["", "..", "current", "a/b", ".x", "x.partial"])
def test_bad_ids_are_refused(tmp_path, bad):
    with pytest.raises(store.ReleaseStoreError):
        store.merged_record(str(tmp_path), bad, {})


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=9),
    keep=st.integers(min_value=1, max_value=6),
    current=st.integers(min_value=0, max_value=8),
)
def test_prune_properties(tmp_path_factory, n, keep, current):
    root = str(tmp_path_factory.mktemp("rel"))
    for i in range(n):
        make_release(root, f"r{i}", activated_at=f"2025-02-{10 + i}T00:00:00Z")
    cur = f"r{min(current, n - 1)}"
    set_current(root, cur)
    prev = store.previous_id(root)
    doomed = store.plan_prune(root, keep)
    remaining = {f"r{i}" for i in range(n)} - set(doomed)
    assert cur in remaining
    if prev:
        assert prev in remaining
    assert len(remaining) == max(min(n, keep), len({cur, prev} - {None}))
    # what is kept is never older than what is deleted, apart from the protected two
    kept_unprotected = remaining - {cur, prev}
    for d in doomed:
        for k in kept_unprotected:
            assert k > d  # ids sort like their activation dates here


def make_archive(path, files):
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            tar.addfile(info, io.BytesIO(data))


def test_unpack_puts_a_complete_release_in_place_and_removes_the_archive(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "releases", "r1.partial", "junk"))  # left by a killed run
    archive = os.path.join(root, "releases", ".r1.tar.gz")
    make_archive(archive, {"app/main.py": "print(1)\n", "run.sh": "#!/bin/sh\n"})
    assert store.unpack(root, "r1", archive, "r1\ndigest abc") is True
    rel = os.path.join(root, "releases", "r1")
    assert open(os.path.join(rel, "app", "main.py")).read() == "print(1)\n"
    assert open(os.path.join(rel, "REVISION")).read() == "r1\ndigest abc\n"
    assert os.stat(os.path.join(rel, "run.sh")).st_mode & 0o100
    assert not os.path.exists(archive) and not os.path.exists(rel + ".partial")
    assert [r.id for r in store.list_releases(root)] == ["r1"]
    # again (a re-deploy of a release that is there): nothing but the archive goes
    make_archive(archive, {"app/main.py": "print(2)\n"})
    assert store.unpack(root, "r1", archive, "r1") is False
    assert not os.path.exists(archive)
    assert open(os.path.join(rel, "app", "main.py")).read() == "print(1)\n"


def test_unpack_refuses_paths_out_of_the_release_and_leaves_nothing(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, "releases"))
    archive = os.path.join(root, "releases", ".r2.tar.gz")
    make_archive(archive, {"../evil.txt": "x"})
    with pytest.raises(store.ReleaseStoreError, match="cannot unpack"):
        store.unpack(root, "r2", archive, "r2")
    assert not os.path.exists(os.path.join(root, "evil.txt"))
    assert os.listdir(os.path.join(root, "releases")) == [".r2.tar.gz"]
    assert store.unpack(root, "r3", os.path.join(root, "nope.tgz"), "r3", check=True) is True
    with pytest.raises(store.ReleaseStoreError, match="not on the server"):
        store.unpack(root, "r3", os.path.join(root, "nope.tgz"), "r3")


def test_activate_switches_the_link_atomically_and_only_when_needed(tmp_path):
    root = str(tmp_path)
    make_release(root, "aaa")
    make_release(root, "bbb")
    assert store.activate(root, "aaa") is True
    assert os.readlink(os.path.join(root, "current")) == "releases/aaa"
    assert store.activate(root, "aaa") is False
    assert store.activate(root, "bbb", check=True) is True and store.current_id(root) == "aaa"
    assert store.activate(root, "bbb") is True and store.current_id(root) == "bbb"
    assert [n for n in os.listdir(root) if n.startswith(".current.new")] == []
    with pytest.raises(store.ReleaseStoreError, match="does not exist"):
        store.activate(root, "ccc")
    with pytest.raises(store.ReleaseStoreError, match="not a release id"):
        store.activate(root, "../x")


def test_runs_that_unpack_and_activate_the_same_release_at_once_all_succeed(tmp_path):
    """Several runs at once (the backup program of two apps on one server):
    each puts the release in place or finds it there; the release is whole,
    no partial directory or temporary link is left, current points at it."""
    import subprocess
    import sys
    import textwrap

    root = str(tmp_path)
    os.makedirs(os.path.join(root, "releases"))
    files = {f"pkg/m{i}.py": f"X = {i}\n" * 2000 for i in range(40)}
    archives = []
    for n in range(6):
        archives.append(os.path.join(root, "releases", f".v1-{n}.tar.gz"))
        make_archive(archives[-1], files)
    collections = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               "playbooks", "collections")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {collections!r})
        from ansible_collections.fieldservice.deploy.plugins.module_utils import release_store as store
        changed = store.unpack({root!r}, "v1", sys.argv[1], "v1")
        store.activate({root!r}, "v1")
        print("unpacked" if changed else "found")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, a], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for a in archives]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert [o.strip() for o, _ in outs].count("unpacked") >= 1
    rel = os.path.join(root, "releases", "v1")
    assert sorted(os.listdir(os.path.join(rel, "pkg"))) == sorted(os.path.basename(f) for f in files)
    assert open(os.path.join(rel, "pkg", "m7.py")).read() == "X = 7\n" * 2000
    assert sorted(os.listdir(os.path.join(root, "releases"))) == ["v1"]  # archives gone, no partials
    assert store.current_id(root) == "v1"
    assert [n for n in os.listdir(root) if n.startswith(".current.new")] == []


def test_an_incomplete_release_directory_is_replaced_by_the_unpacked_one(tmp_path):
    """A release directory without REVISION (left by a run older than the
    partial directories) is replaced; nothing of it remains."""
    root = str(tmp_path)
    rel = os.path.join(root, "releases", "r1")
    os.makedirs(os.path.join(rel, "half"))
    with open(os.path.join(rel, "half", "old.py"), "w") as fh:
        fh.write("old\n")
    archive = os.path.join(root, "releases", ".r1.tar.gz")
    make_archive(archive, {"app/main.py": "print(1)\n"})
    assert store.unpack(root, "r1", archive, "r1") is True
    assert sorted(os.listdir(rel)) == ["REVISION", "app"]
    assert sorted(os.listdir(os.path.join(root, "releases"))) == ["r1"]


def test_a_partial_directory_of_a_killed_run_goes_only_when_stale(tmp_path):
    root = str(tmp_path)
    base = os.path.join(root, "releases")
    fresh = os.path.join(base, ".r1.partial-running")
    stale = os.path.join(base, ".r1.partial-killed")
    os.makedirs(fresh)
    os.makedirs(stale)
    old = os.stat(stale).st_mtime - store.STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    archive = os.path.join(base, ".r1.tar.gz")
    make_archive(archive, {"a.txt": "a"})
    assert store.unpack(root, "r1", archive, "r1") is True
    # another run may still be writing the fresh one
    assert os.path.isdir(fresh) and not os.path.exists(stale)
    assert [r.id for r in store.list_releases(root)] == ["r1"]


# -- the serving release: record and containers together ------------------

SERVICES = ["admin_bot", "master_bot"]


def container(service, release, state="running", status="Up 5 minutes"):
    return {"Names": [f"/fs_{service}_{release}"], "State": state, "Status": status,
            "Labels": {"fs.app": "fs", "fs.role": "service", "fs.service": service, "fs.release": release}}


def both(release, **kw):
    return [container(s, release, **kw) for s in SERVICES]


def store_with(tmp_path, current="A"):
    root = str(tmp_path)
    make_release(root, "Z", "2025-01-01T00:00:00Z")
    make_release(root, "A", "2025-01-02T00:00:00Z")
    make_release(root, "B")
    if current:
        set_current(root, current)
    return root


def test_record_and_containers_that_agree(tmp_path):
    root = store_with(tmp_path)
    s = store.serving_state(root, both("A"), SERVICES)
    assert (s["state"], s["serving"], s["problem"]) == ("agree", "A", "")
    # the engine did not answer: the record is all there is
    assert store.serving_state(root, None, SERVICES)["state"] == "agree"
    # the proxy and other roles do not count
    proxy = {"Names": ["/fs_proxy"], "State": "running", "Labels": {"fs.app": "fs", "fs.role": "proxy"}}
    assert store.serving_state(root, [*both("A"), proxy], SERVICES)["running"] == {"A": SERVICES}


def test_the_containers_of_another_release_serve_complete_and_healthy(tmp_path):
    """A run killed after the switch, before the record: B serves."""
    root = store_with(tmp_path)
    info = store.serving_info(root, both("B"), SERVICES)
    s = info["serving"]
    assert (s["state"], s["serving"], s["recorded"]) == ("reconcile", "B", "A")
    assert "the record says A" in s["problem"] and "B (admin_bot, master_bot)" in s["problem"]
    # the release that served before is A, not the record's previous (Z)
    assert info["previous"] == "A"


@pytest.mark.parametrize("containers, why", [
    (both("A") + both("B"), "several"),
    ([container("admin_bot", "B")], "lacks master_bot"),
    ([container("admin_bot", "B"), container("master_bot", "B", status="Up 3 s (unhealthy)")], "unhealthy"),
    ([container("admin_bot", "B"), container("master_bot", "B", state="restarting")], "unhealthy"),
])
def test_what_cannot_be_reconciled_is_a_conflict_with_the_fix(tmp_path, containers, why):
    root = store_with(tmp_path)
    s = store.serving_state(root, containers, SERVICES)
    assert s["state"] == "conflict"
    assert "the record says A" in s["problem"]
    assert s["fix"] == "ansible-playbook playbooks/rollback.yml -e release=A"
    if why != "several":
        assert why in s["problem"]


def test_nothing_running_is_stopped_not_a_conflict(tmp_path):
    root = store_with(tmp_path)
    s = store.serving_state(root, both("A", state="exited"), SERVICES)
    assert (s["state"], s["serving"]) == ("stopped", None)
    # nothing deployed, nothing running: they agree
    fresh = str(tmp_path / "fresh")
    assert store.serving_state(fresh, [], SERVICES)["state"] == "agree"


def test_a_switch_that_runs_or_was_interrupted(tmp_path):
    root = store_with(tmp_path)
    journal = store.SwitchJournal(root, "B", ["A"])
    journal.begin()
    journal.stage("proxy switched")
    running = store.read_switch(root)
    assert running["running"] is True and running["stage"] == "proxy switched"
    s = store.serving_state(root, both("A") + both("B"), SERVICES, running)
    assert s["state"] == "switching" and "a switch to B is running" in s["problem"]
    # the same journal from a process that is gone (a later one got its pid)
    with open(os.path.join(root, store.SWITCH_FILE)) as fh:
        data = json.load(fh)
    data["pid_start"] = "1"
    with open(os.path.join(root, store.SWITCH_FILE), "w") as fh:
        json.dump(data, fh)
    gone = store.read_switch(root)
    assert gone["running"] is False
    s = store.serving_state(root, both("A") + both("B"), SERVICES, gone)
    assert s["state"] == "conflict"
    assert "a switch from A to B was interrupted at 'proxy switched'" in s["problem"]
    journal.end()
    assert store.read_switch(root) is None


def test_record_serving_points_the_link_then_writes_both_records(tmp_path):
    root = store_with(tmp_path)
    assert store.record_serving(root, "B", {"outcome": "activated"}, "A", {"outcome": "rolled_back"},
                                now="2025-01-03T00:00:00Z")
    assert store.current_id(root) == "B"
    assert store.read_record(os.path.join(root, "releases", "B"))["activated_at"] == "2025-01-03T00:00:00Z"
    assert store.read_record(os.path.join(root, "releases", "A"))["outcome"] == "rolled_back"
    assert store.previous_id(root) == "A"  # rolled back, not a failed health check
    # the same again changes nothing
    assert not store.record_serving(root, "B", {"outcome": "activated"}, "A", {"outcome": "rolled_back"})


def test_prune_never_removes_a_release_whose_containers_run(tmp_path):
    root = str(tmp_path)
    for i in range(5):
        make_release(root, f"r{i}", f"2025-01-0{i + 1}T00:00:00Z")
    set_current(root, "r4")
    assert store.plan_prune(root, 2) == ["r2", "r1", "r0"]
    assert store.plan_prune(root, 2, protect=["r0"]) == ["r2", "r1"]


def test_the_journal_of_a_switch_that_died_after_its_work_is_named_not_a_conflict(tmp_path):
    root = store_with(tmp_path, current="B")
    journal = store.SwitchJournal(root, "B", ["A"], pid=2**22 + 12345)  # no such process
    journal.begin()
    gone = store.read_switch(root)
    assert gone["running"] is False
    s = store.serving_state(root, both("B"), SERVICES, gone)
    assert s["state"] == "agree" and s["serving"] == "B"
    assert "a switch from A to B was interrupted at 'starting'" in s["problem"]
