"""Checked over SSH on the target, as a user would after a deploy to a server."""

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

APP = "molecule_ssh"
ROOT = "/srv/field-service"


def test_reached_over_ssh(host):
    assert host.backend.NAME == "ansible"
    assert host.ansible.get_variables()["ansible_host"] == "127.0.0.1"
    # sshd is what we talk to: the target is the container, not the control node
    assert host.file("/run/sshd").is_directory
    assert host.file(f"{ROOT}/current").is_symlink


def test_services_run_from_the_current_release(host):
    rel = host.file(f"{ROOT}/current").linked_to.rstrip("/").rsplit("/", 1)[-1]
    assert host.file(f"{ROOT}/releases/{rel}/REVISION").contains(rel)
    for svc in ("admin_bot", "master_bot"):
        state = engine_health(host, f"{APP}_{svc}_{rel}")
        assert state["Running"] and state["Health"]["Status"] == "healthy"


def test_heartbeats_fresh(host):
    rel = host.file(f"{ROOT}/current").linked_to.rstrip("/").rsplit("/", 1)[-1]
    out = host.check_output(
        f"docker exec {APP}_db psql -X -At -U field_service -d field_service -c "
        "\"SELECT service, release, EXTRACT(EPOCH FROM now()-beat_at) < 30 FROM heartbeats ORDER BY 1\"")
    assert out.splitlines() == [f"admin_bot|{rel}|t", f"master_bot|{rel}|t"]


def test_pre_deploy_backup_on_the_target(host):
    files = [f for f in host.file("/srv/backups/deploy").listdir() if f.endswith(".sql.gz")]
    assert len(files) == 1
    assert host.file(f"/srv/backups/deploy/{files[0]}").mode == 0o600
