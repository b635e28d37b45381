"""The real deploy playbook against this machine's Docker engine.

Given / When / Then, as ansistrano's own tests read: each test deploys an
isolated copy of the sample app (its own names, directories and ports) and
removes every trace of it afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from harness import (
    APP_SRC,
    PYTHON,
    Deployment,
    changed_tasks,
    crontab,
    docker,
    failed_tasks,
    make_source,
    ran_tasks,
    wait_for,
)
from http_receiver import Receiver
from traffic import SECRET_HEADER, proxy_port

pytestmark = pytest.mark.integration

SEED_ORDER = [
    "START DEPLOYMENT",
    "Creating backup...",
    "Backup created: backup_",
    "Uploading code...",
    "Building Docker images...",
    "Running migrations...",
    "Graceful restart...",
    "Health check: PASSED",
    "DEPLOYMENT SUCCESS",
]
LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] (.*)$")


def log_messages(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    out = []
    for line in lines:
        m = LINE.match(line)
        assert m, f"not in the seed's format: {line!r}"
        out.append(m.group(1))
    return out


def assert_in_order(messages: list[str], expected: list[str]) -> None:
    pos = 0
    for want in expected:
        while pos < len(messages) and not messages[pos].startswith(want):
            pos += 1
        assert pos < len(messages), f"{want!r} missing or out of order in {messages}"
        pos += 1


@pytest.fixture
def deployment(tmp_path_factory):
    d = Deployment.isolated("fs_it", lambda n: str(tmp_path_factory.mktemp(n)), backup_cron_enabled=True)
    yield d
    d.destroy()


class ProcessWatch:
    """Samples the process list of this machine (the server) during a deploy."""

    def __init__(self):
        import threading
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import subprocess
        while not self._stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
            self.seen.update(out.splitlines())
            self._stop.wait(0.2)

    def stop(self) -> set[str]:
        self._stop.set()
        self._thread.join()
        return self.seen


def assert_no_secret(secrets: dict, where: str, text: str) -> None:
    for name, value in secrets.items():
        assert value not in text, f"secret {name} appears in {where}"


def post(url: str, body: dict, headers: dict | None = None) -> int:
    """The status of a POST (an error status too)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def post_full(url: str, body: dict, headers: dict | None = None) -> tuple[int, dict, str]:
    """The status, headers and body of a POST (an error status too)."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def get_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def check_the_webhook_is_guarded(d: Deployment, admin_token: str) -> str:
    """After the first deploy: the admin bot's webhook is registered with its
    secret, only Telegram's deliveries get through the proxy, and nothing
    but the webhook path is public. Returns the secret."""
    url = f"http://{d.name}_proxy:8080/admin_bot/webhook"
    secret_file = os.path.join(d.app_root, "shared", "webhooks", "admin_bot.secret")
    secret = d.webhook_secret("admin_bot")
    assert os.stat(secret_file).st_mode & 0o777 == 0o600 and len(secret) >= 40
    assert os.stat(os.path.dirname(secret_file)).st_mode & 0o777 == 0o700
    stats = d.telegram("GET", f"/_control/{admin_token}/stats")["result"]
    assert stats["webhook_url"] == url and stats["webhook_secret_set"] and stats["webhook_registrations"] == 1
    assert f"Webhook of admin_bot: registered at {url} (no webhook is set)" in log_messages(d.logs()[-1])
    # the app is given the same secret (its own check agrees with the proxy's)
    env = docker("inspect", "--format", "{{json .Config.Env}}", f"{d.name}_admin_bot_{d.current_release()}")
    assert f"WEBHOOK_SECRET={secret}" in json.loads(env)

    hook = f"http://127.0.0.1:{proxy_port(d)}/admin_bot/webhook"
    update = {"message": {"message_id": 1, "date": 0, "chat": {"id": 7, "type": "private"}, "text": "/start"}}
    # forged updates: no header, a wrong one: refused by the proxy, never stored
    assert post(hook, {"update_id": 9_000_001, **update}) == 401
    assert post(hook, {"update_id": 9_000_002, **update}, {SECRET_HEADER: "guessed"}) == 401
    assert post(hook, {"update_id": 9_000_003, **update}, {SECRET_HEADER: secret[:-1]}) == 401
    # the positive control: with the secret it is processed
    assert post(hook, {"update_id": 9_000_004, **update}, {SECRET_HEADER: secret}) == 200
    stored = d.psql("SELECT update_id FROM processed_updates WHERE update_id >= 9000000 ORDER BY 1").split()
    assert stored == ["9000004"]
    refused = docker("logs", f"{d.name}_proxy")
    assert refused.count("webhook refused: no valid X-Telegram-Bot-Api-Secret-Token") == 3

    # an update Telegram delivers (the stand-in posts it to the proxy, with the secret)
    queued = d.telegram("POST", f"/_control/{admin_token}/updates", {"text": "/start", "chat_id": 43})
    ids = queued["update_ids"]
    assert wait_for(lambda: d.psql(f"SELECT count(*) FROM processed_updates WHERE update_id = {ids[0]} "
                                   "AND service = 'admin_bot'") == "1", 20)
    assert d.telegram("GET", f"/_control/{admin_token}/stats")["result"]["webhook_failures"] == 0

    # the readiness endpoint answers the server (the switch used it), not the internet
    base = f"http://127.0.0.1:{proxy_port(d)}"
    assert get_status(f"{base}/admin_bot/ready") == 404 and get_status(f"{base}/admin_bot/health") == 404
    assert get_status(f"{base}/admin_bot/webhook") == 401  # a GET without the secret is refused too
    return secret


def test_deploy_v1_noop_then_v2(deployment):
    d = deployment
    src = os.path.join(d.workdir, "src")
    # secrets in Ansible Vault, as in a real inventory; none may leak
    token = "100002:mst-" + uuid.uuid4().hex
    secrets = {"app_db_password": "vault-db-" + uuid.uuid4().hex,
               "app_service_secret_env": {"admin_bot": {"BOT_TOKEN": "100001:adm-" + uuid.uuid4().hex},
                                          "master_bot": {"BOT_TOKEN": token}}}
    # the team's channels: a Telegram chat of the ops bot (the stand-in Bot API
    # records its sendMessage) and a JSON webhook (a local receiver); their
    # secrets in Vault too
    secrets["vault_ops_token"] = "100003:ops-" + uuid.uuid4().hex
    secrets["vault_hook_token"] = "hook-" + uuid.uuid4().hex
    d.use_vault(secrets)
    flat = {"app_db_password": secrets["app_db_password"],
            "admin token": secrets["app_service_secret_env"]["admin_bot"]["BOT_TOKEN"],
            "master token": token, "ops bot token": secrets["vault_ops_token"],
            "hook token": secrets["vault_hook_token"]}
    receiver = Receiver()
    d.extravars.update(notify_retries=1, notify_channels=[
        {"type": "telegram", "bot_token": "{{ vault_ops_token }}", "chat_id": "-100777",
         "api_base": f"http://127.0.0.1:{d.telegram_port}"},
        {"type": "webhook", "url": receiver.url + "/hook",
         "headers": {"Authorization": "Bearer {{ vault_hook_token }}"}}])
    try:
        _deploy_v1_noop_then_v2(d, src, token, secrets, flat, receiver)
    finally:
        receiver.close()


HOOK_STEPS = ["checks", "backup", "upload", "build", "migrate", "switch", "health_check"]


def write_hooks(folder: str, points: list[str], fail: str | None = None) -> str:
    """Hook files that each note, on the server, what they were given (and one that fails)."""
    os.makedirs(folder, exist_ok=True)
    for point in points:
        with open(os.path.join(folder, f"{point}.yml"), "w", encoding="utf-8") as fh:
            fh.write(f"""---
