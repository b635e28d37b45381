"""The backup program as a package (roles/backup/files/fs_backup) and its entry script.

It runs on the server with the system python3 (3.8 or newer), standard
library only, installed as <backup_install_dir>/fs-backup beside
<backup_install_dir>/fs_backup/: it must work wherever it is copied to.
"""

from __future__ import annotations

import ast
import os
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = os.path.join(ROOT, "roles", "backup", "files")
PACKAGE = os.path.join(FILES, "fs_backup")
ENTRY = os.path.join(FILES, "fs-backup")
HEADER = ("# Copyright (c) 2026, field-service-deploy contributors\n"
          "# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)\n")
ACTIONS = {"check", "check_config", "cloud_rotate", "dump", "list", "locate", "restore", "rotate", "run",
           "verify", "verify_checksum", "watch"}


def sources() -> dict[str, str]:
    found = {}
    for folder, _dirs, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as handle:
                    found[os.path.relpath(path, PACKAGE)] = handle.read()
    return found


def uses_sys_path(tree: ast.AST) -> bool:
    return any(isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
               and node.value.id == "sys" for node in ast.walk(tree))


def test_the_package_has_a_module_per_part_and_per_command():
    files = set(sources())
    assert {"__init__.py", "__main__.py", "cli.py", "execute.py", "signals.py", "lock.py", "checksum.py",
            "status.py", "postgresql.py", "compression.py", "encryption.py", "names.py", "rotation.py",
            "cloud.py", "monitoring.py", "configuration.py"} <= files
    actions = {name[len("actions/"):-3] for name in files if name.startswith("actions/")}
    assert actions == ACTIONS | {"__init__"}
    # the one-file program and the second rotation implementation are gone
    for gone in ("roles/backup/files/fs_backup.py", "plugins/module_utils/fs_rotation.py",
                 "plugins/modules/fs_backup_rotate.py"):
        assert not os.path.exists(os.path.join(ROOT, gone)), gone


@pytest.mark.parametrize("name", sorted(sources()))
def test_each_module_is_python_3_8_standard_library_with_relative_imports(name):
    source = sources()[name]
    assert source.startswith(HEADER), f"{name}: no license header"
    assert len(source.splitlines()) <= 600, f"{name}: over 600 lines"
    tree = ast.parse(source, feature_version=(3, 8))  # a SyntaxError for newer syntax
    assert ast.get_docstring(tree), f"{name}: no docstring"
    stdlib = set(sys.stdlib_module_names)
    has_annotations = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in stdlib, f"{name}: imports {alias.name}"
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                assert node.module.split(".")[0] in stdlib | {"__future__"}, f"{name}: from {node.module}"
        elif isinstance(node, (ast.AnnAssign, ast.arg)) and node.annotation is not None:
            has_annotations = True
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
            has_annotations = True
    if has_annotations:
        # annotations like ``str | None`` are never evaluated on Python 3.8
        assert "from __future__ import annotations" in source, name
    assert not uses_sys_path(tree), f"{name}: sys.path"


def test_the_entry_script_works_wherever_the_role_installs_it(tmp_path):
    # Run by the server's Python (backup_python), never by a shebang: Debian
    # has no `python` for `#!/usr/bin/env python`, and ansible-test allows
    # no other shebang outside modules. So no shebang, not executable.
    mode = os.stat(ENTRY).st_mode
    assert stat.S_IMODE(mode) & 0o111 == 0
    with open(ENTRY, encoding="utf-8") as handle:
        text = handle.read()
    assert text.startswith(HEADER)
    assert "from fs_backup.cli import main" in text and "sys.exit(main())" in text
    assert not uses_sys_path(ast.parse(text))
    install = tmp_path / "field-service-backup"
    install.mkdir()
    shutil.copy2(ENTRY, install / "fs-backup")
    shutil.copytree(PACKAGE, install / "fs_backup", ignore=shutil.ignore_patterns("__pycache__"))
    # -E -s: no PYTHONPATH, no user site; run from another directory
    out = subprocess.run([sys.executable, "-E", "-s", str(install / "fs-backup"), "--help"],
                         capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("dump", "run", "rotate", "check-config", "verify", "check", "restore", "locate",
                    "list", "cloud-rotate", "verify-checksum"):
        assert command in out.stdout
    if os.path.exists("/usr/bin/python3"):  # the server's Python, as cron runs it
        direct = subprocess.run(["/usr/bin/python3", str(install / "fs-backup"), "rotate", "--help"],
                                capture_output=True, text=True, cwd=str(tmp_path), timeout=60)
        assert direct.returncode == 0 and "--dry-run" in direct.stdout, direct.stderr
    module = subprocess.run([sys.executable, "-E", "-s", "-m", "fs_backup", "check-config", "--help"],
                            capture_output=True, text=True, cwd=str(install), timeout=60)
    assert module.returncode == 0 and "--config" in module.stdout, module.stderr


def test_errors_are_one_line_with_the_program_name(tmp_path):
    out = subprocess.run([sys.executable, ENTRY, "verify-checksum", str(tmp_path / "nothere.sql.gz")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.splitlines()[-1] == f"fs_backup: ERROR: no such file: {tmp_path / 'nothere.sql.gz'}"


def test_run_and_rotate_use_the_same_rotation_functions():
    from fs_backup.actions import cloud_rotate, dump, rotate, run

    assert dump.rotate_folder is rotate.rotate_folder
    assert run.rotate_remote is rotate.rotate_remote and run.cloud_retention is rotate.cloud_retention
    assert cloud_rotate.rotate_cloud is rotate.rotate_cloud
