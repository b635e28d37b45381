"""A stock python-telegram-bot 22 app, deployed before it adopts anything.

examples/ptb-notes is written as PTB's docs show (``run_polling()``,
``run_webhook()``, psycopg, Alembic) with no lock, no heartbeat and no
readiness endpoint. Given only its services and tokens, the deploy:

* runs its tests in the app's own environment (a virtualenv made from its
  requirements files: the tool's own has no ``telegram``);
* judges readiness by what the app has (its webhook port behind the proxy;
  the poller running a few seconds), checks health without heartbeats;
* replaces the poller with ``recreate`` (two pollers at once would make
  Telegram answer 409) and says how long it was down; the webhook bot gets
  blue/green;
* and a first deploy that fails says nothing was serving.

Then v2 is deployed under webhook load and a steady polling feed: no
failed request, no lost, duplicated or 409'd update.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest
from harness import (
    PTB_HOOK_TOKEN,
    PTB_NOTES_SRC,
    PTB_POLL_TOKEN,
    PYTHON,
    Deployment,
    add_changelog_entry,
    failed_tasks,
    ptb_notes_feed_args,
    ptb_notes_services,
    ptb_notes_vars,
)
from traffic import PollingFeed, webhook_load, webhook_outcome

pytestmark = pytest.mark.integration

POLL_TOKEN, HOOK_TOKEN = PTB_POLL_TOKEN, PTB_HOOK_TOKEN
GAP = re.compile(r"polling_bot recreate: down for (\d+(?:\.\d+)?) s")


def deploy_log(d: Deployment) -> str:
    logs = [p for p in d.logs() if os.path.basename(p).startswith("deploy_")]
    with open(logs[-1], encoding="utf-8") as fh:
        return fh.read()


def notes(d: Deployment, where: str = "true") -> list[tuple[int, str, str]]:
    rows = d.psql(f"SELECT update_id, bot, body FROM notes WHERE {where} ORDER BY id")
    return [(int(a), b, c) for a, b, c in (line.split("|", 2) for line in rows.splitlines() if line)]


@pytest.fixture(scope="module")
def stock(tmp_path_factory):
    d = Deployment.isolated("fs_ptb", lambda n: str(tmp_path_factory.mktemp(n)))
    d.extravars.update(
        ptb_notes_vars(d.name),
        # its own cache: the first deploy here makes the app's virtualenv
        preflight_app_venv_cache=os.path.join(d.workdir, "venvs"),
    )
    shutil.copytree(PTB_NOTES_SRC, d.extravars["code_sync_source_dir"],
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".venv"))
    yield d
    d.destroy()


def test_the_tools_own_python_cannot_run_the_apps_tests():
    # the positive control of the next test: its tests need the app's environment
    probe = subprocess.run([PYTHON, "-c", "import telegram"], capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'telegram'" in probe.stderr


def test_a_first_deploy_that_fails_says_nothing_was_serving(stock):
    # what a new user tried first: a readiness path the app does not have
    r = stock.run("deploy.yml", app_services=ptb_notes_services(stock.name, readiness_path="/ready"))
    assert r.rc != 0
    text = " ".join(failed_tasks(r))
    assert "polling_bot: readiness path not ready: GET /ready" in text, text
    assert "Nothing of this app was serving before this switch, and nothing serves now" in text
    assert "keeps serving" not in text
    assert "readiness_path of polling_bot in app_services" in text
    assert "docs/zero-downtime.md#readiness" in text
    assert stock.containers() == [] and stock.current_release() is None
    # its migrations check already ran in the app's environment, made here
    venv = os.path.join(stock.workdir, "venvs")
    assert re.search(rf"App environment: {re.escape(venv)}/\w+/bin/python \(made from "
                     r"requirements-dev\.txt, requirements\.txt in [\d.]+ s\)", deploy_log(stock))


def test_the_stock_app_deploys_with_its_own_environment_and_no_heartbeats(stock):
    r = stock.run("deploy.yml", skip_tests=False)
    assert r.rc == 0, failed_tasks(r)
    log = deploy_log(stock)
    venv = os.path.join(stock.workdir, "venvs")
    # the virtualenv the failed deploy made is used again (same requirements)
    assert re.search(rf"App environment: {re.escape(venv)}/\w+/bin/python \(cached, from "
                     r"requirements-dev\.txt, requirements\.txt\)", log), log
    assert "Tests passed: 2 passed" in log
    assert "Health check: PASSED" in log
    release = stock.current_release()
    assert f"Switched to {release}: polling_bot first start (none of it was serving) (ready: running 5 s); " \
           "webhook_bot first start (none of it was serving) (ready: tcp port 8080)" in log
    labels = {c["Names"]: c["Labels"] for c in stock.containers()}
    assert "fs.strategy=recreate" in labels[f"{stock.name}_polling_bot_{release}"]
    assert "fs.strategy=blue_green" in labels[f"{stock.name}_webhook_bot_{release}"]


def test_it_works_polling_and_by_webhook_through_the_proxy(stock):
    ids = stock.telegram("POST", f"/_control/{POLL_TOKEN}/updates",
                         [{"text": "buy milk"}, {"text": "call mum"}])["update_ids"]
    hook = stock.telegram("POST", f"/_control/{HOOK_TOKEN}/updates", [{"text": "by hook"}])["update_ids"]
    deadline = time.monotonic() + 30
    while len(notes(stock)) < 3 and time.monotonic() < deadline:
        time.sleep(0.3)
    got = notes(stock)
    assert (ids[0], "polling_bot", "buy milk") in got and (ids[1], "polling_bot", "call mum") in got
    assert (hook[0], "webhook_bot", "by hook") in got
    # PTB registered its webhook itself; the stand-in delivered through the proxy
    stats = stock.telegram("GET", f"/_control/{HOOK_TOKEN}/stats")["result"]
    assert stats["webhook_url"].endswith("/webhook_bot/webhook") and stats["webhook_deliveries"] >= 1
    sent = [m["text"] for m in stock.telegram("GET", f"/_control/{POLL_TOKEN}/sent")["result"]]
    assert "noted: buy milk" in sent


def test_v2_under_traffic_loses_nothing_and_measures_the_recreate_gap(stock):
    src = stock.extravars["code_sync_source_dir"]
    with open(os.path.join(src, "notes", "bot.py"), "a", encoding="utf-8") as fh:
        fh.write("\n\nVERSION = 2\n")
    add_changelog_entry(src, "1.1.0", "2026-12-02")
    feed = PollingFeed(stock, POLL_TOKEN, "polling_bot", interval=0.1, **ptb_notes_feed_args()).start()
    load = webhook_load(stock, 20, service="webhook_bot").start()
    try:
        r = stock.run("deploy.yml")
    finally:
        samples = load.stop()
        feed.stop()
    assert r.rc == 0, failed_tasks(r)
    polling = feed.measure()
    # python-telegram-bot's own webhook server answers before it processes:
    # what it queued may still be in the works after the deploy (late, not lost)
    webhook = webhook_outcome(stock, samples, service="webhook_bot", table="notes", service_column="bot",
                              settle=20)
    log = deploy_log(stock)
    gap = GAP.search(log)
    print(f"\nstock PTB app v1 -> v2: polling {polling}; webhook {webhook}; "
          f"recreate gap by the switch {gap.group(1) if gap else None} s")
    assert gap, log
    assert "webhook_bot blue/green behind the proxy (ready: tcp port 8080)" in log
    # the release's record on the server keeps what the switch gave each service
    with open(os.path.join(stock.app_root, "current", "RELEASE.json"), encoding="utf-8") as fh:
        got = json.load(fh)["switch"]
    assert got["guarantees"]["polling_bot"] == f"recreate: down for {gap.group(1)} s"
    assert got["gaps"]["polling_bot"] == pytest.approx(float(gap.group(1)), abs=0.051)
    assert got["gaps"]["webhook_bot"] is None
    assert webhook["requests_sent"] > 50, webhook
    assert webhook["requests_failed"] == 0, webhook
    # what it answered and never stored can only be the queue of an old
    # container killed at its stop timeout, and the deploy log says that it was
    killed = [line for line in log.splitlines() if "was killed" in line]
    assert webhook["answered_not_stored"] == 0 or any(f"{stock.name}_webhook_bot_" in k for k in killed), \
        (webhook, killed)
    assert polling["updates_sent"] > 20
    assert polling["updates_lost"] == 0 and polling["updates_unanswered"] == 0
    assert polling["updates_duplicated"] == 0 and polling["conflicts_409"] == 0
    dup = stock.psql("SELECT count(*) FROM (SELECT update_id, bot FROM notes GROUP BY 1, 2 "
                     "HAVING count(*) > 1) d")
    assert dup == "0"
    # Telegram kept the updates while the poller was down: the longest pause
    # between two processed updates is the gap (plus PTB's own start)
    assert polling["max_gap_s"] >= float(gap.group(1)) - 0.5
