# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lint of the migrations a deploy will run (part of the action
fieldservice.deploy.preflight_migrations, on the control node).

During every switch the serving release runs a few seconds on the new
schema, and after an automatic rollback for as long as it takes to fix
things; a migration that drops, renames or retypes what it uses breaks it,
and one that holds a long lock stalls it. So the SQL of the pending
migrations is rendered with Alembic's offline mode
(``alembic upgrade --sql <serving revision>:head``, the app's own Alembic),
linted with squawk (the PostgreSQL migration linter, PyPI ``squawk-cli``)
and a few rules of our own where squawk has none, and each finding is
classified:

* ``breaks``: the serving release may stop working (a column or table
  dropped or renamed, a type changed, NOT NULL added to an existing column,
  a NOT NULL column without a default). Refused, unless the migration says
  it is a contract step on purpose (``CONTRACT_MARKER`` in its file).
* ``lock``: a long lock on a table that exists (an index built without
  CONCURRENTLY, a constraint validated in the same statement, a rewrite).
  Refused or warned (``locks``), harmless on a small table
  (``small_table_bytes``) or on one these migrations create.

Each finding names the migration's file and line and the safe way to do
it (docs/migrations.md). Stdlib only and importable without Ansible.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

DOCS = "docs/migrations.md"
CONTRACT_MARKER = "fieldservice.deploy: contract"

# squawk's rules that matter here: (kind, what it does, the safe way)
EXPAND_CONTRACT = ("expand now, contract later: stop using it in this release, remove it in a later "
                   f"one whose migration is marked '# {CONTRACT_MARKER}' ({DOCS}#expand-and-contract)")
RULES = {
    "ban-drop-column": ("breaks", "drops a column the serving release may still use", EXPAND_CONTRACT),
    "ban-drop-table": ("breaks", "drops a table the serving release may still use", EXPAND_CONTRACT),
    "ban-drop-database": ("breaks", "drops a database", EXPAND_CONTRACT),
    "renaming-column": ("breaks", "renames a column the serving release uses by its old name",
                        "add the new column, write both, backfill, move the reads, then drop the old one "
                        f"in a later release ({DOCS}#renames-and-type-changes)"),
    "renaming-table": ("breaks", "renames a table the serving release uses by its old name",
                       "create the new table (or a view), move the code, then drop the old one in a later "
                       f"release ({DOCS}#renames-and-type-changes)"),
    "changing-column-type": ("breaks", "changes a column's type (the serving release reads and writes the "
                                       "old one; a rewrite of the table under an exclusive lock)",
                             "add a column of the new type, write both, backfill in batches, switch the "
                             f"reads, drop the old column later ({DOCS}#renames-and-type-changes)"),
    "adding-required-field": ("breaks", "adds a NOT NULL column without a default: the serving release's "
                                        "INSERTs do not set it and fail",
                              "add it nullable or with a default now; make it NOT NULL in a later release "
                              f"({DOCS}#not-null)"),
    "adding-not-nullable-field": ("breaks", "sets NOT NULL on an existing column: the serving release may "
                                            "still write NULL there (and the table is scanned under an "
                                            "exclusive lock)",
                                  "add a CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL, "
                                  f"in a release after the code always writes it ({DOCS}#not-null)"),
    "require-concurrent-index-creation": ("lock", "builds an index without CONCURRENTLY: writes to the table "
                                                  "wait until it is built",
                                          "CREATE INDEX CONCURRENTLY (op.create_index(..., "
                                          "postgresql_concurrently=True) inside op.get_context()."
                                          f"autocommit_block()) ({DOCS}#long-locks)"),
    "require-concurrent-index-deletion": ("lock", "drops an index without CONCURRENTLY",
                                          "DROP INDEX CONCURRENTLY in an autocommit block "
                                          f"({DOCS}#long-locks)"),
    "constraint-missing-not-valid": ("lock", "adds a constraint and validates it in the same statement: the "
                                             "table is scanned under a lock",
                                     "add it NOT VALID, then VALIDATE CONSTRAINT in a separate statement "
                                     f"({DOCS}#long-locks)"),
    "adding-foreign-key-constraint": ("lock", "adds a foreign key that locks both tables while it is checked",
                                      "add it NOT VALID, then VALIDATE CONSTRAINT separately "
                                      f"({DOCS}#long-locks)"),
    "disallowed-unique-constraint": ("lock", "adds a UNIQUE constraint, which builds its index under a lock",
                                     "CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX "
                                     f"({DOCS}#long-locks)"),
    "adding-primary-key-constraint": ("lock", "adds a primary key, which builds its index under a lock",
                                      "CREATE UNIQUE INDEX CONCURRENTLY, then ADD PRIMARY KEY USING INDEX "
                                      f"({DOCS}#long-locks)"),
    "adding-field-with-default": ("lock", "adds a column with a volatile default: the table is rewritten",
                                  "add the column without the default, set it for new rows, backfill in "
                                  f"batches ({DOCS}#long-locks)"),
    "ban-alter-domain-with-add-constraint": ("lock", "adds a constraint to a domain, checked against every "
                                                     "column that uses it",
                                             "a CHECK constraint NOT VALID on the tables "
                                             f"({DOCS}#long-locks)"),
}
# Our own rules, for what squawk does not flag: (regex, rule, kind, what, safe way)
OWN_RULES = [
    (re.compile(r"^\s*DROP\s+SCHEMA\b", re.I), "fs-drop-schema", "breaks",
     "drops a schema the serving release may still use", EXPAND_CONTRACT),
    (re.compile(r"^\s*VACUUM\b[^;]*\bFULL\b", re.I), "fs-vacuum-full", "lock",
     "rewrites the table under an exclusive lock (VACUUM FULL)",
     f"leave it to autovacuum, or run pg_repack outside the deploy ({DOCS}#long-locks)"),
    (re.compile(r"^\s*CLUSTER\b", re.I), "fs-cluster", "lock",
     "rewrites the table under an exclusive lock (CLUSTER)",
     f"run it outside the deploy, in a maintenance window ({DOCS}#long-locks)"),
    (re.compile(r"^\s*REINDEX\b(?![^;]*\bCONCURRENTLY\b)", re.I), "fs-reindex", "lock",
     "rebuilds indexes under a lock (REINDEX without CONCURRENTLY)",
     f"REINDEX ... CONCURRENTLY in an autocommit block ({DOCS}#long-locks)"),
    (re.compile(r"^\s*LOCK\b", re.I), "fs-lock-table", "lock", "locks a table explicitly",
     f"avoid explicit locks in migrations ({DOCS}#long-locks)"),
    (re.compile(r"^\s*ALTER\s+TABLE\b[^;]*\bSET\s+(TABLESPACE|LOGGED|UNLOGGED)\b", re.I), "fs-table-rewrite",
     "lock", "rewrites the table under an exclusive lock (SET TABLESPACE / LOGGED / UNLOGGED)",
     f"run it outside the deploy, in a maintenance window ({DOCS}#long-locks)"),
    (re.compile(r"^\s*TRUNCATE\b", re.I), "fs-truncate", "lock",
     "empties a table under an exclusive lock (TRUNCATE)",
     f"delete in batches, or stop using the table first and drop it later ({DOCS}#expand-and-contract)"),
]

_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QNAME = rf"({_IDENT}(?:\s*\.\s*{_IDENT})?)"
_TABLE_PATTERNS = [
    re.compile(rf"^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QNAME}", re.I),
    re.compile(rf"^\s*CREATE\s+(?:UNIQUE\s+)?INDEX\b.*?\bON\s+(?:ONLY\s+)?{_QNAME}", re.I | re.S),
    re.compile(rf"^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_QNAME}", re.I),
    re.compile(rf"^\s*(?:VACUUM\b.*?|CLUSTER\s+(?:VERBOSE\s+)?|LOCK\s+(?:TABLE\s+)?(?:ONLY\s+)?"
               rf"|TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?|REINDEX\s+TABLE\s+(?:CONCURRENTLY\s+)?){_QNAME}",
               re.I | re.S),
]
_CREATE_TABLE = re.compile(rf"^\s*CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_QNAME}", re.I)
_RUNNING = re.compile(r"^--\s*Running upgrade\s+(\S*)\s*->\s*(\S+)")
_LOG_LINE = re.compile(r"^(?:\d{4}-\d\d-\d\d[ T][\d:,.]+\s+)?"
                       r"(?:INFO|DEBUG|WARNING|WARN|ERROR)\b\s*\[?alembic")
_REVISION = re.compile(r"^\s*revision\s*(?::\s*[\w\[\]|. ]+)?=\s*['\"]([^'\"]+)['\"]", re.M)
_DEF_UPGRADE = re.compile(r"^\s*def\s+upgrade\s*\(")
_DEF_OTHER = re.compile(r"^\s*def\s+(?!upgrade\b)\w+\s*\(")
# which operation of Alembic's op.* (or raw SQL words) a rule comes from
_OP_WORDS = {
    "ban-drop-column": ("drop_column", "drop column"),
    "ban-drop-table": ("drop_table", "drop table"),
    "renaming-column": ("new_column_name", "rename column", "alter_column"),
    "renaming-table": ("rename_table", "rename to"),
    "changing-column-type": ("type_", "alter_column", " type "),
    "adding-required-field": ("add_column", "add column"),
    "adding-not-nullable-field": ("nullable=false", "set not null", "alter_column"),
    "require-concurrent-index-creation": ("create_index", "index("),
    "require-concurrent-index-deletion": ("drop_index",),
    "constraint-missing-not-valid": ("create_", "constraint", "foreignkey"),
    "adding-foreign-key-constraint": ("create_foreign_key", "foreignkey"),
    "disallowed-unique-constraint": ("create_unique_constraint", "unique"),
    "adding-primary-key-constraint": ("create_primary_key", "primary"),
    "adding-field-with-default": ("add_column", "server_default"),
}


SYNTAX_ERROR = "syntax-error"


class LintError(Exception):
    """The lint could not run (no squawk, Alembic could not render the SQL)."""


@dataclass
class Statement:
    line: int  # 0-based line of the rendered SQL where it starts
    text: str
    revision: str  # the migration it belongs to ("" before the first)


@dataclass
class Finding:
    rule: str
    kind: str  # breaks | lock | unread (squawk could not parse it)
    what: str
    fix: str
    revision: str
    statement: str
    table: str = ""
    file: str = ""
    line: int = 0
    verdict: str = ""  # refused | warned | allowed
    why: str = ""
    table_bytes: int | None = None
    squawk: str = field(default="", repr=False)

    def where(self) -> str:
        if self.file:
            return f"{self.file}:{self.line}" if self.line else self.file
        return f"revision {self.revision}" if self.revision else "the migrations"

    def message(self) -> str:
        size = ""
        if self.kind == "lock" and self.table:
            size = (f" ({self.table}: {human_bytes(self.table_bytes)} on the server)"
                    if self.table_bytes is not None else f" ({self.table}: size unknown)")
        text = f"{self.where()}: {self.what}{size}: {one_line(self.statement, 120)}"
        if self.verdict == "allowed":
            return f"{text} - allowed: {self.why}"
        return f"{text}. The safe way: {self.fix}"


def one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def human_bytes(value: int | None) -> str:
    if value is None:
        return "unknown"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"


def bare_name(name: str) -> str:
    """``public."Notes"`` -> ``Notes``; ``notes`` -> ``notes`` (PostgreSQL folds unquoted names)."""
    part = re.split(r'\.(?=(?:[^"]*"[^"]*")*[^"]*$)', name.strip())[-1].strip()
    if part.startswith('"') and part.endswith('"'):
        return part[1:-1].replace('""', '"')
    return part.lower()


def table_of(statement: str) -> str:
    for pattern in _TABLE_PATTERNS:
        m = pattern.search(statement)
        if m:
            return bare_name(m.group(1))
    return ""


# -- the SQL ------------------------------------------------------------------


def clean_sql(output: str) -> str:
    """The SQL of ``alembic upgrade --sql`` without the log lines an app's
    alembic.ini may send to stdout."""
    return "\n".join(line for line in output.splitlines() if not _LOG_LINE.match(line))


def split_statements(sql: str) -> list[Statement]:
    """The statements of the rendered SQL with the line each starts on and
    the migration (``-- Running upgrade a -> b``) it belongs to. Quotes,
    dollar quoting and comments are respected."""
    out: list[Statement] = []
    revision = ""
    buf: list[str] = []
    start = None
    i, line, n = 0, 0, len(sql)
    quote = None  # "'", '"', or a dollar tag
    while i < n:
        ch = sql[i]
        if quote is None:
            if sql.startswith("--", i):
                end = sql.find("\n", i)
                end = n if end < 0 else end
                m = _RUNNING.match(sql[i:end])
                if m and not "".join(buf).strip():
                    revision = m.group(2)
                i = end
                continue
            if sql.startswith("/*", i):
                end = sql.find("*/", i + 2)
                end = n if end < 0 else end + 2
                line += sql.count("\n", i, end)
                i = end
                continue
            if ch in "'\"":
                quote = ch
            elif ch == "$":
                m = re.match(r"\$[A-Za-z_]*\$", sql[i:])
                if m:
                    quote = m.group(0)
                    buf.append(quote)
                    i += len(quote)
                    continue
            elif ch == ";":
                text = "".join(buf).strip()
                if text:
                    out.append(Statement(start if start is not None else line, text, revision))
                buf, start = [], None
                i += 1
                continue
        elif quote in ("'", '"'):
            if ch == quote:
                quote = None
        elif sql.startswith(quote, i):
            buf.append(quote)
            i += len(quote)
            quote = None
            continue
        if ch == "\n":
            line += 1
        elif start is None and not ch.isspace():
            start = line
        buf.append(ch)
        i += 1
    text = "".join(buf).strip()
    if text:
        out.append(Statement(start if start is not None else line, text, revision))
    return out


def render_sql(command, start: str, cwd: str, env: dict, timeout: float,
               url_var: str = "DATABASE_URL") -> str:
    """``alembic upgrade --sql <start>:head`` in the app's environment (a
    database URL that is never connected to is given, as env.py files need one)."""
    run_env = dict(env)
    run_env.setdefault(url_var, "postgresql://offline@127.0.0.1:1/offline")
    target = f"{start}:head" if start else "head"
    try:
        out = subprocess.run(list(command) + ["upgrade", "--sql", target], cwd=cwd, env=run_env,
                             capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LintError(f"'alembic upgrade --sql {target}' did not finish in {timeout:g} s") from exc
    except OSError as exc:
        raise LintError(f"cannot run Alembic ({exc})") from exc
    if out.returncode != 0:
        tail = [x for x in (out.stderr or out.stdout or "").splitlines() if x.strip()][-4:]
        raise LintError(f"'alembic upgrade --sql {target}' (offline mode, to render the SQL) failed "
                        f"(exit {out.returncode}): {' | '.join(tail)}; the app's migrations/env.py must "
                        f"support offline mode ({DOCS}#the-lint)")
    return clean_sql(out.stdout)


# -- the migration files --------------------------------------------------------


def migration_files(app_dir: str) -> dict:
    """{revision: path relative to app_dir} of the Alembic scripts, from
    alembic.ini's script_location (and version_locations)."""
    ini = os.path.join(app_dir, "alembic.ini")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(ini, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return {}
    section = parser["alembic"] if parser.has_section("alembic") else {}
    here = app_dir

    def resolve(value: str) -> str:
        value = value.replace("%(here)s", here).strip()
        return value if os.path.isabs(value) else os.path.join(app_dir, value)

    dirs = []
    script = section.get("script_location", "") if section else ""
    if script and ":" not in script.replace(":\\", ""):
        dirs.append(os.path.join(resolve(script), "versions"))
    versions = section.get("version_locations", "") if section else ""
    separator = {"os": os.pathsep, "colon": ":", "semicolon": ";", "space": None, "newline": "\n"}.get(
        (section.get("path_separator", "") if section else "").strip(), None)
    for part in versions.split(separator) if separator else versions.split():
        if part.strip():
            dirs.append(resolve(part))
    found = {}
    for base in dirs:
        for root, subdirs, files in os.walk(base):
            subdirs[:] = [d for d in subdirs if d != "__pycache__"]
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                try:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        m = _REVISION.search(fh.read())
                except OSError:
                    continue
                if m:
                    found[m.group(1)] = os.path.relpath(path, app_dir)
    return found


def _identifiers(statement: str) -> list[str]:
    words = re.findall(r'"((?:[^"]|"")+)"|\b([A-Za-z_][A-Za-z0-9_]*)\b', statement)
    keywords = {"alter", "table", "add", "column", "drop", "create", "index", "on", "not", "null", "set",
                "rename", "to", "type", "using", "constraint", "foreign", "key", "references", "unique",
                "primary", "default", "if", "exists", "only", "concurrently", "cascade", "restrict",
                "check", "valid", "validate", "integer", "text", "varchar", "bigint", "boolean", "public"}
    out = []
    for quoted, plain in words:
        word = quoted.replace('""', '"') if quoted else plain
        if word.lower() not in keywords and word not in out:
            out.append(word)
    return out


def locate(source: str, statement: str, rule: str) -> int:
    """The 1-based line of the migration's ``upgrade()`` that most likely
    wrote ``statement`` (the op's name and the names it mentions), else
    the ``def upgrade`` line, else 0."""
    lines = source.splitlines()
    begin = next((i for i, text in enumerate(lines) if _DEF_UPGRADE.match(text)), None)
    if begin is None:
        return 0
    end = next((i for i in range(begin + 1, len(lines)) if _DEF_OTHER.match(lines[i])
                and len(lines[i]) - len(lines[i].lstrip()) <= len(lines[begin]) - len(lines[begin].lstrip())),
               len(lines))
    names = _identifiers(statement)
    words = _OP_WORDS.get(rule, ())
    best, best_score = begin + 1, 0
    for i in range(begin + 1, end):
        text = lines[i]
        if text.strip().startswith("#"):
            continue
        low = text.lower()
        score = sum(3 for w in words if w in low)
        score += sum(2 for name in names
                     if re.search(rf"['\"]{re.escape(name)}['\"]|\b{re.escape(name)}\b", text))
        if score > best_score:
            best, best_score = i + 1, score
    return best


# -- squawk ---------------------------------------------------------------------


def find_squawk(configured: str = "") -> str | None:
    """The squawk binary: the one configured, else beside this Python (the
    tool's virtualenv, where pip puts squawk-cli's), else on PATH."""
    if configured:
        return configured if os.access(configured, os.X_OK) else shutil.which(configured)
    beside = os.path.join(os.path.dirname(sys.executable), "squawk")
    if os.access(beside, os.X_OK):
        return beside
    return shutil.which("squawk")


def run_squawk(squawk: str, sql: str, pg_version: str = "", timeout: float = 60) -> list[dict]:
    """squawk's findings (its JSON reporter) on ``sql``; raises LintError when it cannot run."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="fs_lint_", delete=False,
                                     encoding="utf-8") as fh:
        fh.write(sql)
        path = fh.name
    version = re.match(r"\d+(?:\.\d+)?", str(pg_version or "").strip())  # "15.18 (Debian ...)" -> 15.18
    argv = [squawk, "--reporter", "json"] + ([f"--pg-version={version.group(0)}"] if version else []) + [path]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LintError(f"squawk ({squawk}) could not run: {exc}") from exc
    finally:
        os.unlink(path)
    # 0: nothing found, 1: findings; anything else (a bad option, a crash) is no lint at all
    tail = " | ".join((out.stderr or out.stdout or "").strip().splitlines()[-3:])
    if out.returncode not in (0, 1):
        raise LintError(f"squawk ({squawk}) failed (exit {out.returncode}): {tail}")
    try:
        found = json.loads(out.stdout)
    except json.JSONDecodeError as exc:
        raise LintError(f"squawk ({squawk}) exited {out.returncode} without its JSON report: {tail}") from exc
    if not isinstance(found, list):
        raise LintError(f"squawk ({squawk}) gave an unexpected report: {str(found)[:200]}")
    return found


# -- the verdict ----------------------------------------------------------------


def classify(statements: list, squawk_findings: list) -> list:
    """Findings of the known rules (squawk's and ours), one per rule and
    statement, in statement order."""
    starts = [s.line for s in statements]

    def statement_at(line: int):
        index = None
        for i, begin in enumerate(starts):
            if begin <= line:
                index = i
            else:
                break
        return statements[index] if index is not None else None

    out, seen = [], set()
    for item in squawk_findings:
        rule = str(item.get("rule_name") or "")
        if rule not in RULES and rule != SYNTAX_ERROR:
            continue
        stmt = statement_at(int(item.get("line") or 0))
        if stmt is None or (rule, stmt.line) in seen:
            continue
        seen.add((rule, stmt.line))
        if rule == SYNTAX_ERROR:  # what squawk cannot read, it cannot vouch for
            kind, what, fix = ("unread",
                               f"cannot be read by squawk ({item.get('message') or 'syntax error'})",
                               "check the statement by hand, then deploy with "
                               f"-e preflight_migrations_lint=false ({DOCS}#the-lint)")
        else:
            kind, what, fix = RULES[rule]
        out.append(Finding(rule, kind, what, fix, stmt.revision, stmt.text, table_of(stmt.text),
                           squawk=str(item.get("message") or "")))
    for stmt in statements:
        for pattern, rule, kind, what, fix in OWN_RULES:
            if pattern.search(stmt.text) and (rule, stmt.line) not in seen:
                seen.add((rule, stmt.line))
                out.append(Finding(rule, kind, what, fix, stmt.revision, stmt.text, table_of(stmt.text)))
    order = {s.text: i for i, s in enumerate(statements)}
    out.sort(key=lambda f: order.get(f.statement, 0))
    return out


def judge(findings: list, statements: list, files: dict, sources: dict, table_sizes: dict,
          small_table_bytes: int, locks: str) -> list:
    """Each finding's verdict (refused, warned or allowed) and where it is."""
    created = set()
    for stmt in statements:
        m = _CREATE_TABLE.search(stmt.text)
        if m:
            created.add(bare_name(m.group(1)))
    sizes = {bare_name(k): v for k, v in (table_sizes or {}).items()}
    for f in findings:
        f.file = files.get(f.revision, "")
        source = sources.get(f.file, "")
        if source:
            f.line = locate(source, f.statement, f.rule)
        if f.kind == "unread":
            f.verdict = "refused"
            continue
        if f.kind == "breaks":
            if CONTRACT_MARKER in source:
                f.verdict, f.why = "allowed", (f"its migration is marked '# {CONTRACT_MARKER}' "
                                               "(a contract step)")
            elif f.table and f.table in created:
                f.verdict, f.why = "allowed", f"{f.table} is created by these migrations"
            else:
                f.verdict = "refused"
            continue
        f.table_bytes = sizes.get(f.table) if f.table else None
        if f.table and f.table in created:
            f.verdict, f.why = "allowed", f"{f.table} is created by these migrations"
        elif f.table_bytes is not None and f.table_bytes < small_table_bytes:
            f.verdict, f.why = "allowed", (f"{f.table} is small ({human_bytes(f.table_bytes)} on the server, "
                                           f"under preflight_migrations_small_table_bytes)")
        else:
            f.verdict = "refused" if locks == "refuse" else "warned"
    return findings


def lint(command, start: str, cwd: str, env: dict, timeout: float, table_sizes: dict,
         small_table_bytes: int = 10 * 1024 * 1024, locks: str = "refuse", squawk: str = "",
         pg_version: str = "", url_var: str = "DATABASE_URL") -> dict:
    """The whole lint of the migrations from ``start`` to head: rendered,
    linted, classified. ``ok`` is False when a finding is refused."""
    began = time.monotonic()
    binary = find_squawk(squawk)
    if not binary:
        raise LintError("squawk is not installed on the control node (pip install squawk-cli, as the "
                        "tool's requirements.txt does), or set preflight_migrations_squawk to its path; "
                        f"-e preflight_migrations_lint=false deploys without the lint ({DOCS}#the-lint)")
    sql = render_sql(command, start, cwd, env, timeout, url_var)
    statements = split_statements(sql)
    findings = classify(statements, run_squawk(binary, sql, pg_version) if statements else [])
    files = migration_files(cwd)
    sources = {}
    for path in {files.get(f.revision, "") for f in findings} - {""}:
        try:
            with open(os.path.join(cwd, path), encoding="utf-8", errors="replace") as fh:
                sources[path] = fh.read()
        except OSError:
            pass
    judge(findings, statements, files, sources, table_sizes, small_table_bytes, locks)
    revisions = list(dict.fromkeys(s.revision for s in statements if s.revision))
    refused = [f for f in findings if f.verdict == "refused"]
    return {
        "ok": not refused,
        "revisions": revisions,
        "statements": len(statements),
        "findings": [dict(asdict(f), message=f.message()) for f in findings],
        "refused": [f.message() for f in refused],
        "warned": [f.message() for f in findings if f.verdict == "warned"],
        "allowed": [f.message() for f in findings if f.verdict == "allowed"],
        "squawk": binary,
        "seconds": round(time.monotonic() - began, 2),
    }
