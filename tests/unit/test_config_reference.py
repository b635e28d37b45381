"""docs/configuration.md is generated from the roles and cannot drift from them.

- the file is what scripts/gen_config_reference.py makes of the roles now;
- every variable of a role's defaults/main.yml is in its argument_specs ``main`` and every
  option of ``main`` has a default there (a ``required`` option excepted: it has none on purpose);
- the literal defaults pass the role's own argument spec (what ansible checks at run time),
  and where the spec states a default too, it is the same value.
"""

from __future__ import annotations

import difflib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import DEFAULT_TYPE_VALIDATORS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gen_config_reference.py"
REFERENCE = ROOT / "docs" / "configuration.md"
ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())

_spec = importlib.util.spec_from_file_location("gen_config_reference", SCRIPT)
gen = importlib.util.module_from_spec(_spec)
sys.modules["gen_config_reference"] = gen  # dataclasses look their module up
_spec.loader.exec_module(gen)


def role_data(role: str) -> tuple[dict, dict]:
    specs = yaml.safe_load(
        (ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8")
    )
    defaults_file = ROOT / "roles" / role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text(encoding="utf-8")) if defaults_file.exists() else None
    return specs["argument_specs"], defaults or {}


def templated(value) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(templated(k) or templated(v) for k, v in value.items())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def test_every_role_has_an_argument_spec():
    without = [p.name for p in (ROOT / "roles").iterdir() if p.is_dir() and p.name not in ROLES]
    assert not without, f"roles without meta/argument_specs.yml: {without}"
    assert ROLES


def test_reference_is_up_to_date():
    assert REFERENCE.exists(), "docs/configuration.md is missing: run scripts/gen_config_reference.py"
    current = REFERENCE.read_text(encoding="utf-8")
    wanted = gen.render(ROOT)
    diff = list(
        difflib.unified_diff(
            current.splitlines(), wanted.splitlines(), "docs/configuration.md", "generated", lineterm="", n=0
        )
    )
    assert not diff, (
        "docs/configuration.md is out of date with roles/*/meta/argument_specs.yml and "
        "roles/*/defaults/main.yml: run scripts/gen_config_reference.py\n" + "\n".join(diff[:40])
    )


def test_reference_names_every_variable():
    text = REFERENCE.read_text(encoding="utf-8")
    for role in ROLES:
        specs, defaults = role_data(role)
        assert f"\n## {role}\n" in text
        for entry in specs.values():
            for name in (entry or {}).get("options") or {}:
                assert f"| `{name}` |" in text, f"{role}: {name} is not in docs/configuration.md"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_main_spec_name_the_same_variables(role):
    specs, defaults = role_data(role)
    options = (specs.get("main") or {}).get("options") or {}
    undocumented = sorted(set(defaults) - set(options))
    no_default = sorted(n for n in set(options) - set(defaults) if not (options[n] or {}).get("required"))
    problems = []
    if undocumented:
        problems.append(f"in defaults/main.yml but not in argument_specs main: {undocumented}")
    if no_default:
        problems.append(
            f"in argument_specs main but not in defaults/main.yml (and not required): {no_default}"
        )
    assert not problems, f"roles/{role}: " + "; ".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_pass_the_argument_spec(role):
    """What `validate_argument_spec` would say about the role's own defaults (templated ones skipped)."""
    specs, defaults = role_data(role)
    options = (specs.get("main") or {}).get("options") or {}
    spec = {
        name: {k: v for k, v in (opt or {}).items() if k not in ("description", "version_added")}
        for name, opt in options.items()
    }
    literal = {k: v for k, v in defaults.items() if k in spec and not templated(v)}
    result = ArgumentSpecValidator({k: spec[k] for k in literal}).validate(
        literal, validate_role_argument_spec=True
    )
    assert not result.error_messages, (
        f"roles/{role}: defaults/main.yml fails its argument spec: " + "; ".join(result.error_messages)
    )


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_match_the_real_defaults(role):
    specs, defaults = role_data(role)
    problems = []
    for entry_name, entry in sorted(specs.items()):
        for name, opt in ((entry or {}).get("options") or {}).items():
            opt = opt or {}
            if "default" not in opt or name not in defaults or templated(defaults[name]):
                continue
            checker = DEFAULT_TYPE_VALIDATORS.get(opt.get("type", "str"), lambda v: v)
            try:
                same = checker(opt["default"]) == checker(defaults[name])
            except (TypeError, ValueError):
                same = False
            if not same:
                problems.append(
                    f"{name} (entry point {entry_name}): argument_specs says {opt['default']!r}, "
                    f"defaults/main.yml says {defaults[name]!r}"
                )
    assert not problems, f"roles/{role}: " + "; ".join(problems)


# --- the generator itself ------------------------------------------------------------------------------


def test_generator_reads_comments_and_groups(tmp_path):
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "defaults" / "main.yml").write_text(
        "---\n# The demo role.\n\n# How many <things> | pipes.\n# An example: 3.\ndemo_count: 2\n"
        'demo_items:\n  - a\n  - b\n# Secret-ish.\ndemo_name: "{{ app_name }}"\n',
        encoding="utf-8",
    )
    (role / "meta" / "argument_specs.yml").write_text(
        yaml.safe_dump(
            {
                "argument_specs": {
                    "main": {
                        "short_description": "Demo.",
                        "options": {
                            "demo_count": {"type": "int", "default": 2, "description": "How many things."},
                            "demo_items": {"type": "list", "elements": "str", "description": "Items."},
                            "demo_name": {"type": "str", "required": True, "description": "Name."},
                        },
                    },
                    "extra": {
                        "short_description": "Extra.",
                        "options": {
                            "demo_extra": {"type": "str", "choices": ["x", "y"], "description": "Only here."}
                        },
                    },
                }
            }
        ),
        encoding="utf-8",
    )
    text = gen.render(tmp_path)
    assert "The demo role." in text
    assert "| `demo_count` | int | `2` | How many &lt;things&gt; \\| pipes. An example: 3. |" in text
    assert "| `demo_items` | list of str | `[a, b]` | Items. |" in text
    assert "| `demo_name` | str | `{{ app_name }}` (required) | Name. |" in text
    assert "- `extra` (`tasks_from: extra`): Extra. It takes the variables below." in text
    assert "| `demo_extra` | str: `x`, `y` | — | Only here. |" in text
    assert gen.render(tmp_path) == text, "the output must be deterministic"


def test_check_mode_fails_when_stale(tmp_path):
    shutil.copytree(
        ROOT / "roles",
        tmp_path / "roles",
        ignore=shutil.ignore_patterns("files", "templates", "tasks", "handlers"),
    )
    (tmp_path / "docs").mkdir()
    run = [sys.executable, str(SCRIPT), "--root", str(tmp_path)]
    assert subprocess.run(run + ["--check"], capture_output=True, check=False).returncode == 1
    assert subprocess.run(run, capture_output=True, check=False).returncode == 0
    assert subprocess.run(run + ["--check"], capture_output=True, check=False).returncode == 0
    defaults = tmp_path / "roles" / ROLES[0] / "defaults" / "main.yml"
    defaults.write_text(
        defaults.read_text(encoding="utf-8").replace("\n# ", "\n# Changed. ", 1), encoding="utf-8"
    )
    proc = subprocess.run(run + ["--check"], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "out of date" in proc.stderr
