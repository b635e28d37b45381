"""The backup_rotate module: it drives the real program's ``rotate`` action.

Run for real: ``ansible localhost -m backup_rotate -M plugins/modules`` (and
``ansible-playbook --check --diff`` for the diff), against the entry script
roles/backup/files/fs-backup and a configuration in tmp_path.
"""

from __future__ import annotations

import datetime
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULES = os.path.join(ROOT, "plugins", "modules")
MODULE_PATH = os.path.join(MODULES, "backup_rotate.py")
PROGRAM = os.path.join(ROOT, "roles", "backup", "files", "fs-backup")
BIN = os.path.dirname(sys.executable)
ANSIBLE = os.path.join(BIN, "ansible")
DAILY = "field_service_%Y%m%d_%H%M%S.sql.gz"
WEEKLY = "field_service_week_%V_%G.sql.gz"
NOW = "2025-10-10T02:01:00"

@pytest.fixture(scope="module")
def module():
    spec = importlib.util.spec_from_file_location("backup_rotate", MODULE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_documentation_states_the_rules(module):
    # (the documentation against the argument spec: ansible-test sanity)
    doc = yaml.safe_load(module.DOCUMENTATION)
    spec = module.ARGUMENT_SPEC
    assert set(spec) == {"config", "program", "python", "schedules", "cloud", "now"}
    assert spec["config"] == {"type": "path", "required": True}
    assert spec["program"]["default"] == "/usr/local/lib/field-service-backup/current/fs-backup"
    assert spec["python"]["default"] == "/usr/bin/python3"
    for attribute in ("check_mode", "diff_mode", "idempotent"):
        assert doc["attributes"][attribute]["support"] == "full"
    assert doc["attributes"]["diff_mode"]["description"]
    assert doc["version_added"] == "0.3.0"
    examples = yaml.safe_load(module.EXAMPLES)
    assert all("fieldservice.deploy.backup_rotate" in task for task in examples)
    assert {"deleted", "folders", "cloud", "now"} <= set(yaml.safe_load(module.RETURN))
    # the rules are written in the documentation, as rotation.py states them
    text = " ".join(doc["description"])
    for words in ("both", "never touched", "never deleted", "dated after now", "sidecar",
                  "ISO week", "only after a new backup", "C(rotate) action"):
        assert words in text, words
    # a thin shell: Ansible's basic module and the standard library, nothing else
    with open(MODULE_PATH, encoding="utf-8") as handle:
        source = handle.read()
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports == ["import json", "import os", "from ansible.module_utils.basic import AnsibleModule"]
    assert source.startswith("#!/usr/bin/python\n# Copyright (c) 2026, field-service-deploy contributors\n"
                             "# GNU General Public License v3.0+ (see LICENSE or "
                             "https://www.gnu.org/licenses/gpl-3.0.txt)\n")


def test_the_command_line_of_each_option(module):
    params = {"python": "/usr/bin/python3", "program": "/x/fs-backup", "config": "/c.json",
              "schedules": ["daily", "weekly"], "cloud": True, "now": NOW}
    assert module.command(params, check_mode=True) == [
        "/usr/bin/python3", "/x/fs-backup", "rotate", "--config", "/c.json", "--json", "--dry-run",
        "--schedule", "daily", "--schedule", "weekly", "--cloud", "--now", NOW]
    plain = dict(params, schedules=None, cloud=False, now=None)
    assert module.command(plain, check_mode=False) == [
        "/usr/bin/python3", "/x/fs-backup", "rotate", "--config", "/c.json", "--json"]


def test_ansible_doc_renders():
    doc = shutil.which("ansible-doc", path=BIN)
    if doc is None:
        pytest.skip("ansible-doc not installed")
    out = subprocess.run([doc, "-M", MODULES, "backup_rotate"], capture_output=True, text=True, cwd=ROOT,
                         timeout=60, env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    assert out.returncode == 0, out.stderr
    assert "not among the" in out.stdout and "older than" in out.stdout


def make_folder(path, names, extra=("notes.txt",)) -> list[str]:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / name).write_bytes(b"x")
        (path / (name + ".sha256")).write_text(f"{'0' * 64}  {name}\n")
    for name in extra:
        (path / name).write_text("keep me")
    return list(names)


def days(*numbers) -> list[str]:
    return [datetime.datetime(2025, 10, day, 2).strftime(DAILY) for day in numbers]


def write_config(tmp_path, **over) -> str:
    config = {
        "db": {"container": "field_service_db", "user": "field_service", "name": "field_service"},
        "utc": False, "lock_file": str(tmp_path / ".fs_backup.lock"), "lock_timeout": 30,
        "folders": {
            "daily": {"dir": str(tmp_path / "daily"), "name_format": DAILY, "keep": 7, "max_age": "7d"},
            "weekly": {"dir": str(tmp_path / "weekly"), "name_format": WEEKLY, "keep": 4, "max_age": "4w"},
        },
        "cloud": {},
    }
    config.update(over)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def ansible_env() -> dict:
    return dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOAD_CALLBACK_PLUGINS="0",
                ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_NOCOLOR="1")