- name: Make the folder of the notes
  ansible.builtin.file:
    path: "{{{{ app_root }}}}/hooks-ran"
    state: directory
    mode: "0700"

- name: Note what the hook {point} was given
  ansible.builtin.copy:
    dest: "{{{{ app_root }}}}/hooks-ran/{{{{ hook_point }}}}.json"
    content: "{{{{ {{'release': hook_release, 'previous': hook_previous, 'step': hook_step,
                   'result': hook_result, 'at': now().timestamp()}} | to_json }}}}"
    mode: "0600"
""")
    if fail:
        with open(os.path.join(folder, f"{fail}.yml"), "w", encoding="utf-8") as fh:
            fh.write("---\n- name: Warm the cache\n  ansible.builtin.fail:\n"
                     "    msg: the cache server is down\n")
    return folder


def hooks_ran(d: Deployment) -> dict:
    """What each hook that ran noted (and clears the notes)."""
    folder = os.path.join(d.app_root, "hooks-ran")
    if not os.path.isdir(folder):
        return {}
    ran = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            ran[name[:-5]] = json.load(fh)
        os.remove(os.path.join(folder, name))
    return ran


def audit_lines(d: Deployment) -> list[dict]:
    with open(os.path.join(d.app_root, "audit.log"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _deploy_v1_noop_then_v2(d, src, token, secrets, flat, receiver):

    # Given v1 of the app, When it is deployed to a fresh server
    make_source(src, 1)
    watch = ProcessWatch()
    r = d.run("deploy.yml")
    processes = watch.stop()
    assert r.status == "successful", failed_tasks(r)
    assert_no_secret(flat, "Ansible's output", r.stdout.read())
    assert_no_secret(flat, "the process list", "\n".join(processes))
    assert_no_secret(flat, "the deploy log", open(d.logs()[0], encoding="utf-8").read())

    # Then the bots of the new release run and beat, on schema 0001
    rel1 = d.current_release()
    assert rel1 and os.path.isfile(os.path.join(d.app_root, "releases", rel1, "REVISION"))
    names = sorted(c["Names"] for c in d.containers())
    assert names == [f"{d.name}_admin_bot_{rel1}", f"{d.name}_master_bot_{rel1}"]
    assert d.psql("SELECT version_num FROM alembic_version") == "0001"
    rows = d.psql("SELECT service || ':' || release FROM heartbeats ORDER BY 1").split()
    assert rows == [f"admin_bot:{rel1}", f"master_bot:{rel1}"]
    logs = d.logs()
    assert len(logs) == 1 and os.path.basename(logs[0]).startswith("deploy_")
    assert_in_order(log_messages(logs[0]), SEED_ORDER)
    # And the team was told: the start and the success, on both channels
    # (the webhook with its header); the server's audit trail has the deploy
    hook = [(g["body"]["event"], g["body"]["release"]) for g in receiver.got]
    assert hook == [("deploy_start", rel1), ("deploy_success", rel1)]
    assert {g["headers"]["Authorization"] for g in receiver.got} == {"Bearer " + secrets["vault_hook_token"]}
    told = d.telegram("GET", f"/_control/{secrets['vault_ops_token']}/sent")["result"]
    texts = [m["text"] for m in told]
    # the stand-in Bot API starts with this first deploy: the start could not reach it, was
    # retried, said in the deploy log, and failed nothing
    assert len(told) == 1 and str(told[0]["chat_id"]) == "-100777"
    undelivered = ("Notifications (deploy_start): telegram (127.0.0.1) NOT delivered after 2 attempt(s) "
                   "(Connection")
    assert any(m.startswith(undelivered) for m in log_messages(d.logs()[0])), log_messages(d.logs()[0])
    assert texts[-1].startswith(f"✅ {d.name} localhost: deploy succeeded\nrelease: {rel1}\nby: "), texts
    assert "last lines of the log:" in texts[-1] and "Health check: PASSED" in texts[-1]
    assert "Notifications (deploy_success): telegram (127.0.0.1) sent; webhook (127.0.0.1) sent" \
        in log_messages(d.logs()[0])
    [line] = audit_lines(d)
    assert (line["action"], line["release"], line["outcome"]) == ("deploy", rel1, "success")
    assert "@" in line["who"] and line["seconds"] > 10
    assert os.stat(os.path.join(d.app_root, "audit.log")).st_mode & 0o777 == 0o640
    backups = sorted(f for f in os.listdir(os.path.join(d.backup_root, "deploy")) if f.endswith(".sql.gz"))
    assert len(backups) == 1 and re.fullmatch(r"backup_\d{8}_\d{6}\.sql\.gz", backups[0])
    assert os.stat(os.path.join(d.backup_root, "deploy", backups[0])).st_mode & 0o777 == 0o600

    # And the polling bot answers an update sent through the Bot API
    d.telegram("POST", f"/_control/{token}/updates", {"text": "hello", "chat_id": 42})
    sent = wait_for(lambda: d.telegram("GET", f"/_control/{token}/sent")["result"], 20)
    assert sent and "hello" in str(sent)

    # And the webhook is registered with a secret that only Telegram's deliveries carry
    admin_token = secrets["app_service_secret_env"]["admin_bot"]["BOT_TOKEN"]
    flat["webhook secret"] = check_the_webhook_is_guarded(d, admin_token)
    assert_no_secret(flat, "the deploy log", open(d.logs()[-1], encoding="utf-8").read())

    # When the same code is deployed again
    time.sleep(1.1)  # a new log file name
    r = d.run("deploy.yml")
    assert r.status == "successful", failed_tasks(r)
    # Then nothing changes on the server: no backup, no build, no restart
    assert changed_tasks(r) == []
    # and the provisioning, unchanged since the first deploy, is not redone
    assert "Run the database container" not in ran_tasks(r)
    assert d.current_release() == rel1
    assert len([f for f in os.listdir(os.path.join(d.backup_root, "deploy")) if f.endswith(".gz")]) == 1
    noop_log = log_messages(d.logs()[-1])
    assert noop_log[0] == "START DEPLOYMENT" and noop_log[-1] == "DEPLOYMENT SUCCESS"
    assert "Health check: PASSED" in noop_log and not any(m.startswith("Creating backup") for m in noop_log)
    assert "Webhook of admin_bot: registered as it should be" in noop_log
    assert "Proxy: refused 4 webhook request(s) without Telegram's secret header in the last 24 h " \
        "(forged or misdirected; docs/security.md)" in noop_log
    assert_no_secret(flat, "Ansible's output", r.stdout.read())
    # a deploy of nothing new says so, with no start
    assert [g["body"]["event"] for g in receiver.got][2:] == ["deploy_success"]
    assert receiver.got[-1]["body"]["reason"] == "nothing new: already serving"
    assert [(a["outcome"], a["detail"]) for a in audit_lines(d)][1:] == \
        [("success", "nothing new: already serving")]

    # When a deploy of new code is refused by a pre-deploy check, the team is
    # told why, with the log's last lines, and the audit trail has it; the
    # deploy log says the error once
    time.sleep(1.1)
    make_source(src, 2)
    r = d.run("deploy.yml", preflight_min_free_app_mb=10**8)
    assert r.status == "failed"
    failed = receiver.got[-1]["body"]
    assert failed["event"] == "deploy_failure" and failed["previous"] == rel1
    assert failed["reason"].startswith("Pre-deploy check 'disk' failed")
    assert "preflight_check_disk" in failed["reason"]
    assert failed["log_tail"][-1].startswith("[") and "ERROR: " in failed["log_tail"][-1]
    assert d.telegram("GET", f"/_control/{secrets['vault_ops_token']}/sent")["result"][-1]["text"] \
        .startswith(f"❌ {d.name} localhost: deploy FAILED")
    refused_log = open(d.logs()[-1], encoding="utf-8").read()
    assert refused_log.count("ERROR: ") == 1 and refused_log.rstrip().endswith("DEPLOYMENT FAILED")
    assert (audit_lines(d)[-1]["outcome"], audit_lines(d)[-1]["release"]) == ("failure", failed["release"])
    assert_no_secret(flat, "Ansible's output", r.stdout.read())
    assert_no_secret(flat, "the deploy log", refused_log)
    assert d.current_release() == rel1
    make_source(src, 1)

    # When maintenance mode is turned on
    r = d.run("maintenance.yml", state="on", message="Back at 15:00")
    assert r.status == "successful", failed_tasks(r)
    master = f"{d.name}_master_bot_{rel1}"
    assert docker("inspect", "--format", "{{.State.Paused}} {{.State.Running}}", master) == "true true"
    # Then a webhook update gets 503 with the page and Retry-After (a forged one still 401)
    hook = f"http://127.0.0.1:{proxy_port(d)}/admin_bot/webhook"
    update = {"message": {"message_id": 1, "date": 0, "chat": {"id": 8, "type": "private"}, "text": "/start"}}
    status, headers, body = post_full(hook, {"update_id": 9_100_001, **update},
                                      {SECRET_HEADER: flat["webhook secret"]})
    assert (status, headers.get("Retry-After")) == (503, "120") and "Back at 15:00" in body, (status, body)
    assert post(hook, {"update_id": 9_100_002, **update}) == 401
    # and what Telegram sends meanwhile waits: the webhook's update (retried on the 503) and
    # the polling bot's (it is paused)
    waiting = {"admin_bot": d.telegram("POST", f"/_control/{admin_token}/updates",
                                       {"text": "during maintenance", "chat_id": 44})["update_ids"][0],
               "master_bot": d.telegram("POST", f"/_control/{token}/updates",
                                        {"text": "during maintenance", "chat_id": 45})["update_ids"][0]}

    def stored(service: str) -> str:
        return d.psql(f"SELECT count(*) FROM processed_updates WHERE service = '{service}' "
                      f"AND update_id = {waiting[service]}")

    def refused_by_maintenance() -> int:
        return d.telegram("GET", f"/_control/{admin_token}/stats")["result"]["webhook_failures"]

    assert wait_for(lambda: refused_by_maintenance() >= 2, 20)
    assert stored("admin_bot") == "0" and stored("master_bot") == "0"

    # When a setting of the provisioning changes (the daily backup's hour), the
    # same code deployed again - in maintenance mode - applies it, and only it
    time.sleep(1.1)
    r = d.run("deploy.yml", backup_daily_hour="3")
    assert r.status == "successful", failed_tasks(r)
    assert changed_tasks(r) == ["Schedule the backups", "Write the provisioning stamp"], changed_tasks(r)
    assert crontab().splitlines()[crontab().splitlines().index(f"#Ansible: {d.name} backup daily") + 1] \
        .startswith("0 3 * * * ")
    # and says it is in maintenance mode; the health check knows it, the bot stays paused
    during = log_messages(d.logs()[-1])
    assert any(m.startswith("Maintenance mode is on (since ") for m in during), during
    assert any(m.startswith("Health check: PASSED; maintenance mode is on since ") for m in during), during
    assert docker("inspect", "--format", "{{.State.Paused}}", master) == "true"

    # When maintenance mode ends, nothing that waited is lost, nor taken twice
    r = d.run("maintenance.yml", state="off")
    assert r.status == "successful", failed_tasks(r)
    assert docker("inspect", "--format", "{{.State.Paused}}", master) == "false"
    assert wait_for(lambda: stored("admin_bot") == "1" and stored("master_bot") == "1", 30)
    after = post_full(hook, {"update_id": 9_100_003, **update}, {SECRET_HEADER: flat["webhook secret"]})
    assert after[0] == 200
    assert [(a["action"], a["outcome"]) for a in audit_lines(d)][-3:] == \
        [("maintenance_on", "success"), ("deploy", "success"), ("maintenance_off", "success")]

    # When the admin bot's webhook was pointed elsewhere and one was set for
    # the polling bot, the health check says both
    elsewhere = "http://127.0.0.1:9/elsewhere"
    d.telegram_api(admin_token, "setWebhook", url=elsewhere, secret_token="other")
    d.telegram_api(token, "setWebhook", url=elsewhere)
    r = d.run("health.yml")
    report = [e["event_data"]["res"]["msg"] for e in r.events
              if e.get("event") == "runner_on_ok" and e["event_data"].get("task") == "Show the report"][0]
    assert report["status"] == "FAILED", report
    failures = " | ".join(report["failures"])
    assert f"admin_bot: its webhook points at {elsewhere}, not http://{d.name}_proxy:8080/admin_bot/webhook" \
        in failures, failures
    assert "master_bot: a webhook is set" in failures and "409" in failures, failures
    d.telegram_api(token, "deleteWebhook")

    # When a long-lived container stopped (the proxy, by hand), the same
    # deploy with the same settings provisions again and brings it back
    docker("stop", f"{d.name}_proxy")
    time.sleep(1.1)
    r = d.run("deploy.yml", backup_daily_hour="3")
    assert r.status == "successful", failed_tasks(r)
    assert "Run the database container" in ran_tasks(r)
    assert docker("inspect", "--format", "{{.State.Running}}", f"{d.name}_proxy") == "true"
    # and it put the webhook back where it belongs, with its secret
    assert f"Webhook of admin_bot: registered at http://{d.name}_proxy:8080/admin_bot/webhook " \
        f"(it points at {elsewhere})" in log_messages(d.logs()[-1])
    assert "Health check: PASSED" in log_messages(d.logs()[-1])

    # When v2 is deployed with a before_build hook that fails: the deploy stops before the
    # build, naming the hook; the on_failure hook gets the reason; v1 keeps serving
    time.sleep(1.1)
    make_source(src, 2)
    failing = write_hooks(os.path.join(d.workdir, "hooks-failing"), ["after_upload", "on_failure"],
                          fail="before_build")
    r = d.run("deploy.yml", hooks_dir=failing)
    assert r.status == "failed"
    reason = receiver.got[-1]["body"]["reason"]
    assert f"Hook before_build ({failing}/before_build.yml) failed at 'Warm the cache': " \
        "the cache server is down; the deploy stopped before its build step" in reason, reason
    assert reason.endswith(f"The serving release {rel1} was not changed."), reason
    ran = hooks_ran(d)
    assert sorted(ran) == ["after_upload", "on_failure"]
    assert ran["on_failure"]["result"] == reason and ran["on_failure"]["previous"] == rel1
    assert d.current_release() == rel1 and len(d.containers()) == 2
    assert not os.path.exists(os.path.join(d.app_root, "releases", ran["after_upload"]["release"]))

    # When v2 (a new migration) is deployed, with a hook around every step
    time.sleep(1.1)
    points = [f"{w}_{s}" for s in HOOK_STEPS for w in ("before", "after")]
    hooks = write_hooks(os.path.join(d.workdir, "hooks"), points)
    watch = ProcessWatch()
    r = d.run("deploy.yml", hooks_dir=hooks)
    processes = watch.stop()
    assert r.status == "successful", failed_tasks(r)
    assert_no_secret(flat, "Ansible's output", r.stdout.read())
    assert_no_secret(flat, "the process list", "\n".join(processes))
    assert_no_secret(flat, "the deploy log", open(d.logs()[-1], encoding="utf-8").read())
    rel2 = d.current_release()
    assert rel2 and rel2 != rel1
    # each hook ran once, in the order of the steps, with the release, the previous one and the step
    ran = hooks_ran(d)
    assert sorted(ran, key=lambda p: ran[p]["at"]) == points
    assert {(h["release"], h["previous"], h["step"]) for h in ran.values()} == \
        {(rel2, rel1, s) for s in HOOK_STEPS}
    assert ran["after_health_check"]["result"] == "PASSED"
    assert f"Hooks ({hooks}): " + ", ".join(points) in log_messages(d.logs()[-1])
    names = sorted(c["Names"] for c in d.containers())
    assert names == [f"{d.name}_admin_bot_{rel2}", f"{d.name}_master_bot_{rel2}"]
    assert d.psql("SELECT version_num FROM alembic_version") == "0002"
    assert_in_order(log_messages(d.logs()[-1]), SEED_ORDER)
    # both releases kept, v1's image kept for a rollback without a rebuild
    assert {rel1, rel2} <= set(os.listdir(os.path.join(d.app_root, "releases")))
    assert docker("image", "inspect", f"{d.name}:{rel1}", "--format", "{{.Id}}")

    # And playbooks/audit.yml shows the last lines of the trail
    r = d.run("audit.yml", lines=2)
    assert r.status == "successful", failed_tasks(r)
    shown = [e["event_data"]["res"]["msg"] for e in r.events
             if e.get("event") == "runner_on_ok" and e["event_data"].get("task") == "Show them"][0]
    assert len(shown) == 2 and f"deploy {rel2} success" in shown[-1], shown


def _slow_build_step(workdir: str) -> tuple[str, str]:
    """An overlay whose Dockerfile has a RUN step of 8 s, never in the build cache."""
    overlay = os.path.join(workdir, "slow-build")
    os.makedirs(overlay, exist_ok=True)
    with open(os.path.join(APP_SRC, "Dockerfile"), encoding="utf-8") as fh:
        dockerfile = fh.read()
    step = f"RUN sleep 8 && echo {uuid.uuid4().hex}"
    assert "\nUSER app\n" in dockerfile
    with open(os.path.join(overlay, "Dockerfile"), "w", encoding="utf-8") as fh:
        fh.write(dockerfile.replace("\nUSER app\n", f"\n{step}\nUSER app\n"))
    return overlay, step


def _hold_the_backup_lock(d: Deployment, log_name: str, seconds: float) -> threading.Thread:
    """Another backup, as cron's would: the server's backup lock, taken as soon as the
    backup folder exists and held until `seconds` after the deploy said "Creating backup..."."""
    def hold():
        lock_path = os.path.join(d.backup_root, ".fs_backup.lock")
        deadline = time.monotonic() + 600
        while not os.path.isdir(d.backup_root) and time.monotonic() < deadline:
            time.sleep(0.05)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            while "Creating backup..." not in d.output(log_name) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(seconds)
        finally:
            os.close(fd)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_the_console_of_a_real_deploy(deployment, monkeypatch):
    # Given v1 of the app with a slow build step, and another backup that holds the server's
    # backup lock for a while, When ansible-playbook playbooks/deploy.yml runs as a person
    # runs it (the checkout's ansible.cfg: the console callback, no -v)
    d = deployment
    overlay, slow_step = _slow_build_step(d.workdir)
    make_source(os.path.join(d.workdir, "src"), 1, overlays=(overlay,))
    password = "console-db-" + uuid.uuid4().hex
    monkeypatch.setenv("DEPLOY_CONSOLE_PROGRESS_INTERVAL", "3")  # the run's environment (harness env())
    with open(os.path.join(d.workdir, "console.out"), "w", encoding="utf-8"):
        pass
    holder = _hold_the_backup_lock(d, "console.out", 7)
    proc = d.popen("deploy.yml", "console.out", app_db_password=password)
    assert proc.wait(timeout=900) == 0, d.output("console.out")[-4000:]
    holder.join(timeout=60)
    out = d.output("console.out")
    # Then the terminal has the deploy log's lines, in the seed's order, each step with its duration
    messages = [m.group(1) for m in map(LINE.match, out.splitlines()) if m]
    assert_in_order(messages, SEED_ORDER)
    for step in ("Creating backup...", "Uploading code...", "Building Docker images...",
                 "Running migrations...", "Graceful restart..."):
        assert any(re.fullmatch(re.escape(step) + r" done \d+\.\d s|" + re.escape(step)
                                + r" done \d+ min \d\d s", m) for m in messages), (step, messages)
    assert re.fullmatch(r"DEPLOYMENT SUCCESS in [\d.]+ s|DEPLOYMENT SUCCESS in \d+ min \d\d s", messages[-1])
    # the first deploy provisions the server (~30 s of short tasks here): "still running", not silence
    running = [m for m in messages if "still running" in m]
    assert running, messages
    shape = r"(.*\.\.\. )?still running, ([\d.]+ s|\d+ min \d\d s): .+"
    assert all(re.fullmatch(shape, m) for m in running), running
    # the long steps say how far they have come: what the backup waits for, the build's step
    # (numbered as the engine numbers it in the build's own output)
    assert any(re.fullmatch(r"Creating backup\.\.\. still running, [\d.]+ s: waiting for the backup lock "
                            r"\(another backup runs\)", m) for m in running), running
    building = [m for m in running if m.startswith("Building Docker images... still running")]
    steps = [re.search(r": step (\d+) of (\d+): (.*)$", m) for m in building]
    slow = [m for m in steps if m and m.group(3) == slow_step]
    assert slow, building
    with open(os.path.join(overlay, "Dockerfile"), encoding="utf-8") as fh:
        instructions = re.findall(r"^([A-Z]+) ?(.*)$", fh.read(), re.M)  # continuation lines are indented
    assert (int(slow[0].group(1)), int(slow[0].group(2))) == \
        ([f"{k} {v}" for k, v in instructions].index(slow_step) + 1, len(instructions)), instructions
    # and not the rest of Ansible's output, which is in a file beside the deploy log
    assert "TASK [" not in out and "PLAY RECAP" not in out
    (log,) = d.logs()
    full = log[: -len(".log")] + ".ansible.log"
    assert f"Ansible's output: {os.path.relpath(full)}" in out or f"Ansible's output: {full}" in out
    assert os.stat(full).st_mode & 0o777 == 0o640
    with open(full, encoding="utf-8") as fh:
        text = fh.read()
    assert "TASK [fieldservice.deploy.backup : Dump the database before the deploy]" in text \
        or "TASK [backup : Dump the database before the deploy]" in text, text[:2000]
    assert re.search(r"localhost\s*: ok=\d+\s+changed=[1-9]", text)
    # no secret anywhere
    for where, content in (("the console", out), ("the full output", text),
                           ("the deploy log", open(log, encoding="utf-8").read())):
        assert password not in content, where


def test_bad_settings_fail_before_anything_changes(deployment):
    d = deployment
    make_source(os.path.join(d.workdir, "src"), 1)
    r = d.run("deploy.yml", app_db_password="")
    assert r.status == "failed"
    assert any("app_db_password" in t for t in failed_tasks(r)), failed_tasks(r)
    r = d.run("deploy.yml", app_services=[{"name": "x"}])
    assert r.status == "failed"
    assert any("command" in t for t in failed_tasks(r)), failed_tasks(r)
    assert not os.path.exists(d.app_root)
    assert d.containers(role="database", all_=True) == []


def test_failing_app_tests_stop_the_deploy_before_the_server(deployment, tmp_path):
    d = deployment
    broken = tmp_path / "broken"
    (broken / "tests").mkdir(parents=True)
    (broken / "tests" / "test_zz_broken.py").write_text("def test_broken():\n    assert 1 == 2\n")
    make_source(os.path.join(d.workdir, "src"), 1, overlays=(str(broken),))
    # the app's own command, on the broken test only (the whole suite of the
    # sample app takes a minute and proves nothing more here)
    r = d.run("deploy.yml", skip_tests=False,
              preflight_test_command=[PYTHON, "-m", "pytest", "-q", "-x", "tests/test_zz_broken.py"])
    assert r.status == "failed"
    assert any("tests did not pass" in t and "skip_tests=true" in t for t in failed_tasks(r)), failed_tasks(r)
    assert not os.path.exists(d.app_root)
    assert d.containers(role="database", all_=True) == []
