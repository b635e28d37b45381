"""What ansible-test sanity does not check about the modules' documentation.

The documentation against each argument spec, ansible-doc rendering, the
attributes, YAML validity and the rest are ``ansible-test sanity`` in
scripts/test (scripts/sanity). Left here: the EXAMPLES are tasks a user can
copy, each named and calling the module by its fully qualified name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "plugins" / "modules"
MODULES = sorted(p.stem for p in MODULE_DIR.glob("*.py") if p.stem != "__init__")


def doc_string(name: str, block: str) -> str:
    """A DOCUMENTATION/EXAMPLES/RETURN string literal, read from the AST without running the module."""
    tree = ast.parse((MODULE_DIR / f"{name}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == block and isinstance(node.value, ast.Constant)):
            return node.value.value
    raise AssertionError(f"{name}: no {block} string at module level")


def test_there_are_modules():
    assert len(MODULES) >= 10, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples_are_named_tasks_that_call_the_module_by_its_fqcn(name):
    examples = yaml.safe_load(doc_string(name, "EXAMPLES"))
    assert isinstance(examples, list) and examples, f"{name}: EXAMPLES is not a list of tasks"
    fqcn = f"fieldservice.deploy.{name}"
    for task in examples:
        assert isinstance(task, dict) and task.get("name"), f"{name}: an example task has no name: {task!r}"
    assert any(fqcn in task for task in examples), f"{name}: no example calls {fqcn}"
    short = [task["name"] for task in examples if name in task]
    assert not short, f"{name}: examples call the module by its short name: {short}"
