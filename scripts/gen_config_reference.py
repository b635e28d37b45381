#!/usr/bin/env python3
"""Generate docs/configuration.md, the configuration reference, from the roles themselves.

For every role in roles/ it reads:
  - meta/argument_specs.yml: the options of the entry point ``main`` (type, choices, required,
    description, suboptions) and the options that only other entry points take;
  - defaults/main.yml: the real default values, and the comment lines right above each variable
    (the file's leading comment, when a blank line separates it from the first variable, is the
    role's introduction).
The output is deterministic (roles, entry points and suboptions sorted; variables in the order of
argument_specs ``main``), so tests/unit/test_config_reference.py can regenerate it and compare.

    scripts/gen_config_reference.py            write docs/configuration.md
    scripts/gen_config_reference.py --check    exit 1 when docs/configuration.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = Path("docs") / "configuration.md"
INLINE_DEFAULT_MAX = 48
KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


@dataclass
class RoleDefaults:
    intro: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    comments: dict[str, list[str]] = field(default_factory=dict)


def read_defaults(path: Path) -> RoleDefaults:
    """Values of defaults/main.yml and the comment block right above each top-level variable."""
    result = RoleDefaults()
    if not path.exists():
        return result
    text = path.read_text(encoding="utf-8")
    result.values = yaml.safe_load(text) or {}
    block: list[str] = []
    seen_key = False
    for line in text.splitlines():
        if line.startswith("#"):
            block.append(line[1:].rstrip())
            continue
        if not line.strip() or line.strip() == "---":
            if block and not seen_key and not result.intro:
                result.intro = block
            block = []
            continue
        match = KEY_LINE.match(line)
        if match:
            seen_key = True
            if block:
                result.comments[match.group(1)] = block
            block = []
        # continuation lines of a value (indented, or a flow sequence) keep no comment
    return result


def read_specs(path: Path) -> dict:
    if not path.exists():
        return {}
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("argument_specs") or {}


# --- Markdown helpers ------------------------------------------------------------------------------


def escape_text(text: str) -> str:
    """Escape prose for a table cell: <placeholders> and emphasis outside `code`, pipes everywhere."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;").replace("*", r"\*")
    return "`".join(parts).replace("|", r"\|")


def code(text: str) -> str:
    ticks = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{ticks}{pad}{text}{pad}{ticks}".replace("|", r"\|")


def render_value(value) -> str:
    """A default value as YAML flow, on one line."""
    if isinstance(value, str):
        return value if value else '""'
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return dumped[:-4].strip() if dumped.endswith("\n...") else dumped


def comment_text(lines: list[str]) -> str:
    """Comment lines as one cell: prose joined, indented lines (lists, examples) kept on their own line."""
    out: list[str] = []
    for raw in lines:
        line = raw[1:] if raw.startswith(" ") else raw
        if line.startswith(" ") and line.strip():
            out.append("<br>" + escape_text(line.strip()))
        elif line.strip():
            out.append(("" if not out else " ") + escape_text(line.strip()))
    return "".join(out).strip()


STOPWORDS = frozenset(
    "a an and are as at be by e eg for from g in is it its of on or than that the their them then there these"
    " this to when where which while with".split()
)


def normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def content_words(text: str) -> set[str]:
    return {
        w[:-1] if w.endswith("s") and len(w) > 3 else w for w in normalize(text).split() if w not in STOPWORDS
    }


def describe(option: dict, comment: list[str]) -> str:
    """The argument spec's description; the defaults comment instead when it says the same and more,
    or after it when it adds at least three words of its own (an example, a unit, a caveat)."""
    description = option.get("description") or ""
    if isinstance(description, list):
        description = " ".join(description)
    description = " ".join(str(description).split())
    if not comment:
        return escape_text(description)
    note = comment_text(comment)
    if not description:
        return note
    comment_plain = " ".join(comment)
    if normalize(description) in normalize(comment_plain):
        return note
    if len(content_words(comment_plain) - content_words(description)) >= 3:
        return f"{escape_text(description)}<br>{note}"
    return escape_text(description)


def type_text(option: dict) -> str:
    kind = option.get("type", "str")
    text = f"list of {option['elements']}" if kind == "list" and option.get("elements") else kind
    if option.get("choices"):
        text += ": " + ", ".join(code(render_value(c)) for c in option["choices"])
    return text


# --- rendering ---------------------------------------------------------------------------------------


def option_rows(
    options: dict, defaults: RoleDefaults | None, below: list[tuple[str, object]], header: str = "Variable"
) -> list[str]:
    rows = [f"| {header} | Type | Default | Description |", "|---|---|---|---|"]
    for name, option in options.items():
        option = option or {}
        if defaults is not None and name in defaults.values:
            value, has_default = defaults.values[name], True
        elif "default" in option:
            value, has_default = option["default"], True
        else:
            value, has_default = None, False
        if has_default:
            shown = render_value(value)
            if isinstance(value, (list, dict)) and len(shown) > INLINE_DEFAULT_MAX:
                below.append((name, value))
                default = "see below"
            else:
                default = code(shown)
        else:
            default = "—"
        if option.get("required"):
            default = "**required**" if default == "—" else f"{default} (required)"
        comment = defaults.comments.get(name, []) if defaults is not None else []
        rows.append(f"| {code(name)} | {type_text(option)} | {default} | {describe(option, comment)} |")
    return rows


