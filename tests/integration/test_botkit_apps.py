"""The two example apps after they adopt the bot kit, deployed v1 -> v2 under load.

examples/ptb-notes (python-telegram-bot 22) and examples/aiogram-notes
(aiogram 3) are stock apps; examples/botkit-adoption/<app>.patch is the diff
that makes each a zero-downtime one (the README shows it). Here each app gets
its patch and the kit's wheel (built from botkit/ of this checkout), then:

* v1 deploys with the app's own tests run in its environment (which now has
  the kit), readiness from the kit's ``GET /ready`` and the kit's heartbeat
  table checked by the health check;
* v2 deploys under webhook load through the proxy and a steady polling feed:
  the poller is handed over (no overlap, no recreate gap), the webhook bot
  switched blue/green; no failed request, no update lost, answered twice or
  409'd.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from harness import (
    EXAMPLE_LIBRARIES,
    PTB_HOOK_TOKEN,
    PTB_POLL_TOKEN,
    Deployment,
    add_changelog_entry,
    build_botkit_wheel,
    example_source,
    failed_tasks,
    kit_services,
    ptb_notes_feed_args,
    ptb_notes_vars,
)
from traffic import PollingFeed, webhook_load, webhook_outcome

pytestmark = pytest.mark.integration


def deploy_log(d: Deployment) -> str:
    logs = [p for p in d.logs() if os.path.basename(p).startswith("deploy_")]
    with open(logs[-1], encoding="utf-8") as fh:
        return fh.read()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> str:
    out = build_botkit_wheel(str(tmp_path_factory.mktemp("botkit")))
    assert [f for f in os.listdir(out) if f.startswith("fieldservice_botkit-0.1.0-")], os.listdir(out)
    return out


@pytest.fixture(scope="module", params=sorted(EXAMPLE_LIBRARIES))
def adopted(request, tmp_path_factory, wheels):
    app = request.param
    d = Deployment.isolated("fs_kit", lambda n: str(tmp_path_factory.mktemp(n)))
    d.extravars.update(ptb_notes_vars(d.name), app_services=kit_services(d.name),
                       preflight_app_venv_cache=os.path.join(d.workdir, "venvs"))
    example_source(app, d.extravars["code_sync_source_dir"], wheels)
    d.library = EXAMPLE_LIBRARIES[app]
    yield d
    d.destroy()


def test_v1_deploys_with_the_kits_readiness_and_heartbeat(adopted):
    r = adopted.run("deploy.yml", skip_tests=False)
    assert r.rc == 0, failed_tasks(r)
    log = deploy_log(adopted)
    release = adopted.current_release()
    assert "Tests passed: 2 passed" in log, log
    first = "first start (none of it was serving) (ready: http GET /ready)"
    assert f"Switched to {release}: polling_bot {first}; webhook_bot {first}" in log, log
    assert "Health check: PASSED" in log
    # the kit made its tables itself (the app's migration has only its notes)
    tables = adopted.psql("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                          "WHERE schemaname = 'public'")
    assert tables == "alembic_version,botkit_offsets,botkit_webhook_updates,heartbeats,notes"
    beats = adopted.psql("SELECT service, release, state FROM heartbeats ORDER BY service")
    assert beats.splitlines() == [f"polling_bot|{release}|polling", f"webhook_bot|{release}|webhook"]
    logs = subprocess.run(["docker", "logs", f"{adopted.name}_polling_bot_{release}"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    assert f"({adopted.library} polling, release {release}" in logs, logs


def test_v2_under_traffic_hands_the_poller_over_and_loses_nothing(adopted):
    src = adopted.extravars["code_sync_source_dir"]
    with open(os.path.join(src, "notes", "bot.py"), "a", encoding="utf-8") as fh:
        fh.write("\n\nVERSION = 2\n")
    add_changelog_entry(src, "1.1.0", "2026-12-02")
    before = adopted.current_release()
    feed = PollingFeed(adopted, PTB_POLL_TOKEN, "polling_bot", interval=0.1, **ptb_notes_feed_args()).start()
    # from several chats, as a bot's traffic comes (the kit keeps the order within a chat)
    load = webhook_load(adopted, 20, service="webhook_bot", chats=10).start()
    try:
        r = adopted.run("deploy.yml")
    finally:
        samples = load.stop()
        feed.stop()
    assert r.rc == 0, failed_tasks(r)
    release = adopted.current_release()
    assert release != before
    polling = feed.measure()
    webhook = webhook_outcome(adopted, samples, service="webhook_bot", table="notes", service_column="bot")
    print(f"\n{adopted.library} app with the kit, v1 -> v2: polling {polling}; webhook {webhook}")
    log = deploy_log(adopted)
    assert f"Switched to {release}: polling_bot handoff, no overlap (ready: http GET /ready); " \
           "webhook_bot blue/green behind the proxy (ready: http GET /ready)" in log, log
    assert "Health check: PASSED" in log
    assert webhook["requests_sent"] > 50, webhook
    assert webhook["requests_failed"] == 0 and webhook["answered_not_stored"] == 0, webhook
    assert polling["updates_sent"] > 20, polling
    assert polling["updates_lost"] == 0 and polling["updates_unanswered"] == 0, polling
    assert polling["updates_duplicated"] == 0 and polling["conflicts_409"] == 0, polling
    dup = adopted.psql("SELECT count(*) FROM (SELECT update_id, bot FROM notes GROUP BY 1, 2 "
                       "HAVING count(*) > 1) d")
    assert dup == "0"
    # the old poller handed over to the new one: both processed part of the feed
    pollers = adopted.psql("SELECT string_agg(DISTINCT release, ',' ORDER BY release) FROM notes "
                           "WHERE bot = 'polling_bot' AND body LIKE 'feed-%'")
    assert pollers == ",".join(sorted([before, release]))
    beats = adopted.psql("SELECT service, release FROM heartbeats ORDER BY service")
    assert beats.splitlines() == [f"polling_bot|{release}", f"webhook_bot|{release}"]
    # both hooks' tokens stayed on one webhook: the poller never saw a webhook
    stats = adopted.telegram("GET", f"/_control/{PTB_HOOK_TOKEN}/stats")["result"]
    assert stats["webhook_url"].endswith("/webhook_bot/webhook")
