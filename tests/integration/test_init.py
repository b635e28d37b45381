"""init, the first five minutes: python-telegram-bot's and aiogram's own quick starts, then
`playbooks/init.yml`, then the lines it lists, then a deploy to this machine
with the local inventory it wrote. Nothing else is edited by hand: the
test only adds the isolation every test deployment has (its own names,
directories and ports)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from harness import PYTHON, ROOT, Deployment, failed_tasks

pytestmark = pytest.mark.integration

# python-telegram-bot's README quick start, as a new user copies it
QUICK_START = '''from telegram import Update
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes


async def hello(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text(f'Hello {update.effective_user.first_name}')


app = ApplicationBuilder().token("YOUR TOKEN HERE").build()

app.add_handler(CommandHandler("hello", hello))

app.run_polling()
'''
# aiogram's README quick start (its echo bot), as a new user copies it
AIOGRAM_QUICK_START = '''import asyncio
import logging
import sys
from os import getenv

from aiogram import Bot, Dispatcher, html
from aiogram.client.default import DefaultBotProperties
from aiogram.enums import ParseMode
from aiogram.filters import CommandStart
from aiogram.types import Message

# Bot token can be obtained via https://t.me/BotFather
TOKEN = getenv("BOT_TOKEN")

# All handlers should be attached to the Router (or Dispatcher)

dp = Dispatcher()


@dp.message(CommandStart())
async def command_start_handler(message: Message) -> None:
    await message.answer(f"Hello, {html.bold(message.from_user.full_name)}!")


async def main() -> None:
    bot = Bot(token=TOKEN, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    await dp.start_polling(bot)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    asyncio.run(main())
'''
TOKEN = "100001:demo-bot-token"  # what init wrote into the local inventory


def _ptb_edits(code: str) -> str:
    """The two changes init lists for bot.py:9, as a person makes them."""
    return "import os\n" + code.replace(
        '.token("YOUR TOKEN HERE")',
        '.token(os.environ["BOT_TOKEN"])'
        '.base_url(os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org") + "/bot")')


def _aiogram_edits(code: str) -> str:
    """The one change init lists (the Bot API's address), as a person makes it."""
    return code.replace(
        "from aiogram import Bot, Dispatcher, html\n",
        "from aiogram import Bot, Dispatcher, html\n"
        "from aiogram.client.session.aiohttp import AiohttpSession\n"
        "from aiogram.client.telegram import TelegramAPIServer\n").replace(
        "default=DefaultBotProperties(parse_mode=ParseMode.HTML))",
        "default=DefaultBotProperties(parse_mode=ParseMode.HTML),\n"
        "              session=AiohttpSession(api=TelegramAPIServer.from_base(\n"
        "                  getenv(\"TELEGRAM_API_BASE\", \"https://api.telegram.org\"))))")


# the quick start, its requirements, the lines init lists for it, the edit
# of those lines, what the bot is sent and what it answers
QUICK_STARTS = {
    "python-telegram-bot": (QUICK_START, "python-telegram-bot==22.8\n",
                            ["bot.py:9: the bot's token is written in the code",
                             "bot.py:9: the bot always talks to api.telegram.org"],
                            _ptb_edits, "/hello", "Hello Ada"),
    "aiogram": (AIOGRAM_QUICK_START, "aiogram==3.31.0\n",
                ["bot.py:27: the bot always talks to api.telegram.org"],
                _aiogram_edits, "/start", "Hello, <b>Ada</b>!"),
}


def init(app_dir: str) -> str:
    playbook = os.path.join(os.path.dirname(PYTHON), "ansible-playbook")
    env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")}
    out = subprocess.run([playbook, os.path.join(ROOT, "playbooks", "init.yml"), "-e", f"app_dir={app_dir}"],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module", params=sorted(QUICK_STARTS))
def quick_start(request, tmp_path_factory):
    d = Deployment.isolated("fs_init", lambda n: str(tmp_path_factory.mktemp(n)))
    src = d.extravars["code_sync_source_dir"]
    os.makedirs(src)
    d.quick = QUICK_STARTS[request.param]
    with open(os.path.join(src, "bot.py"), "w", encoding="utf-8") as fh:
        fh.write(d.quick[0])
    with open(os.path.join(src, "requirements.txt"), "w", encoding="utf-8") as fh:
        fh.write(d.quick[1])
    d.inventory = os.path.join(src, "deploy", "inventory", "local")
    yield d
    d.destroy()


def test_init_writes_the_deploy_folder_and_lists_the_lines_to_change(quick_start):
    src = quick_start.extravars["code_sync_source_dir"]
    out = init(src)
    assert "Services found in the code: bot (polling)" in out
    assert "Dockerfile" in out and "deploy/inventory/local/group_vars/all/main.yml" in out
    listed = [line.strip().strip('",') for line in out.splitlines() if line.strip().startswith('"bot.py:')]
    expected = quick_start.quick[2]
    assert len(listed) == len(expected), out
    assert all(line.startswith(want) for line, want in zip(listed, expected, strict=True)), out
    assert "TELEGRAM_API_BASE" in listed[-1]
    for rel in ("Dockerfile", ".dockerignore", "deploy/inventory/production/hosts.yml",
                "deploy/inventory/production/group_vars/all/vault.yml.example",
                "deploy/inventory/local/hosts.yml"):
        assert os.path.exists(os.path.join(src, rel)), rel
    # a second run writes nothing and says what it kept
    again = init(src)
    assert "Wrote:" not in again
    assert "Skipped (it exists, left as it is): deploy/inventory/production/hosts.yml" in again


def test_with_the_listed_lines_changed_it_deploys_here(quick_start):
    src = quick_start.extravars["code_sync_source_dir"]
    path = os.path.join(src, "bot.py")
    with open(path, encoding="utf-8") as fh:
        code = fh.read()
    edited = quick_start.quick[3](code)
    assert edited != code
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(edited)
    r = quick_start.run("deploy.yml", skip_tests=False)
    assert r.rc == 0, failed_tasks(r)
    log = open(quick_start.logs()[-1], encoding="utf-8").read()
    assert "Tests: WARNING - the app has no tests/ folder" in log
    assert "Migrations: none (the release has no alembic.ini" in log
    assert "Switched to" in log and "bot first start (none of it was serving) (ready: running 5 s)" in log
    assert "Health check: PASSED" in log
    text, reply = quick_start.quick[4:]
    quick_start.telegram("POST", f"/_control/{TOKEN}/updates", {"text": text, "first_name": "Ada"})
    deadline = time.monotonic() + 30
    sent = []
    while not sent and time.monotonic() < deadline:
        sent = [m["text"] for m in quick_start.telegram("GET", f"/_control/{TOKEN}/sent")["result"]]
        time.sleep(0.3)
    assert sent == [reply]
