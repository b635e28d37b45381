"""init, the first five minutes: python-telegram-bot's own quick start, then
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
TOKEN = "100001:demo-bot-token"  # what init wrote into the local inventory


def init(app_dir: str) -> str:
    playbook = os.path.join(os.path.dirname(PYTHON), "ansible-playbook")
    env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")}
    out = subprocess.run([playbook, os.path.join(ROOT, "playbooks", "init.yml"), "-e", f"app_dir={app_dir}"],
                         capture_output=True, text=True, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory):
    d = Deployment.isolated("fs_init", lambda n: str(tmp_path_factory.mktemp(n)))
    src = d.extravars["code_sync_source_dir"]
    os.makedirs(src)
    with open(os.path.join(src, "bot.py"), "w", encoding="utf-8") as fh:
        fh.write(QUICK_START)
    with open(os.path.join(src, "requirements.txt"), "w", encoding="utf-8") as fh:
        fh.write("python-telegram-bot==22.8\n")
    d.inventory = os.path.join(src, "deploy", "inventory", "local")
    yield d
    d.destroy()


def test_init_writes_the_deploy_folder_and_lists_the_lines_to_change(quick_start):
    src = quick_start.extravars["code_sync_source_dir"]
    out = init(src)
    assert "Services found in the code: bot (polling)" in out
    assert "Dockerfile" in out and "deploy/inventory/local/group_vars/all/main.yml" in out
    listed = [line.strip().strip('",') for line in out.splitlines() if line.strip().startswith('"bot.py:')]
    assert len(listed) == 2 and all(line.startswith("bot.py:9: ") for line in listed), out
    assert "token is written in the code" in listed[0] and "TELEGRAM_API_BASE" in listed[1]
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
    # the two changes init listed for bot.py:9, as a person makes them
    code = "import os\n" + code.replace(
        '.token("YOUR TOKEN HERE")',
        '.token(os.environ["BOT_TOKEN"])'
        '.base_url(os.environ.get("TELEGRAM_API_BASE", "https://api.telegram.org") + "/bot")')
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(code)
    r = quick_start.run("deploy.yml", skip_tests=False)
    assert r.rc == 0, failed_tasks(r)
    log = open(quick_start.logs()[-1], encoding="utf-8").read()
    assert "Tests: WARNING - the app has no tests/ folder" in log
    assert "Migrations: none (the release has no alembic.ini" in log
    assert "Switched to" in log and "bot first start (none of it was serving) (ready: running 5 s)" in log
    assert "Health check: PASSED" in log
    quick_start.telegram("POST", f"/_control/{TOKEN}/updates", {"text": "/hello", "first_name": "Ada"})
    deadline = time.monotonic() + 30
    sent = []
    while not sent and time.monotonic() < deadline:
        sent = [m["text"] for m in quick_start.telegram("GET", f"/_control/{TOKEN}/sent")["result"]]
        time.sleep(0.3)
    assert sent == ["Hello Ada"]
