"""Every custom module is documented, and its documentation matches its argument spec.

The checks follow ``ansible-test sanity --test validate-modules`` (ansible-core's
``validate_modules/main.py``), which needs a collection layout and packages this
repository does not ship: the argument spec is captured the same way (the module
runs as ``__main__`` with ``AnsibleModule.__init__`` replaced by a recorder), and
the comparisons carry validate-modules' error codes so a failure reads like one.
"""

from __future__ import annotations

import ast
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils import basic
from ansible.module_utils.common.parameters import DEFAULT_TYPE_VALIDATORS

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / "plugins" / "modules"
MODULES = sorted(p.stem for p in MODULE_DIR.glob("*.py") if p.stem != "__init__")
DOC_BLOCKS = ("DOCUMENTATION", "EXAMPLES", "RETURN")
# validate-modules: NO_LOG_REGEX and is_potential_secret_option()
NO_LOG_REGEX = re.compile(r"(?:pass(?!ive)|secret|token|key)", re.I)
NOT_SECRET_SUFFIXES = (
    "_count",
    "_type",
    "_alg",
    "_algorithm",
    "_timeout",
    "_name",
    "_comment",
    "_bits",
    "_id",
    "_identifier",
    "_period",
    "_file",
    "_filename",
)
NOT_SECRET_PARTS = (
    "publickey",
    "public_key",
    "keyusage",
    "key_usage",
    "keyserver",
    "key_server",
    "keysize",
    "key_size",
    "keyservice",
    "key_service",
    "pub_key",
    "pubkey",
    "keyboard",
    "secretary",
)


def test_there_are_modules():
    assert MODULES, f"no modules found in {MODULE_DIR}"


