"""init: what it finds in an app and what it writes (plugin_utils/app_init.py)."""

from __future__ import annotations

import os

import pytest
import yaml

from ansible_collections.fieldservice.deploy.plugins.module_utils import services
from ansible_collections.fieldservice.deploy.plugins.plugin_utils import app_init

# python-telegram-bot's own quick start (its README), as a new user copies it
PTB_QUICK_START = '''from telegram import Update
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes


async def hello(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text(f'Hello {update.effective_user.first_name}')


app = ApplicationBuilder().token("YOUR TOKEN HERE").build()

app.add_handler(CommandHandler("hello", hello))

app.run_polling()
'''

AIOGRAM_WEBHOOK = '''import os
from aiohttp import web
from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application

TOKEN = os.getenv("TELEGRAM_TOKEN")


def main() -> None:
    bot = Bot(TOKEN)
    dp = Dispatcher()
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot).register(app, path="/webhook")
    setup_application(app, dp, bot=bot)
    web.run_app(app, host="0.0.0.0", port=8081)


if __name__ == "__main__":
    main()
'''


def write(root, files: dict):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def read(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as fh:
        return fh.read()


def test_the_quick_start_bot_is_found_and_its_lines_to_change_are_listed(tmp_path):
    app = tmp_path / "hello-bot"
    write(app, {"bot.py": PTB_QUICK_START, "requirements.txt": "python-telegram-bot==22.8\n"})
    result = app_init.run({"app_dir": str(app)})
    assert result["app_name"] == "hello_bot" and result["found_in"] == "code"
    assert result["services"] == [{"name": "bot", "command": ["python", "-m", "bot"], "mode": "polling",
                                   "library": "python-telegram-bot", "token_var": "BOT_TOKEN", "port": 8080}]
    assert "Dockerfile" in result["written"] and result["kept"] == []
    code = [c for c in result["to_change"] if c.startswith("bot.py:")]
    assert code[0].startswith("bot.py:9: the bot's token is written in the code")
    assert 'os.environ["BOT_TOKEN"]' in code[0]
    assert code[1].startswith("bot.py:9: the bot always talks to api.telegram.org") and "base_url(" in code[1]
    # every guess in what was written is listed with its real line
    for line in result["to_change"]:
        rel, n, dummy = line.split(":", 2)
        if rel != "bot.py":
            assert app_init.MARK in read(app, rel).splitlines()[int(n) - 1]
    dockerfile = read(app, "Dockerfile")
    assert 'CMD ["python", "-m", "bot"]' in dockerfile and "USER app" in dockerfile
    assert "HEALTHCHECK" not in dockerfile  # a poller has no HTTP endpoint
    changelog = read(app, "CHANGELOG.md")
    assert "## [0.1.0] - " in changelog  # the CHANGELOG check wants an entry per release


def test_what_it_writes_is_valid_and_means_what_the_roles_expect(tmp_path):
    app = tmp_path / "hello-bot"
    write(app, {"bot.py": PTB_QUICK_START, "requirements.txt": "x\n"})
    app_init.run({"app_dir": str(app)})
    inv = app / "deploy" / "inventory"
    shared = yaml.safe_load((inv / "production/group_vars/all/app.yml").read_text())
    assert (inv / "local/group_vars/all/app.yml").is_symlink()
    assert yaml.safe_load((inv / "local/group_vars/all/app.yml").read_text()) == shared
    resolved = [services.resolve(s) for s in shared["app_services"]]
    assert resolved[0]["strategy"] == "recreate" and resolved[0]["readiness"] == "auto"
    local = yaml.safe_load((inv / "local/group_vars/all/main.yml").read_text())
    assert local["demo_telegram_enabled"] is True
    assert local["app_service_secret_env"] == {"bot": {"BOT_TOKEN": "100001:demo-bot-token"}}
    assert local["code_sync_exclude_extra"] == ["deploy"]
    prod = yaml.safe_load((inv / "production/group_vars/all/main.yml").read_text())
    assert prod["app_service_secret_env"] == {"bot": {"BOT_TOKEN": "{{ vault_bot_token }}"}}
    vault = yaml.safe_load((inv / "production/group_vars/all/vault.yml.example").read_text())
    assert "vault_bot_token" in vault
    hosts = yaml.safe_load((inv / "local/hosts.yml").read_text())
    assert hosts["all"]["children"]["app_servers"]["hosts"]["localhost"]["ansible_connection"] == "local"


def test_it_never_overwrites_and_says_what_it_kept(tmp_path):
    app = tmp_path / "bot"
    write(app, {"bot.py": PTB_QUICK_START, "requirements.txt": "x\n", "Dockerfile": "FROM mine\n"})
    first = app_init.run({"app_dir": str(app)})
    assert "Dockerfile" not in first["written"] and "Dockerfile" in first["kept"]
    assert read(app, "Dockerfile") == "FROM mine\n"
    (app / "deploy/inventory/production/hosts.yml").write_text("edited\n")
    again = app_init.run({"app_dir": str(app)})
    assert again["written"] == [] and not again["changed"]
    assert sorted(again["kept"]) == sorted(first["written"] + first["kept"])
    assert read(app, "deploy/inventory/production/hosts.yml") == "edited\n"


def test_check_mode_writes_nothing(tmp_path):
    write(tmp_path, {"bot.py": PTB_QUICK_START})
    result = app_init.run({"app_dir": str(tmp_path)}, check_mode=True)
    assert result["written"] and not (tmp_path / "deploy").exists() and not (tmp_path / "Dockerfile").exists()


def test_an_aiogram_webhook_bot_and_its_own_token_variable(tmp_path):
    write(tmp_path, {"shop/webhook.py": AIOGRAM_WEBHOOK, "shop/__init__.py": "", "requirements.txt": "x\n"})
    result = app_init.run({"app_dir": str(tmp_path)})
    svc = result["services"][0]
    assert svc == {**svc, "name": "webhook", "command": ["python", "-m", "shop.webhook"], "mode": "webhook",
                   "library": "aiogram", "token_var": "TELEGRAM_TOKEN", "port": 8081}
    # it reads its token from the environment: nothing to change there, but
    # its Bot API address is fixed
    code = [c for c in result["to_change"] if c.startswith("shop/")]
    assert len(code) == 1 and "TelegramAPIServer.from_base" in code[0]
    dockerfile = read(tmp_path, "Dockerfile")
    assert "HEALTHCHECK" in dockerfile and "8081" in dockerfile  # every service is HTTP
    local = yaml.safe_load(read(tmp_path, "deploy/inventory/local/group_vars/all/main.yml"))
    assert local["app_service_secret_env"]["webhook"] == {"TELEGRAM_TOKEN": "100001:demo-webhook-token"}


def test_a_procfile_names_the_services(tmp_path):
    write(tmp_path, {"Procfile": "# bots\nadmin: python -m bots.admin\nworker: python run_worker.py\n",
                     "bots/admin.py": "import os\nfrom telegram.ext import Application\n"
                                      "Application.builder().token(os.environ['ADMIN_TOKEN']).base_url("
                                      "os.environ['TELEGRAM_API_BASE']).build().run_webhook(port=9000)\n",
                     "run_worker.py": "print('work')\n"})
    result = app_init.run({"app_dir": str(tmp_path)})
    assert result["found_in"] == "Procfile"
    by = {s["name"]: s for s in result["services"]}
    assert by["admin"]["mode"] == "webhook" and by["admin"]["port"] == 9000
    assert by["admin"]["token_var"] == "ADMIN_TOKEN"
    assert by["worker"]["command"] == ["python", "run_worker.py"] and by["worker"]["mode"] == "polling"
    assert not [c for c in result["to_change"] if c.startswith("bots/")]  # nothing to change in its code
    assert "Dockerfile" in result["written"]
    assert any("no requirements.txt or pyproject.toml" in c for c in result["to_change"])


def test_an_app_without_a_bot_is_refused_with_what_to_write(tmp_path):
    write(tmp_path, {"lib.py": "x = 1\n"})
    result = app_init.run({"app_dir": str(tmp_path)})
    assert result["failed"] and "Procfile" in result["msg"] and "run_polling()" in result["msg"]
    assert not (tmp_path / "deploy").exists()


@pytest.mark.parametrize("name,expected", [("my-bot", "my_bot"), ("123", "app_123"), ("Bot.App", "bot_app")])
def test_names_become_identifiers(name, expected):
    assert app_init.identifier(name) == expected


def test_bots_run_by_the_kit_get_the_handoff_and_its_readiness_path(tmp_path):
    # the example apps after their adoption patch
    kit_poller = ('from fieldservice_botkit import ptb as botkit\nfrom telegram.ext import Application\n'
                  'import os\n\ndef main():\n    app = Application.builder().token(os.environ["BOT_TOKEN"])'
                  '.base_url(os.environ["TELEGRAM_API_BASE"] + "/bot").build()\n'
                  '    botkit.run_polling(app)\n')
    kit_hook = ('from fieldservice_botkit import aiogram as botkit\nfrom aiogram import Bot, Dispatcher\n'
                'import os\n\ndef main():\n'
                '    botkit.run_webhook(Dispatcher(), Bot(os.environ["BOT_TOKEN"]), port=8080)\n')
    write(tmp_path, {"bots/poller.py": kit_poller, "bots/hook.py": kit_hook, "bots/__init__.py": "",
                     "requirements.txt": "x\n"})
    app_init.run({"app_dir": str(tmp_path)})
    shared = yaml.safe_load(read(tmp_path, "deploy/inventory/production/group_vars/all/app.yml"))
    by_name = {s["name"]: services.resolve(s) for s in shared["app_services"]}
    assert by_name["poller"]["strategy"] == "handoff" and by_name["poller"]["readiness_path"] == "/ready"
    assert by_name["hook"]["strategy"] == "blue_green" and by_name["hook"]["readiness_path"] == "/ready"
    # a stock poller beside them keeps recreate (the control)
    write(tmp_path / "stock", {"bot.py": PTB_QUICK_START})
    app_init.run({"app_dir": str(tmp_path / "stock")})
    stock = yaml.safe_load(read(tmp_path / "stock", "deploy/inventory/production/group_vars/all/app.yml"))
    assert services.resolve(stock["app_services"][0])["strategy"] == "recreate"
    assert "readiness_path" not in stock["app_services"][0]


def test_a_procfile_release_line_is_no_service_and_bad_quoting_is_named(tmp_path):
    write(tmp_path, {"Procfile": "release: alembic upgrade head\non: python bot.py\n",
                     "bot.py": "print(1)\n"})
    result = app_init.run({"app_dir": str(tmp_path)})
    assert [s["name"] for s in result["services"]] == ["bot_on"], "not the YAML boolean 'on'"
    shared = yaml.safe_load(read(tmp_path, "deploy/inventory/production/group_vars/all/app.yml"))
    assert [s["name"] for s in shared["app_services"]] == ["bot_on"]
    bad = tmp_path / "bad"
    write(bad, {"Procfile": "bot: python -c 'print(1)\n"})
    result = app_init.run({"app_dir": str(bad)})
    assert result["failed"] and "Procfile line 1: No closing quotation" in result["msg"], result