def run_module(args: dict, *flags: str) -> dict:
    args = {"program": PROGRAM, "python": sys.executable, **args}
    out = subprocess.run(
        [ANSIBLE, "localhost", "-c", "local", "-i", "localhost,", "-M", MODULES, "-m", "backup_rotate",
         "-a", json.dumps(args), "-o", *flags],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env=ansible_env())
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert "=>" in line, out.stdout + out.stderr
    status, _, payload = line.partition(" => ")
    result = json.loads(payload)
    result["_status"] = status
    result["failed"] = result.get("failed", False) or "FAILED" in status
    return result


def test_check_mode_lists_and_deletes_nothing_then_a_run_deletes_exactly_that(tmp_path):
    names = make_folder(tmp_path / "daily", days(*range(1, 11)))
    config = write_config(tmp_path)
    before = sorted(os.listdir(tmp_path / "daily"))
    dry = run_module({"config": config, "now": NOW}, "--check", "--diff")
    assert dry["changed"] is True and dry["deleted"] == names[:3][::-1], dry
    assert dry["folders"]["daily"] == {"path": str(tmp_path / "daily"), "keep": names[3:][::-1],
                                       "delete": names[:3][::-1], "ignored": ["notes.txt"],
                                       "reason": None}
    assert dry["folders"]["weekly"]["keep"] == [] and dry["now"] == NOW and "cloud" not in dry
    assert sorted(os.listdir(tmp_path / "daily")) == before
    real = run_module({"config": config, "now": NOW})
    assert real["changed"] is True and real["deleted"] == dry["deleted"] and not real["failed"]
    assert sorted(os.listdir(tmp_path / "daily")) == sorted(
        [*names[3:], *(n + ".sha256" for n in names[3:]), "notes.txt"])
    again = run_module({"config": config, "now": NOW})
    assert again["changed"] is False and again["deleted"] == []


def test_the_defaults_run_the_program_with_the_system_python(tmp_path):
    names = make_folder(tmp_path / "daily", days(*range(1, 11)))
    result = run_module({"config": write_config(tmp_path), "now": NOW, "python": "/usr/bin/python3"})
    assert result["changed"] is True and result["deleted"] == names[:3][::-1], result


def test_the_diff_shows_each_folder_before_and_after(tmp_path):
    names = make_folder(tmp_path / "daily", days(*range(1, 11)))
    weekly = make_folder(tmp_path / "weekly", [
        (datetime.datetime(2025, 8, 31, 3) + datetime.timedelta(weeks=w)).strftime(WEEKLY) for w in range(6)])
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
        "config": write_config(tmp_path), "program": PROGRAM, "python": sys.executable, "now": NOW,
        "_ansible_check_mode": True, "_ansible_diff": True}}))
    out = subprocess.run([sys.executable, MODULE_PATH, str(args)], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    result = json.loads(out.stdout)
    assert result["changed"] is True, result
    assert result["diff"] == [
        {"before_header": str(tmp_path / "daily"), "after_header": str(tmp_path / "daily"),
         "before": "".join(f"{n}\n" for n in names), "after": "".join(f"{n}\n" for n in names[3:])},
        {"before_header": str(tmp_path / "weekly"), "after_header": str(tmp_path / "weekly"),
         "before": "".join(f"{n}\n" for n in sorted(weekly)),
         "after": "".join(f"{n}\n" for n in sorted(weekly[2:]))},
    ]
    assert len(os.listdir(tmp_path / "daily")) == 21  # check mode


def test_a_playbook_in_check_and_diff_mode_prints_the_diff(tmp_path):
    names = make_folder(tmp_path / "daily", days(*range(1, 11)))
    playbook = tmp_path / "rotate_now.yml"
    task = {"name": "Rotate", "backup_rotate": {
        "config": write_config(tmp_path), "program": PROGRAM, "python": sys.executable,
        "schedules": ["daily"], "now": NOW}}
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]))
    out = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-c", "local", "-i", "localhost,",
                          "-M", MODULES, str(playbook), "--check", "--diff"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120, env=ansible_env())
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"--- before: {tmp_path / 'daily'}" in out.stdout
    assert f"+++ after: {tmp_path / 'daily'}" in out.stdout
    for name in names[:3]:
        assert f"-{name}" in out.stdout
    assert "changed=1" in out.stdout
    assert len(os.listdir(tmp_path / "daily")) == 21


