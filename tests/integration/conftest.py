"""Integration tests: real Docker engine, real PostgreSQL and service containers.

Tests marked ``integration`` are skipped (with the reason) when the Docker
engine does not answer on its socket, on a developer's machine. Under CI
(``CI=true``, which scripts/test sets) a skipped integration test FAILS with
that reason instead: a green run must have deployed for real. The containers
and networks are set up with the Docker SDK (``docker`` package), not with
the client under test. Everything is named ``fs_test_health_<random>`` and
removed in finalizers.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# helpers shared with the unit tests (http_receiver)
if os.path.join(ROOT, "tests") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "tests"))

DOCKER_HOST = os.environ.get("FS_TEST_DOCKER_HOST", "unix:///var/run/docker.sock")
PG_IMAGE = "postgres:15"
PY_IMAGE = "python:3.11-slim"
HEARTBEATS_DDL = (
    "CREATE TABLE heartbeats (service text primary key, release text not null,"
    " beat_at timestamptz not null default now(), pid int, hostname text, state text)"
)
# A service: prints a line every half second; "CRITICAL"/"Traceback" only when told to.
SERVICE_SCRIPT = (
    "import itertools, os, sys, time\n"
    "extra = os.environ.get('FS_EXTRA_LINE')\n"
    "delay = float(os.environ.get('FS_EXTRA_AFTER', '0'))\n"
    "start = time.time()\n"
    "for i in itertools.count():\n"
    "    print(f'INFO tick {i}', flush=True)\n"
    "    print(f'debug {i} on stderr', file=sys.stderr, flush=True)\n"
    "    if extra and time.time() - start >= delay:\n"
    "        print(extra, flush=True)\n"
    "        extra = None\n"
    "    if os.environ.get('FS_EXIT_AFTER') and time.time() - start >= float(os.environ['FS_EXIT_AFTER']):\n"
    "        sys.exit(3)\n"
    "    time.sleep(0.5)\n"
)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "integration: needs a running Docker engine (real containers, no mocks)"
    )


def _docker_problem() -> str | None:
    """Why the integration tests cannot run, or None."""
    try:
        import docker
    except ImportError as exc:
        return f"the docker SDK is not installed: {exc}"
    try:
        client = docker.DockerClient(base_url=DOCKER_HOST, timeout=10)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        return f"Docker engine not answering at {DOCKER_HOST}: {exc}"
    try:
        for image in (PG_IMAGE, PY_IMAGE):
            try:
                client.images.get(image)
            except docker.errors.ImageNotFound:
                return f"image {image} is not available locally (nothing can be pulled)"
    finally:
        client.close()
    return None


_PROBLEM: list = []


# Test modules that write root's crontab (their deployments schedule backups,
# or they run README command 1). Under pytest-xdist (scripts/test runs
# `-n 2 --dist loadgroup --no-loadscope-reorder`) they share one group, so
# one worker runs them one after the other. test_zero_downtime,
# test_preflight, test_rollback and test_migration_safety share one
# deployment (v1 then v2 under traffic, then the refused deploys, which
# change nothing, then the rollbacks, then the migrations of
# test_migration_safety on top of v1 again), so they share a group too, in
# that order. Every other
# module is a group of its own (its tests and its module-scoped deployment
# stay on one worker). The modules that use the test bed of several hosts
# (testbed.py: one bridge, one set of namespaces, made and removed by each)
# share a group too.
CRONTAB_MODULES = {"test_backup_playbooks", "test_deploy", "test_readme"}
GROUPS = {**dict.fromkeys(CRONTAB_MODULES, "crontab"),
          "test_zero_downtime": "v1_to_v2", "test_rollback": "v1_to_v2", "test_preflight": "v1_to_v2",
          "test_migration_safety": "v1_to_v2", "test_testbed": "testbed", "test_fleet": "testbed"}
# The order the groups are handed out in: longest first (minutes of one
# worker, measured), so that no long group starts last and leaves the other
# worker idle at the end.
GROUP_ORDER = ["crontab", "test_faults", "test_killed_switch", "testbed", "v1_to_v2", "test_botkit_apps",
               "test_health_module"]
MODULE_ORDER = ["test_deploy", "test_backup_playbooks", "test_readme",
                "test_zero_downtime", "test_preflight", "test_rollback", "test_migration_safety",
                "test_testbed", "test_fleet"]


def _module(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid


def _xdist_groups(items) -> None:
    for item in items:
        module = _module(item)
        item.add_marker(pytest.mark.xdist_group(GROUPS.get(module, module)))

    def rank(item):
        module = _module(item)
        group = GROUPS.get(module, module)
        return (GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER),
                MODULE_ORDER.index(module) if module in MODULE_ORDER else len(MODULE_ORDER))

    items.sort(key=rank)  # stable: the tests of a module keep their order


# tryfirst: the groups must be there before pytest-xdist reads them (its own
# hook in the worker adds the group to each test's id).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    _xdist_groups(items)
    marked = [item for item in items if item.get_closest_marker("integration")]
    if not marked:
        return
    if not _PROBLEM:
        _PROBLEM.append(_docker_problem())
    if _PROBLEM[0]:
        skip = pytest.mark.skip(reason=_PROBLEM[0])
        for item in marked:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def v1_then_v2_under_traffic(tmp_path_factory):
    """v1 of the sample app, then v2 (a new migration, new containers)
    deployed while webhook updates arrive through the proxy and updates are
    queued for the polling bot. test_zero_downtime checks the traffic,
    test_preflight's deploys are refused by it, test_rollback then rolls it
    back (same xdist group, in that order)."""
    from harness import Deployment, failed_tasks, make_source
    from traffic import TEST_RATE, PollingFeed, webhook_load, webhook_outcome

    d = Deployment.isolated("fs_zd", lambda n: str(tmp_path_factory.mktemp(n)))
    src = d.extravars["code_sync_source_dir"]
    try:
        make_source(src, 1)
        first = d.run("deploy.yml")
        assert first.rc == 0, failed_tasks(first)
        v1 = d.current_release()

        make_source(src, 2)
        load = webhook_load(d, TEST_RATE).start()
        feed = PollingFeed(d).start()
        time.sleep(2)  # traffic flows before the deploy starts
        second = d.run("deploy.yml")
        time.sleep(2)  # and after it ended
        samples = load.stop()
        feed.stop()
        assert second.rc == 0, failed_tasks(second)
        yield {
            "d": d, "v1": v1, "v2": d.current_release(), "v2_log": d.logs()[-1],
            "webhook": webhook_outcome(d, samples),
            "polling": feed.measure(),
        }
    finally:
        d.destroy()


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI an integration test that skipped (no Docker, no image, a
    missing tool, a leftover deployment in its way) is reported as failed."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and _under_ci() and item.get_closest_marker("integration") \
            and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (CI=true), which counts as a failure: {reason}"


def unique(kind: str) -> str:
    return f"fs_test_health_{kind}_{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def docker_sdk():
    import docker

    client = docker.DockerClient(base_url=DOCKER_HOST, timeout=120)
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_network(docker_sdk):
    net = docker_sdk.networks.create(unique("net"), driver="bridge", labels={"fs_test_health": "1"})
    yield net.name
    try:
        net.reload()
        for c in net.containers:
            net.disconnect(c, force=True)
        net.remove()
    except Exception:  # noqa: BLE001 - already gone
        pass


def _remove(container):
    try:
        container.remove(force=True, v=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def psql(container, sql: str) -> str:
    """Run SQL in a postgres container through docker exec (the SDK); return stdout, raise on error."""
    code, out = container.exec_run(
        ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-c", sql],
        demux=True,
    )
    stdout = (out[0] or b"").decode()
    if code != 0:
        raise RuntimeError(f"psql failed ({code}): {(out[1] or b'').decode()} {stdout}")
    return stdout


def start_postgres(docker_sdk, network: str, timeout: float = 90):
    """A fresh postgres:15 container with the heartbeats table; ready to answer."""
    container = docker_sdk.containers.run(
        PG_IMAGE, name=unique("db"), detach=True, network=network,
        environment={"POSTGRES_PASSWORD": "x"}, labels={"fs_test_health": "1"},
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            container.reload()
            if container.status not in ("created", "running"):
                raise RuntimeError(f"postgres exited: {container.logs()[-2000:].decode()}")
            logs = container.logs().decode(errors="replace")
            if "init process complete" in logs:
                code, _ = container.exec_run(["psql", "-U", "postgres", "-Atc", "SELECT 1"])
                if code == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready in {timeout}s: {logs[-2000:]}")
            time.sleep(0.3)
        psql(container, HEARTBEATS_DDL)
    except BaseException:
        _remove(container)
        raise
    return container


@pytest.fixture(scope="session")
def pg(docker_sdk, test_network):
    """A PostgreSQL container shared by the tests that do not stop it."""
    container = start_postgres(docker_sdk, test_network)
    yield container
    _remove(container)


@pytest.fixture
def fresh_pg(docker_sdk, test_network):
    """A PostgreSQL container of its own (for tests that stop it)."""
    created = []

    def make():
        created.append(start_postgres(docker_sdk, test_network))
        return created[-1]

    yield make
    for c in created:
        _remove(c)


@pytest.fixture
def service(docker_sdk, test_network):
    """Factory: start a python:3.11-slim container printing log lines; removed afterwards."""
    created = []

    def make(extra_line=None, extra_after=0.0, exit_after=None, restart_policy=None, tty=False,
             wait_running=True):
        env = {"PYTHONUNBUFFERED": "1"}
        if extra_line:
            env["FS_EXTRA_LINE"] = extra_line
            env["FS_EXTRA_AFTER"] = str(extra_after)
        if exit_after is not None:
            env["FS_EXIT_AFTER"] = str(exit_after)
        kwargs = {}
        if restart_policy:
            kwargs["restart_policy"] = restart_policy
        container = docker_sdk.containers.run(
            PY_IMAGE, ["python", "-c", SERVICE_SCRIPT], name=unique("svc"), detach=True,
            network=test_network, environment=env, labels={"fs_test_health": "1"}, tty=tty, **kwargs,
        )
        created.append(container)
        if wait_running:
            deadline = time.monotonic() + 30
            while True:
                container.reload()
                if container.status == "running" and b"INFO tick 0" in container.logs():
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"service container not up: {container.status}")
                time.sleep(0.1)
        return container

    yield make
    for c in created:
        _remove(c)


def _beat(pg_container, service_name: str, release: str, age: float = 0.0) -> None:
    psql(pg_container, (
        "INSERT INTO heartbeats (service, release, beat_at, pid, hostname, state) "
        f"VALUES ('{service_name}', '{release}', now() - interval '{float(age)} seconds', 1, 'test', 'ok') "
        "ON CONFLICT (service) DO UPDATE SET release = EXCLUDED.release, beat_at = EXCLUDED.beat_at"
    ))


@pytest.fixture
def beat():
    """Write (upsert) a heartbeat row: beat(pg_container, service, release, age=0.0)."""
    return _beat


@pytest.fixture
def run_sql():
    """run_sql(pg_container, sql) -> stdout, through the Docker SDK."""
    return psql
