"""The fs_health_check module: its documentation matches its argument spec."""

from __future__ import annotations

import importlib.util
import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE_PATH = os.path.join(ROOT, "plugins", "modules", "fs_health_check.py")


@pytest.fixture(scope="module")
def module():
    pytest.importorskip("ansible")
    spec = importlib.util.spec_from_file_location("fs_health_check", MODULE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _compare(doc_options: dict, spec: dict, where: str):
    assert set(doc_options) == set(spec), where
    for name, doc in doc_options.items():
        arg = spec[name]
        here = f"{where}.{name}"
        assert doc.get("type", "str") == arg.get("type", "str"), here
        assert bool(doc.get("required", False)) == bool(arg.get("required", False)), here
        assert doc.get("default") == arg.get("default"), here
        assert doc.get("elements") == arg.get("elements"), here
        assert doc.get("choices") == arg.get("choices"), here
        if "suboptions" in doc or "options" in arg:
            _compare(doc.get("suboptions", {}), arg.get("options", {}), here)


def test_documentation_matches_argument_spec(module):
    doc = yaml.safe_load(module.DOCUMENTATION)
    _compare(doc["options"], module.ARGUMENT_SPEC, "options")
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert doc["attributes"]["diff_mode"]["support"] == "none"
    yaml.safe_load(module.EXAMPLES)
    returned = yaml.safe_load(module.RETURN)
    assert set(module.REPORT_KEYS) <= set(returned)


def test_default_patterns_match_module_utils(module):
    import fs_health

    assert module.ARGUMENT_SPEC["critical_patterns"]["default"] == fs_health.DEFAULT_CRITICAL_PATTERNS
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc["options"]["critical_patterns"]["default"] == fs_health.DEFAULT_CRITICAL_PATTERNS


def test_ansible_doc_renders():
    import shutil
    import subprocess
    import sys

    ansible_doc = os.path.join(os.path.dirname(sys.executable), "ansible-doc")
    if not os.path.exists(ansible_doc):
        ansible_doc = shutil.which("ansible-doc")
    if not ansible_doc:
        pytest.skip("ansible-doc is not installed")
    proc = subprocess.run(
        [ansible_doc, "-M", os.path.join(ROOT, "plugins", "modules"), "fs_health_check"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[ERROR]" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    for text in ("fs_health_check", "heartbeat_max_age", "critical_patterns", "fail_on_unhealthy",
                 "RETURN VALUES", "check_mode"):
        assert text in proc.stdout
    proc = subprocess.run(
        [ansible_doc, "-M", os.path.join(ROOT, "plugins", "modules"), "--json", "fs_health_check"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