def test_the_module_waits_for_the_backup_lock_then_fails(tmp_path):
    make_folder(tmp_path / "daily", days(*range(1, 11)))
    lock = tmp_path / ".fs_backup.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        res = run_module({"config": write_config(tmp_path, lock_timeout=1), "now": NOW})
    finally:
        os.close(fd)
    assert res["failed"] and res["msg"] == "another backup is running (pid ? since ?); waited 1s", res
    assert res["rc"] == 3
    assert len(os.listdir(tmp_path / "daily")) == 21
    # check mode takes no lock: it reads while a backup runs
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        dry = run_module({"config": write_config(tmp_path, lock_timeout=1), "now": NOW}, "--check")
    finally:
        os.close(fd)
    assert not dry["failed"] and len(dry["deleted"]) == 3, dry


def test_the_module_refuses_bad_settings(tmp_path):
    bad = {"weekly": {"dir": str(tmp_path / "weekly"), "name_format": "week_%V_%Y.sql.gz", "keep": 4,
                      "max_age": "4w"}}
    res = run_module({"config": write_config(tmp_path, folders=bad)})
    assert res.get("failed") and "%G" in res["msg"] and not res["msg"].startswith("fs_backup:"), res
    bad = {"daily": {"dir": str(tmp_path / "daily"), "name_format": DAILY, "keep": 0, "max_age": "7d"}}
    res = run_module({"config": write_config(tmp_path, folders=bad)})
    assert res.get("failed") and "at least 1" in res["msg"]


def test_schedules_cloud_and_now_reach_the_program(tmp_path):
    names = make_folder(tmp_path / "daily", days(*range(1, 11)))
    weekly = make_folder(tmp_path / "weekly", [
        (datetime.datetime(2025, 8, 31, 3) + datetime.timedelta(weeks=w)).strftime(WEEKLY) for w in range(6)])
    config = write_config(tmp_path)
    only = run_module({"config": config, "now": NOW, "schedules": ["weekly"]})
    assert list(only["folders"]) == ["weekly"] and only["deleted"] == weekly[:2][::-1], only
    assert set(names) <= set(os.listdir(tmp_path / "daily"))
    later = run_module({"config": config, "now": "2025-10-20T02:01:00", "schedules": ["daily"]}, "--check")
    assert later["now"] == "2025-10-20T02:01:00" and later["deleted"] == names[:3][::-1]
    no_cloud = run_module({"config": config, "cloud": True})
    assert no_cloud["failed"] and "no cloud copy is configured" in no_cloud["msg"]
    bad_now = run_module({"config": config, "now": "tomorrow"})
    assert bad_now["failed"] and "YYYY-MM-DDTHH:MM:SS" in bad_now["msg"]
    missing = run_module({"config": config, "program": str(tmp_path / "nothere")})
    assert missing["failed"] and "does not exist" in missing["msg"]
    empty = run_module({"config": write_config(tmp_path, folders={"daily": {
        "dir": str(tmp_path / "nothere"), "name_format": DAILY, "keep": 7, "max_age": "7d"}})})
    assert empty["changed"] is False and empty["folders"]["daily"]["keep"] == []