def doc_strings(name: str) -> dict[str, str]:
    """The DOCUMENTATION/EXAMPLES/RETURN string literals, read from the AST without running the module."""
    tree = ast.parse((MODULE_DIR / f"{name}.py").read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target = node.targets[0].id
            if (
                target in DOC_BLOCKS
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                found[target] = node.value.value
    return found


def parsed_doc(name: str, block: str = "DOCUMENTATION"):
    return yaml.safe_load(doc_strings(name).get(block, ""))


class _Called(Exception):
    pass


def captured_module_kwargs(name: str, monkeypatch) -> dict:
    """Run the module as __main__, AnsibleModule.__init__ recording its arguments (validate-modules' way)."""
    record: dict = {}

    def fake_init(self, *args, **kwargs):
        for arg, arg_name in zip(
            args,
            (
                "argument_spec",
                "bypass_checks",
                "no_log",
                "mutually_exclusive",
                "required_together",
                "required_one_of",
                "add_file_common_args",
                "supports_check_mode",
                "required_if",
                "required_by",
            ),
            strict=False,
        ):
            kwargs[arg_name] = arg
        record.update(kwargs)
        raise _Called

    monkeypatch.setattr(basic.AnsibleModule, "__init__", fake_init)
    monkeypatch.setattr(basic, "_load_params", lambda: {})
    monkeypatch.setattr(sys, "argv", [str(MODULE_DIR / f"{name}.py")])
    with pytest.raises(_Called):
        runpy.run_path(str(MODULE_DIR / f"{name}.py"), run_name="__main__")
    return record


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name):
    env = dict(
        os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-doc"), "-M", str(MODULE_DIR), "-t", "module", name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"ansible-doc {name} warned:\n{proc.stderr}"
    assert f"MODULE {name}" in proc.stdout, proc.stdout[:500]
    for section in ("OPTIONS", "ATTRIBUTES", "EXAMPLES:", "RETURN VALUES:"):
        assert section in proc.stdout, f"ansible-doc {name} shows no {section}"


@pytest.mark.parametrize("name", MODULES)
def test_doc_blocks_are_yaml(name):
    strings = doc_strings(name)
    missing = [b for b in DOC_BLOCKS if b not in strings]
    assert not missing, f"{name}: no {', '.join(missing)} string at module level"
    docs = {block: parsed_doc(name, block) for block in DOC_BLOCKS}
    doc = docs["DOCUMENTATION"]
    assert isinstance(doc, dict), f"{name}: DOCUMENTATION is not a YAML mapping"
    assert doc.get("module") == name, f"{name}: DOCUMENTATION.module is {doc.get('module')!r}"
    assert doc.get("short_description"), f"{name}: no short_description"
    assert doc.get("description"), f"{name}: no description"
    assert isinstance(docs["EXAMPLES"], list) and docs["EXAMPLES"], f"{name}: EXAMPLES is not a list of tasks"
    for task in docs["EXAMPLES"]:
        assert isinstance(task, dict) and task.get("name"), f"{name}: an example task has no name: {task!r}"
    ret = docs["RETURN"]
    assert isinstance(ret, dict) and ret, f"{name}: RETURN is not a YAML mapping"
    problems = []
    for key, data in ret.items():
        for field in ("description", "returned", "type"):
            if not isinstance(data, dict) or field not in data:
                problems.append(f"RETURN.{key} has no {field}")
        for sub, subdata in ((data or {}).get("contains") or {}).items():
            for field in ("description", "type"):
                if not isinstance(subdata, dict) or field not in subdata:
                    problems.append(f"RETURN.{key}.contains.{sub} has no {field}")
    assert not problems, f"{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", MODULES)
def test_check_mode_declared(name, monkeypatch):
    doc = parsed_doc(name)
    check_mode = (doc.get("attributes") or {}).get("check_mode")
    assert isinstance(check_mode, dict), f"{name}: DOCUMENTATION.attributes.check_mode is not declared"
    support = check_mode.get("support")
    assert support in ("full", "partial", "none", "N/A"), f"{name}: check_mode support is {support!r}"
    kwargs = captured_module_kwargs(name, monkeypatch)
    # validate-modules: attributes-check-mode, attributes-check-mode-details
    if kwargs.get("supports_check_mode", False):
        assert support in ("full", "partial", "N/A"), (
            f"{name}: AnsibleModule(supports_check_mode=True) but check_mode support is {support!r}"
        )
    else:
        assert support == "none", (
            f"{name}: AnsibleModule does not support check mode but check_mode support is {support!r}"
        )
    if support in ("partial", "N/A"):
        assert check_mode.get("details"), f"{name}: check_mode support {support} without details"


def _convert(type_name, value):
    checker = DEFAULT_TYPE_VALIDATORS.get(type_name)
    return checker(value) if checker else value


def _is_potential_secret(option: str) -> bool:
    return (
        bool(NO_LOG_REGEX.search(option))
        and not option.endswith(NOT_SECRET_SUFFIXES)
        and not any(part in option for part in NOT_SECRET_PARTS)
    )


def _same_items(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x in b for x in a) and all(x in a for x in b)


def compare_spec_with_docs(spec: dict, doc_options: dict, context: tuple[str, ...] = ()) -> list[str]:
    """The argument-spec checks of validate-modules, one message per mismatch (with its error code)."""
    errors = []
    where = f" (in {' -> '.join(context)})" if context else ""
    spec_names, doc_names = set(), set()
    for arg, data in spec.items():
        spec_names.add(arg)
        spec_names.update(data.get("aliases", []))
    for arg, data in doc_options.items():
        doc_names.add(arg)
        doc_names.update((data or {}).get("aliases", []))
    for arg in sorted(spec_names - doc_names):
        errors.append(f"undocumented-parameter: {arg!r}{where} is in the argument_spec but not documented")
    for arg in sorted(doc_names - spec_names):
        errors.append(
            f"nonexistent-parameter-documented: {arg!r}{where} is documented but not in the argument_spec"
        )

    for arg, data in spec.items():
        doc = doc_options.get(arg)
        if doc is None:
            continue
        doc = doc or {}
        if not doc.get("description"):
            errors.append(f"doc-missing-description: {arg!r}{where} has no description")
        if set(data.get("aliases", [])) != set(doc.get("aliases", [])):
            errors.append(
                f"parameter-documented-aliases-differ: {arg!r}{where}: spec aliases "
                f"{sorted(data.get('aliases', []))}, doc aliases {sorted(doc.get('aliases', []))}"
            )
        if (
            data.get("no_log") is None
            and _is_potential_secret(arg)
            and data.get("type") not in ("path", "bool")
            and data.get("choices") is None
        ):
            errors.append(
                f"no-log-needed: {arg!r}{where} could be a secret but the argument_spec does not set "
                f"no_log (set no_log=True, or no_log=False if it is not a secret)"
            )
        spec_type = data.get("type", "str")
        doc_type = doc.get("type")
        if doc_type is None:
            errors.append(
                f"doc-missing-type: {arg!r}{where} is {spec_type!r} in the spec; the doc gives no type"
            )
        elif doc_type != spec_type:
            errors.append(
                f"doc-type-does-not-match-spec: {arg!r}{where} is {spec_type!r} in the spec, "
                f"{doc_type!r} in the doc"
            )
        if data.get("required") and "default" in data:
            errors.append(f"no-default-for-required-parameter: {arg!r}{where} is required and has a default")
        if spec_type == "list" and not data.get("elements"):
            errors.append(f"parameter-list-no-elements: {arg!r}{where} is a list without elements")
        try:
            spec_default = None if data.get("default") is None else _convert(spec_type, data["default"])
        except (TypeError, ValueError):
            errors.append(
                f"incompatible-default-type: {arg!r}{where} default {data['default']!r} is not {spec_type}"
            )
            continue
        try:
            doc_default = None if doc.get("default") is None else _convert(spec_type, doc["default"])
        except (TypeError, ValueError):
            errors.append(
                f"doc-default-incompatible-type: {arg!r}{where} doc default {doc['default']!r} "
                f"is not {spec_type}"
            )
            continue
        if spec_default != doc_default:
            errors.append(
                f"doc-default-does-not-match-spec: {arg!r}{where} default is {spec_default!r} in the "
                f"spec, {doc_default!r} in the doc"
            )
        try:
            spec_choices = [_convert(spec_type, c) for c in data.get("choices", [])]
            doc_choices = [_convert(spec_type, c) for c in doc.get("choices", [])]
        except (TypeError, ValueError) as exc:
            errors.append(f"incompatible-choices: {arg!r}{where}: {exc}")
            continue
        if not _same_items(spec_choices, doc_choices):
            errors.append(
                f"doc-choices-do-not-match-spec: {arg!r}{where} choices are {spec_choices!r} in the "
                f"spec, {doc_choices!r} in the doc"
            )
        if bool(data.get("required", False)) != bool(doc.get("required", False)):
            errors.append(
                f"doc-required-mismatch: {arg!r}{where} required={bool(data.get('required', False))} "
                f"in the spec, required={bool(doc.get('required', False))} in the doc"
            )
        if (data.get("elements") or doc.get("elements")) and data.get("elements") != doc.get("elements"):
            errors.append(
                f"doc-elements-mismatch: {arg!r}{where} elements={data.get('elements')!r} in the "
                f"spec, elements={doc.get('elements')!r} in the doc"
            )
        spec_sub = data.get("options") or {}
        doc_sub = doc.get("suboptions") or {}
        if spec_sub and not doc_sub:
            errors.append(
                f"missing-suboption-docs: {arg!r}{where} has options in the spec but no suboptions in the doc"
            )
        if spec_sub or doc_sub:
            errors.extend(compare_spec_with_docs(spec_sub, doc_sub, context + (arg,)))
    return errors


def check_terms(kwargs: dict, spec: dict) -> list[str]:
    """required_if, mutually_exclusive, ... name parameters of the spec (validate-modules *-unknown)."""
    errors = []
    for key in ("mutually_exclusive", "required_together", "required_one_of"):
        for group in kwargs.get(key) or []:
            unknown = sorted(set(group) - set(spec))
            if unknown:
                errors.append(f"{key}-unknown: {list(group)} names {unknown}, not in the argument_spec")
    for check in kwargs.get("required_if") or []:
        key, _value, requirements = check[0], check[1], check[2]
        if key not in spec:
            errors.append(f"required_if-unknown-key: {key!r} is not in the argument_spec")
        unknown = sorted(set(requirements) - set(spec))
        if unknown:
            errors.append(f"required_if-requirements-unknown: {list(check)} names {unknown}")
    for key, requirements in (kwargs.get("required_by") or {}).items():
        reqs = [requirements] if isinstance(requirements, str) else requirements
        unknown = sorted(({key} | set(reqs)) - set(spec))
        if unknown:
            errors.append(f"required_by-unknown: {key!r}: {unknown} not in the argument_spec")
    return errors


@pytest.mark.parametrize("name", MODULES)
def test_argument_spec_matches_documentation(name, monkeypatch):
    kwargs = captured_module_kwargs(name, monkeypatch)
    spec = kwargs.get("argument_spec") or {}
    assert spec, f"{name}: AnsibleModule was called without an argument_spec"
    doc_options = parsed_doc(name).get("options") or {}
    errors = compare_spec_with_docs(spec, doc_options) + check_terms(kwargs, spec)
    assert not errors, f"{name}: argument_spec and DOCUMENTATION differ:\n  " + "\n  ".join(errors)


def test_comparison_catches_a_drift():
    """The checker itself: each kind of drift is reported."""
    spec = {
        "a": {"type": "int", "default": 3},
        "b": {"type": "list", "elements": "str", "required": True},
        "c": {"type": "str", "choices": ["x", "y"]},
        "d": {"type": "list", "elements": "dict", "options": {"e": {"type": "bool", "default": False}}},
        "api_token": {"type": "str"},
        "only_in_spec": {"type": "str"},
    }
    docs = {
        "a": {"description": "a", "type": "int", "default": 4},
        "b": {"description": "b", "type": "list", "elements": "int"},
        "c": {"description": "c", "type": "str", "choices": ["x"]},
        "d": {
            "description": "d",
            "type": "list",
            "elements": "dict",
            "suboptions": {"e": {"description": "e", "type": "str", "default": False}},
        },
        "api_token": {"description": "t", "type": "str"},
        "only_in_doc": {"description": "z", "type": "str"},
    }
    codes = {message.split(":", 1)[0] for message in compare_spec_with_docs(spec, docs)}
    assert codes == {
        "undocumented-parameter",
        "nonexistent-parameter-documented",
        "doc-default-does-not-match-spec",
        "doc-required-mismatch",
        "doc-elements-mismatch",
        "doc-choices-do-not-match-spec",
        "doc-type-does-not-match-spec",
        "no-log-needed",
    }
    same = {k: v for k, v in spec.items() if k in ("a",)}
    assert compare_spec_with_docs(same, {"a": {"description": "a", "type": "int", "default": "3"}}) == []
