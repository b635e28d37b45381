# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``init``: look at an app and write what deploying it needs (the logic of
the ``app_init`` action; stdlib only).

It reads the app's directory: its entry points (a ``Procfile``, else the
Python files that start a bot: ``run_polling(`` / ``start_polling(`` for a
poller, ``run_webhook(`` / aiogram's ``SimpleRequestHandler`` for a webhook
bot), the library (python-telegram-bot or aiogram), the environment
variables the code reads for its token, the Dockerfile, the requirements
file, ``alembic.ini``. Then it writes, under ``<app>/deploy/``:

* ``inventory/production/``: ``hosts.yml``, ``group_vars/all/app.yml`` (the
  app: its name and services, shared with the local inventory),
  ``group_vars/all/main.yml`` (the server's settings, secrets from Vault),
  ``group_vars/all/vault.yml.example``;
* ``inventory/local/``: this machine as the server, with the stand-in Bot
  API (``group_vars/all/app.yml`` is a link to the production one);

and a ``Dockerfile``, a ``.dockerignore`` and a first ``CHANGELOG.md``
when the app has none. It never
overwrites a file: what exists is skipped and said so. Every value it had to
guess is a line ending in ``# CHANGE: ...``, listed with its file and line,
and so are the lines of the app's code a person must change (a token
written in the code, an API address that cannot be pointed at the stand-in).
"""

from __future__ import annotations

import os
import re
import shlex
import time

SKIP_DIRS = {".git", ".venv", "venv", "env", "__pycache__", "node_modules", "deploy", "tests", "test",
             "migrations", "alembic", ".tox", ".mypy_cache", ".pytest_cache", "build", "dist"}
POLLING = re.compile(r"\.(run_polling|start_polling)\(")
WEBHOOK = re.compile(r"\.run_webhook\(|SimpleRequestHandler|setup_application\(")
PTB = re.compile(r"^\s*(from|import)\s+telegram(\.|\s|$)", re.M)
AIOGRAM = re.compile(r"^\s*(from|import)\s+aiogram(\.|\s|$)", re.M)
# an entry point run by the bot kit (botkit/): single poller, GET /ready
BOTKIT = re.compile(r"^\s*(from|import)\s+fieldservice_botkit(\.|\s|$)", re.M)
ENV_READ = re.compile(r"""(?:environ\s*\[\s*|environ\.get\(\s*|getenv\(\s*)["']([A-Z][A-Z0-9_]*)["']""")
TOKEN_LITERAL = re.compile(r"""(?:\.token\(|Bot\(\s*(?:token\s*=\s*)?)\s*["']([^"']+)["']""")
API_BASE = re.compile(r"base_url\(|TelegramAPIServer|TELEGRAM_API_BASE")
PORT_ARG = re.compile(r"\bport\s*=\s*(\d{2,5})")
IDENT = re.compile(r"[^A-Za-z0-9_]+")
MARK = "# CHANGE:"

DOCS = "README.md#use-it-from-your-apps-repository"


class InitError(Exception):
    """The app cannot be read (the message says what is missing)."""


YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def identifier(text: str, fallback: str = "app") -> str:
    """A name usable as app_name / a service name (letters, digits, _)."""
    name = IDENT.sub("_", text).strip("_").lower()
    # a leading digit, or a word YAML reads as a boolean or null (a service "on")
    if not name or not name[0].isalpha() or name in YAML_WORDS:
        name = f"{fallback}_{name}" if name else fallback
    return name


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return ""


def python_files(root: str) -> list[str]:
    """The app's Python files (relative paths), tests, migrations and environments left out."""
    out = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(files):
            if name.endswith(".py"):
                out.append(os.path.relpath(os.path.join(here, name), root))
    return out


def module_of(rel: str) -> str:
    """``notes/polling_bot.py`` -> ``notes.polling_bot``; ``pkg/__main__.py`` -> ``pkg``."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "__main__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def service_name(rel: str) -> str:
    parts = rel[:-3].split(os.sep)
    stem = parts[-1]
    if stem in ("main", "__main__", "run", "app") and len(parts) > 1:
        stem = parts[-2]
    return identifier(stem, "bot")


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _token_var(text: str) -> str:
    names = [n for n in ENV_READ.findall(text) if "TOKEN" in n]
    return names[0] if names else "BOT_TOKEN"


def inspect_file(root: str, rel: str, text: str) -> dict:
    """What one entry point tells: mode, library, token variable, port, lines to change."""
    polling, webhook = POLLING.search(text), WEBHOOK.search(text)
    mode = "webhook" if webhook and not polling else "polling"
    lib = "python-telegram-bot" if PTB.search(text) else "aiogram" if AIOGRAM.search(text) else ""
    # the token and the API address may be read by a module the entry point imports
    package_text = text
    pkg = os.path.dirname(os.path.join(root, rel))
    if os.path.abspath(pkg) != os.path.abspath(root):
        for name in sorted(os.listdir(pkg)):
            if name.endswith(".py"):
                package_text += "\n" + _read(os.path.join(pkg, name))
    if not lib:
        lib = ("python-telegram-bot" if PTB.search(package_text)
               else "aiogram" if AIOGRAM.search(package_text) else "")
    edits = []
    literal = TOKEN_LITERAL.search(text)
    token_var = _token_var(package_text)
    if literal and token_var not in ENV_READ.findall(package_text):
        edits.append({
            "file": rel, "line": _line_of(text, literal.start()),
            "change": f"the bot's token is written in the code: read it from the environment, "
                      f"os.environ[\"{token_var}\"] (the deploy gives it from Vault)",
        })
    if lib and not API_BASE.search(package_text):
        first = literal or polling or webhook
        at = first.start() if first else 0
        how = ('ApplicationBuilder()...base_url(os.environ.get("TELEGRAM_API_BASE", '
               '"https://api.telegram.org") + "/bot")' if lib != "aiogram" else
               'Bot(..., session=AiohttpSession(api=TelegramAPIServer.from_base('
               'os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org"))))')
        edits.append({
            "file": rel, "line": _line_of(text, at),
            "change": "the bot always talks to api.telegram.org: take the Bot API's address from "
                      f"TELEGRAM_API_BASE so the local deploy can use the stand-in, {how}",
        })
    port = PORT_ARG.search(text)
    return {"mode": mode, "library": lib, "token_var": token_var, "kit": bool(BOTKIT.search(text)),
            "port": int(port.group(1)) if port else 8080, "port_guessed": port is None,
            "reads": sorted(set(ENV_READ.findall(package_text))), "edits": edits}


def procfile_services(root: str) -> list[dict]:
    text = _read(os.path.join(root, "Procfile"))
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or line.lstrip().startswith("#"):
            continue
        if name.strip() == "release":  # Heroku's release phase: migrations, not a service
            continue
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise InitError(f"Procfile line {number}: {exc} in {command.strip()!r}; fix the quoting "
                            f"and run init again (see {DOCS})") from None
        if not argv:
            continue
        out.append({"name": identifier(name.strip(), "bot"), "command": argv, "file": ""})
        if len(argv) >= 3 and argv[1] == "-m":
            rel = argv[2].replace(".", os.sep) + ".py"
            if not os.path.isfile(os.path.join(root, rel)):
                rel = os.path.join(argv[2].replace(".", os.sep), "__main__.py")
            out[-1]["file"] = rel if os.path.isfile(os.path.join(root, rel)) else ""
        elif len(argv) >= 2 and argv[1].endswith(".py"):
            out[-1]["file"] = argv[1]
    return out


def find_services(root: str) -> tuple[list[dict], str]:
    """The app's services and where they came from (``Procfile`` or ``code``)."""
    found = procfile_services(root)
    source = "Procfile"
    if not found:
        source = "code"
        for rel in python_files(root):
            text = _read(os.path.join(root, rel))
            if POLLING.search(text) or WEBHOOK.search(text):
                found.append({"name": service_name(rel), "command": ["python", "-m", module_of(rel)],
                              "file": rel})
    seen: dict[str, int] = {}
    for svc in found:
        text = _read(os.path.join(root, svc["file"])) if svc["file"] else ""
        svc.update(inspect_file(root, svc["file"], text) if svc["file"] else
                   {"mode": "polling", "library": "", "token_var": "BOT_TOKEN", "kit": False, "port": 8080,
                    "port_guessed": True, "reads": [], "edits": []})
        if svc["name"] in seen:  # two entry points with one name
            seen[svc["name"]] += 1
            svc["name"] = f"{svc['name']}_{seen[svc['name']]}"
        else:
            seen[svc["name"]] = 1
    return found, source


def analyze(root: str) -> dict:
    if not os.path.isdir(root):
        raise InitError(f"app_dir {root} is not a directory")
    services, source = find_services(root)
    if not services:
        raise InitError(
            f"no bot found in {root}: no Procfile, and no Python file calls run_polling(), "
            "start_polling() or run_webhook(). Write a Procfile (a line 'name: python -m your.module' "
            f"per bot) and run init again (see {DOCS})")
    requirements = next((n for n in ("requirements.txt", "requirements/prod.txt", "requirements/base.txt")
                         if os.path.isfile(os.path.join(root, n))), "")
    return {
        "root": os.path.abspath(root),
        "name": identifier(os.path.basename(os.path.abspath(root)).replace("-", "_")),
        "services": services,
        "source": source,
        "requirements": requirements,
        "pyproject": os.path.isfile(os.path.join(root, "pyproject.toml")),
        "alembic": os.path.isfile(os.path.join(root, "alembic.ini")),
    }


# -- what is written ----------------------------------------------------------


def _q(value) -> str:
    """A YAML scalar in double quotes."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _services_yaml(app: dict) -> list[str]:
    lines = []
    for svc in app["services"]:
        lines.append(f"  - name: {svc['name']}")
        lines.append(f"    command: [{', '.join(_q(a) for a in svc['command'])}]")
        why = {"polling": "recreate: stop, then start (no single-poller guarantee declared)",
               "webhook": f"blue/green behind the proxy at /{svc['name']}/"}[svc["mode"]]
        if svc["kit"] and svc["mode"] == "polling":
            why = "handoff, no overlap: the bot kit holds the poller lock"
        guessed = "" if svc["file"] else f"  {MARK} polling or webhook (not found in the code)"
        lines.append(f"    mode: {svc['mode']}  # {why}{guessed}")
        if svc["kit"]:
            if svc["mode"] == "polling":
                lines.append("    single_poller: true")
            lines.append("    readiness_path: /ready  # the bot kit's endpoint")
        if svc["mode"] == "webhook":
            port_note = f"  {MARK} the port its webhook server listens on" if svc["port_guessed"] else ""
            lines.append(f"    port: {svc['port']}{port_note}")
            if "WEBHOOK_URL" in svc["reads"]:
                lines.append("    env:")
                lines.append(f"      WEBHOOK_URL: \"{{{{ app_public_url }}}}/{svc['name']}/webhook\"")
    return lines


def app_yml(app: dict) -> str:
    return "\n".join([
        "---",
        "# Written by `fieldservice.deploy.init`: the app, the same on every server",
        "# (inventory/local/group_vars/all/app.yml is a link to this file).",
        f"# Found in {'the Procfile' if app['source'] == 'Procfile' else 'the code'}; "
        "docs/zero-downtime.md says what each setting does.",
        f"app_name: {app['name']}",
        "app_services:",
        *_services_yaml(app),
        "",
    ])


def _secret_env(app: dict, local: bool) -> list[str]:
    lines = ["app_service_secret_env:"]
    for i, svc in enumerate(app["services"]):
        value = (_q(f"{100001 + i}:demo-{svc['name'].replace('_', '-')}-token") if local
                 else _q(f"{{{{ vault_{svc['name']}_token }}}}"))
        lines.append(f"  {svc['name']}:")
        lines.append(f"    {svc['token_var']}: {value}")
    return lines


def _roots(app: dict) -> list[str]:
    slug = app["name"].replace("_", "-")
    return [f"app_root: /opt/{slug}", f"app_backup_root: /opt/backups/{slug}"]


def _has_webhook(app: dict) -> bool:
    return any(s["mode"] == "webhook" for s in app["services"])


def production_main_yml(app: dict) -> str:
    webhook = _has_webhook(app)
    return "\n".join([
        "---",
        "# Written by `fieldservice.deploy.init`: the production server's settings.",
        "# Secrets come from vault.yml beside this file (copy vault.yml.example, then",
        "# `ansible-vault encrypt vault.yml`).",
        *_roots(app),
        "app_db_password: \"{{ vault_app_db_password }}\"",
        *_secret_env(app, local=False),
        *([f"app_public_url: https://bots.example.com  {MARK} your domain (the proxy serves it)",
           "# a Let's Encrypt certificate for it, renewed by cron (self_signed: a bare IP address)",
           "proxy_tls: acme"]
          if webhook else []),
        "# The app's source: the repository this deploy/ folder is in (the folder",
        "# itself, Vault file included, is no part of a release).",
        "code_sync_source_dir: \"{{ inventory_dir }}/../../..\"",
        "code_sync_exclude_extra: [deploy]",
        "",
    ])


def vault_example(app: dict) -> str:
    return "\n".join([
        "---",
        "# Copy to vault.yml, fill in, then `ansible-vault encrypt vault.yml`.",
        f"vault_app_db_password: CHANGE-ME  {MARK} a long random password",
        *[f"vault_{s['name']}_token: \"123456:CHANGE-ME\"  {MARK} {s['name']}'s token from @BotFather"
          for s in app["services"]],
        "",
    ])


def production_hosts() -> str:
    return "\n".join([
        "---",
        "# Written by `fieldservice.deploy.init`: the server the app runs on.",
        "all:",
        "  children:",
        "    app_servers:",
        "      hosts:",
        f"        bots.example.com:  {MARK} your server's name or address",
        f"          ansible_user: deploy  {MARK} the SSH user (root, or one with sudo)",
        "",
    ])


def local_hosts() -> str:
    return "\n".join([
        "---",
        "# Written by `fieldservice.deploy.init`: this machine is the server.",
        "#   ansible-playbook playbooks/deploy.yml -i deploy/inventory/local",
        "all:",
        "  children:",
        "    app_servers:",
        "      hosts:",
        "        localhost:",
        "          ansible_connection: local",
        "          ansible_python_interpreter: \"{{ ansible_playbook_python }}\"",
        "",
    ])


def local_main_yml(app: dict) -> str:
    return "\n".join([
        "---",
        "# Written by `fieldservice.deploy.init`: the app on this machine, talking to",
        "# the bundled stand-in Bot API (Telegram is not reachable from here). These",
        "# values are not secrets: the database listens on a private Docker network.",
        *_roots(app),
        "app_db_password: local-demo-password",
        *_secret_env(app, local=True),
        "demo_telegram_enabled: true",
        "app_telegram_api_base: \"http://{{ app_name }}_telegram:8081\"",
        "code_sync_source_dir: \"{{ inventory_dir }}/../../..\"",
        "code_sync_exclude_extra: [deploy]",
        "",
    ])


def dockerfile(app: dict) -> str:
    first = app["services"][0]["command"]
    all_http = all(s["mode"] == "webhook" for s in app["services"])
    if app["requirements"]:
        deps = [f"COPY {app['requirements']} ./requirements.txt",
                "RUN pip install --no-cache-dir -r requirements.txt", "COPY . ."]
    elif app["pyproject"]:
        deps = ["COPY . .", "RUN pip install --no-cache-dir ."]
    else:
        deps = [f"COPY . .  {MARK} no requirements.txt or pyproject.toml: install the app's libraries"]
    health = []
    if all_http:
        port = app["services"][0]["port"]
        health = ["# Healthy when the webhook server accepts connections.",
                  "HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD "
                  "[\"python\", \"-c\", \"import socket; "
                  f"socket.create_connection(('127.0.0.1', {port}), 2)\"]"]
    return "\n".join([
        "# Written by `fieldservice.deploy.init`: one image for every service of the app",
        "# (each service runs its own command in it).",
        "ARG BASE_IMAGE=python:3.11-slim",
        "FROM ${BASE_IMAGE}",
        "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
        "WORKDIR /app",
        "RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home app",
        *deps,
        "USER app",
        *health,
        "CMD [" + ", ".join(_q(a) for a in first) + "]",
        "",
    ])


def changelog(app: dict, today: str | None = None) -> str:
    """A first CHANGELOG.md: each release the deploy ships needs an entry newer than the last."""
    day = today or time.strftime("%Y-%m-%d")
    return "\n".join([
        "# Changelog",
        "",
        "Each deploy of a new release wants an entry here newer than the serving release's.",
        "",
        f"## [0.1.0] - {day}",
        "",
        "### Added",
        f"- {app['name']}, deployed with fieldservice.deploy.  {MARK} what this release brings",
        "",
    ])


DOCKERIGNORE = "\n".join([".git", ".venv", "venv", "deploy", "deployment_logs", "__pycache__", "*.pyc", ""])


def plan(app: dict) -> list[tuple[str, str]]:
    """(relative path, content) of every file init writes; ``->target`` content makes a link."""
    files = [
        ("deploy/inventory/production/hosts.yml", production_hosts()),
        ("deploy/inventory/production/group_vars/all/app.yml", app_yml(app)),
        ("deploy/inventory/production/group_vars/all/main.yml", production_main_yml(app)),
        ("deploy/inventory/production/group_vars/all/vault.yml.example", vault_example(app)),
        ("deploy/inventory/local/hosts.yml", local_hosts()),
        ("deploy/inventory/local/group_vars/all/app.yml", "->../../../production/group_vars/all/app.yml"),
        ("deploy/inventory/local/group_vars/all/main.yml", local_main_yml(app)),
    ]
    # the app's own Dockerfile, when it has one, is kept (and said so)
    files.append(("Dockerfile", dockerfile(app)))
    files.append((".dockerignore", DOCKERIGNORE))
    # the deploy wants a changelog entry per release (the seed's checklist)
    files.append(("CHANGELOG.md", changelog(app)))
    return files


def write(root: str, files: list[tuple[str, str]], check_mode: bool = False) -> tuple[list, list]:
    written, skipped = [], []
    for rel, content in files:
        path = os.path.join(root, rel)
        if os.path.lexists(path):
            skipped.append(rel)
            continue
        written.append(rel)
        if check_mode:
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(content)
    return written, skipped


def to_change(root: str, app: dict, written: list) -> list[str]:
    """``file:line: what`` for every guess in what was written, then the app's own lines."""
    out = []
    for rel in written:
        path = os.path.join(root, rel)
        if os.path.islink(path):
            continue
        for n, line in enumerate(_read(path).splitlines(), 1):
            if MARK in line:
                out.append(f"{rel}:{n}: {line.split(MARK, 1)[1].strip()}")
    for svc in app["services"]:
        for edit in svc["edits"]:
            out.append(f"{edit['file']}:{edit['line']}: {edit['change']}")
    return out


def run(params: dict, check_mode: bool = False) -> dict:
    root = params["app_dir"]
    try:
        app = analyze(root)
    except InitError as exc:
        return {"failed": True, "changed": False, "msg": f"init: {exc}"}
    written, skipped = write(root, plan(app), check_mode)
    return {
        "changed": bool(written),
        "app_name": app["name"],
        "services": [{k: s[k] for k in ("name", "command", "mode", "library", "token_var", "port")}
                     for s in app["services"]],
        "found_in": app["source"],
        "written": written,
        "kept": skipped,
        "to_change": to_change(root, app, written) if not check_mode else [],
        "alembic": app["alembic"],
    }
