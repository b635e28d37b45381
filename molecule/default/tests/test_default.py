"""What a user checks by hand after v1 then v2 were deployed."""

import json
import time


def engine_health(host, container, wait=40):
    """The engine's own health verdict: it runs the image's HEALTHCHECK every
    --interval (10 s in the sample), so a container started by the last
    deploy may still be "starting"; wait for the first verdict."""
    deadline = time.monotonic() + wait
    while True:
        state = json.loads(host.check_output(f"docker inspect {container}"))[0]["State"]
        if state["Health"]["Status"] != "starting" or time.monotonic() > deadline:
            return state
        time.sleep(1)

APP = "molecule_fs"
ROOT = "/tmp/molecule-fs-default/app"
BACKUPS = "/tmp/molecule-fs-default/backups"


def current_release(host):
    link = host.file(f"{ROOT}/current")
    assert link.is_symlink
    return link.linked_to.rstrip("/").rsplit("/", 1)[-1]


def psql(host, sql):
    cmd = host.run(f"docker exec {APP}_db psql -X -At -U field_service -d field_service -c {sql!r}")
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def test_services_of_the_current_release_run(host):
    rel = current_release(host)
    for svc in ("admin_bot", "master_bot"):
        state = engine_health(host, f"{APP}_{svc}_{rel}")
        assert state["Running"] and not state["Restarting"]
        assert state["Health"]["Status"] == "healthy"
    # nothing of an older release is left running
    names = host.check_output(f"docker ps --filter label=fs.app={APP} --filter label=fs.role=service "
                              "--format '{{.Names}}'").split()
    assert sorted(names) == sorted(f"{APP}_{s}_{rel}" for s in ("admin_bot", "master_bot"))


def test_release_directories_and_current_link(host):
    rel = current_release(host)
    assert host.file(f"{ROOT}/releases/{rel}/REVISION").contains(rel)
    record = json.loads(host.file(f"{ROOT}/releases/{rel}/RELEASE.json").content_string)
    assert record["outcome"] == "success" and record["schema_after"] == "0002"
    releases = [d for d in host.file(f"{ROOT}/releases").listdir() if not d.startswith(".")]
    assert len(releases) == 2  # v1 and v2


def test_heartbeats_are_fresh_and_from_the_current_release(host):
    rel = current_release(host)
    rows = psql(host, "SELECT service, release, EXTRACT(EPOCH FROM now()-beat_at) < 30 FROM heartbeats "
                      "ORDER BY service").splitlines()
    assert rows == [f"admin_bot|{rel}|t", f"master_bot|{rel}|t"]


def test_schema_revision_is_v2(host):
    assert psql(host, "SELECT version_num FROM alembic_version") == "0002"


def test_pre_deploy_backups_are_private(host):
    files = sorted(f for f in host.file(f"{BACKUPS}/deploy").listdir() if f.endswith(".sql.gz"))
    assert len(files) == 2  # one before v1, one before v2; none for the no-op run
    for name in files:
        f = host.file(f"{BACKUPS}/deploy/{name}")
        assert f.mode == 0o600 and f.size > 0
        assert host.file(f"{BACKUPS}/deploy/{name}.sha256").exists


def test_backups_are_scheduled_as_the_seed_says(host):
    crontab = host.check_output("crontab -l").splitlines()
    schedules = {}
    for i, line in enumerate(crontab):
        if line.startswith(f"#Ansible: {APP} backup "):
            schedules[line.rsplit(" ", 1)[1]] = crontab[i + 1]
    assert schedules["daily"].startswith("0 2 * * * ") and schedules["daily"].endswith(" daily")
    assert schedules["weekly"].startswith("0 3 * * 0 ") and schedules["weekly"].endswith(" weekly")
    assert schedules["monthly"].startswith("0 4 1 * * ") and schedules["monthly"].endswith(" monthly")
    assert " verify " in schedules["verify"]
    # the program's configuration, which may hold secrets, is root's alone
    config = host.file(f"{ROOT}/backup/config.json")
    assert config.user == "root" and config.mode == 0o600
