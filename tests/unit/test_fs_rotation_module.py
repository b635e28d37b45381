"""The fs_backup_rotate module: documentation, check mode, diff, deletion, lock."""

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
MODULE_PATH = os.path.join(ROOT, "plugins", "modules", "fs_backup_rotate.py")
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
DAILY = "field_service_%Y%m%d_%H%M%S.sql.gz"


@pytest.fixture(scope="module")
def module():
    pytest.importorskip("ansible")
    spec = importlib.util.spec_from_file_location("fs_backup_rotate", MODULE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_documentation_matches_argument_spec(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert set(doc["options"]) == set(module.ARGUMENT_SPEC)
    for name, opt in doc["options"].items():
        arg = module.ARGUMENT_SPEC[name]
        assert opt.get("type", "str") == arg.get("type", "str"), name
        assert bool(opt.get("required", False)) == bool(arg.get("required", False)), name
        assert opt.get("default") == arg.get("default"), name
        assert opt.get("elements") == arg.get("elements"), name
    for attribute in ("check_mode", "diff_mode", "idempotent"):
        assert doc["attributes"][attribute]["support"] == "full"
    yaml.safe_load(module.EXAMPLES)
    assert {"deleted", "kept", "ignored", "reason", "now"} <= set(yaml.safe_load(module.RETURN))
    # the rules are written in the documentation, as the module_utils states them
    text = " ".join(doc["description"])
    for words in ("both", "never touched", "never deleted", "dated after now", "sidecar",
                  "ISO week", "only after a new backup"):
        assert words in text, words


def test_ansible_doc_renders():
    doc = shutil.which("ansible-doc", path=os.path.dirname(sys.executable))
    if doc is None:
        pytest.skip("ansible-doc not installed")
    out = subprocess.run([doc, "-M", os.path.join(ROOT, "plugins", "modules"), "fs_backup_rotate"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    assert out.returncode == 0, out.stderr
    assert "not among the" in out.stdout and "older than" in out.stdout


def make_folder(path, days, extra=("notes.txt",)):
    path.mkdir(parents=True, exist_ok=True)
    names = []
    for day in days:
        name = datetime.datetime(2025, 10, day, 2).strftime(DAILY)
        (path / name).write_bytes(b"x")
        (path / (name + ".sha256")).write_text(f"{'0' * 64}  {name}\n")
        names.append(name)
    for name in extra:
        (path / name).write_text("keep me")
    return names


def test_rotate_function_deletes_backups_and_their_sidecars(module, tmp_path):
    names = make_folder(tmp_path, range(1, 11))
    now = datetime.datetime(2025, 10, 10, 2, 1)
    plan = module.rotate(str(tmp_path), DAILY, 7, "7d", now, (".age",), check_mode=True)
    assert plan.delete == names[:3][::-1]
    assert len(os.listdir(tmp_path)) == 21  # check mode: nothing deleted
    plan = module.rotate(str(tmp_path), DAILY, 7, "7d", now, (".age",), check_mode=False)
    left = sorted(os.listdir(tmp_path))
    assert left == sorted([*names[3:], *(n + ".sha256" for n in names[3:]), "notes.txt"])
    again = module.rotate(str(tmp_path), DAILY, 7, "7d", now, (".age",), check_mode=False)
    assert again.delete == []
    missing = module.rotate(str(tmp_path / "nothere"), DAILY, 7, "7d", now, (".age",), False)
    assert missing.keep == [] and missing.delete == []


def run_module(args: dict, *flags: str) -> dict:
    out = subprocess.run(
        [ANSIBLE, "localhost", "-c", "local", "-i", "localhost,", "-m", "fs_backup_rotate",
         "-a", json.dumps(args), "-o", *flags],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
        env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                 ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_LOAD_CALLBACK_PLUGINS="0"))
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert "=>" in line, out.stdout + out.stderr
    status, _, payload = line.partition(" => ")
    result = json.loads(payload)
    result["_status"] = status
    result["failed"] = result.get("failed", False) or "FAILED" in status
    return result


@pytest.mark.skipif(not os.path.exists(ANSIBLE), reason="ansible not installed in this Python")
def test_module_check_mode_lists_and_deletes_nothing_then_deletes(tmp_path):
    names = make_folder(tmp_path / "daily", range(1, 11))
    args = {"path": str(tmp_path / "daily"), "name_format": DAILY, "keep": 7, "max_age": "7d",
            "now": "2025-10-10T02:01:00", "lock_file": str(tmp_path / ".fs_backup.lock")}
    before = sorted(os.listdir(tmp_path / "daily"))
    dry = run_module(args, "--check", "--diff")
    assert dry["changed"] is True and dry["deleted"] == names[:3][::-1]
    assert dry["ignored"] == ["notes.txt"] and dry["reason"] is None
    assert sorted(os.listdir(tmp_path / "daily")) == before
    real = run_module(args)
    assert real["deleted"] == dry["deleted"] and real["changed"] is True
    assert sorted(os.listdir(tmp_path / "daily")) == sorted(
        [*names[3:], *(n + ".sha256" for n in names[3:]), "notes.txt"])
    again = run_module(args)
    assert again["changed"] is False and again["deleted"] == []


@pytest.mark.skipif(not os.path.exists(ANSIBLE), reason="ansible not installed in this Python")
def test_module_waits_for_the_backup_lock_then_fails(tmp_path):
    make_folder(tmp_path / "daily", range(1, 11))
    lock = tmp_path / ".fs_backup.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        res = run_module({"path": str(tmp_path / "daily"), "name_format": DAILY, "keep": 7,
                          "max_age": "7d", "lock_file": str(lock), "lock_timeout": 1})
    finally:
        os.close(fd)
    assert res.get("failed") and "held" in res["msg"]
    assert len(os.listdir(tmp_path / "daily")) == 21


@pytest.mark.skipif(not os.path.exists(ANSIBLE), reason="ansible not installed in this Python")
def test_module_refuses_bad_settings(tmp_path):
    res = run_module({"path": str(tmp_path), "name_format": "week_%V_%Y.sql.gz", "keep": 4,
                      "max_age": "4w"})
    assert res.get("failed") and "%G" in res["msg"]
    res = run_module({"path": str(tmp_path), "name_format": DAILY, "keep": 0, "max_age": "7d"})
    assert res.get("failed") and "at least 1" in res["msg"]