def suboption_sections(options: dict, level: str) -> list[str]:
    out: list[str] = []
    for name, option in options.items():
        sub = (option or {}).get("options")
        if not sub:
            continue
        item = "each item of" if (option or {}).get("type") == "list" else ""
        out += ["", f"{level} Keys of {item + ' ' if item else ''}{code(name)}".replace("  ", " "), ""]
        out += option_rows(sub, None, [], header="Key")
        out += suboption_sections(sub, level)
    return out


def long_defaults(below: list[tuple[str, object]], level: str) -> list[str]:
    out: list[str] = []
    for name, value in below:
        dumped = yaml.safe_dump({name: value}, default_flow_style=False, sort_keys=False, width=100)
        out += ["", f"{level} Default of {code(name)}", "", "```yaml", dumped.rstrip("\n"), "```"]
    return out


def render_role(role: Path) -> list[str]:
    specs = read_specs(role / "meta" / "argument_specs.yml")
    defaults = read_defaults(role / "defaults" / "main.yml")
    main = specs.get("main") or {}
    main_options = main.get("options") or {}
    out = [f"## {role.name}", ""]
    if main.get("short_description"):
        out += [escape_text(" ".join(str(main["short_description"]).split())), ""]
    if defaults.intro:
        out += [comment_text(defaults.intro).replace("<br>", "  \n"), ""]
    out.append(
        f"Source: [`roles/{role.name}/defaults/main.yml`](../roles/{role.name}/defaults/main.yml), "
        f"checked by [`meta/argument_specs.yml`](../roles/{role.name}/meta/argument_specs.yml)."
    )
    out.append("")
    below: list[tuple[str, object]] = []
    if main_options:
        out += option_rows(main_options, defaults, below)
    else:
        out.append("No variables.")
    out += suboption_sections(main_options, "####")
    out += long_defaults(below, "####")

    others = sorted(name for name in specs if name != "main")
    if others:
        out += ["", "### Other entry points", ""]
        extra_tables: list[str] = []
        for name in others:
            spec = specs[name] or {}
            options = spec.get("options") or {}
            summary = escape_text(" ".join(str(spec.get("short_description", "")).split()))
            shared = [o for o in options if o in main_options]
            extra = {o: v for o, v in options.items() if o not in main_options}
            if options and not extra and set(shared) == set(main_options):
                takes = "takes the variables of `main`."
            elif shared:
                takes = (
                    "takes "
                    + ", ".join(code(o) for o in shared)
                    + (" and the variables below." if extra else ".")
                )
            elif extra:
                takes = "takes the variables below."
            else:
                takes = "takes no variables."
            out.append(f"- {code(name)} (`tasks_from: {name}`): {summary} It {takes}")
            if extra:
                extra_below: list[tuple[str, object]] = []
                extra_tables += ["", f"#### Variables of entry point {code(name)} only", ""]
                extra_tables += option_rows(extra, defaults, extra_below)
                extra_tables += suboption_sections(extra, "#####")
                extra_tables += long_defaults(extra_below, "#####")
        out += extra_tables
    return out


def render(root: Path = ROOT) -> str:
    roles = sorted(p for p in (root / "roles").iterdir() if (p / "meta" / "argument_specs.yml").exists())
    out = [
        "<!-- Generated by scripts/gen_config_reference.py from roles/*/meta/argument_specs.yml and",
        "     roles/*/defaults/main.yml. Do not edit: change the role, then run the script. -->",
        "",
        "# Configuration reference",
        "",
        "Every variable a role reads, with its type, its default (the value in the role's",
        "`defaults/main.yml`; `{{ … }}` is worked out at run time) and what it does. Set them in your",
        "inventory (`inventory/<yours>/group_vars/all/main.yml`, secrets in the Vault file beside it) or",
        "for one run with `-e name=value`. Each role checks its variables against its",
        "`meta/argument_specs.yml` before it changes anything and names the variable that is wrong.",
        "",
        "Roles: " + ", ".join(f"[{p.name}](#{p.name})" for p in roles) + ".",
        "",
    ]
    for role in roles:
        out += render_role(role)
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the file is out of date; write nothing"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this script's)")
    args = parser.parse_args(argv)
    target = args.root / OUTPUT
    text = render(args.root)
    current = target.read_text(encoding="utf-8") if target.exists() else None
    if args.check:
        if current != text:
            print(f"{OUTPUT} is out of date: run scripts/gen_config_reference.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
