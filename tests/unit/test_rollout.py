"""The rolling switch's rules (plugins/module_utils/rollout.py): how the app
hosts split into batches, which hosts stop the rollout, the serving line;
and the one webhook secret that app servers deploying at once agree on."""

from __future__ import annotations

import threading

import pytest
from ansible.errors import AnsibleFilterError
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.fieldservice.deploy.plugins.filter import rollout as filters
from ansible_collections.fieldservice.deploy.plugins.module_utils import rollout, telegram

HOSTS = ["app1", "app2", "app3", "app4", "app5"]


@pytest.mark.parametrize("size, expected", [
    (1, [["app1"], ["app2"], ["app3"], ["app4"], ["app5"]]),
    ("2", [["app1", "app2"], ["app3", "app4"], ["app5"]]),
    (10, [HOSTS]),
    ("all", [HOSTS]),
    ("ALL", [HOSTS]),
    ("50%", [["app1", "app2", "app3"], ["app4", "app5"]]),  # 2.5 hosts, rounded up
    ("20%", [["app1"], ["app2"], ["app3"], ["app4"], ["app5"]]),
    ("1%", [["app1"], ["app2"], ["app3"], ["app4"], ["app5"]]),  # at least one host
    ("100%", [HOSTS]),
])
def test_batches_keep_the_hosts_order_and_cut_by_count_share_or_all(size, expected):
    assert rollout.batches(HOSTS, size) == expected


@pytest.mark.parametrize("size", [0, "0", -1, "-2", "0%", "101%", "half", "", None, True, 1.5, "2 hosts"])
def test_a_batch_size_that_cannot_be_used_is_refused_naming_the_setting(size):
    with pytest.raises(rollout.RolloutError, match="rollout_batch_size"):
        rollout.batches(HOSTS, size)
    with pytest.raises(AnsibleFilterError, match="rollout_batch_size"):
        filters.rollout_batches(HOSTS, size)


@given(hosts=st.lists(st.text(alphabet="abcdefgh0123456789", min_size=1, max_size=6), unique=True,
                      max_size=30),
       size=st.one_of(st.integers(min_value=1, max_value=40),
                      st.integers(min_value=1, max_value=100).map(lambda p: f"{p}%"),
                      st.just("all")))
def test_every_host_switches_exactly_once_in_its_order_and_no_batch_is_larger_than_asked(hosts, size):
    got = rollout.batches(hosts, size)
    assert [h for batch in got for h in batch] == hosts
    assert all(batch for batch in got)
    n = rollout.batch_size(size, len(hosts))
    assert all(len(batch) <= n for batch in got)
    assert all(len(batch) == n for batch in got[:-1])  # only the last one may be smaller


def test_only_a_passed_health_check_lets_the_rollout_go_on():
    results = {
        "app1": {"status": "PASSED", "reason": ""},
        "app2": {"status": "FAILED", "reason": "admin_bot: not ready"},
        "app3": None,  # its switch failed, or it went unreachable
        "app4": {"status": ""},
        "app5": {"status": "DEGRADED"},
    }
    assert rollout.failures(results) == [
        {"host": "app2", "reason": "admin_bot: not ready"},
        {"host": "app3", "reason": rollout.MISSING["switch"]},
        {"host": "app4", "reason": rollout.MISSING["switch"]},
        {"host": "app5", "reason": "DEGRADED"},
    ]
    assert rollout.failures({"app1": {"status": "PASSED"}}) == []
    assert filters.rollout_failures({"app1": None}, "start") == [
        {"host": "app1", "reason": rollout.MISSING["start"]}]
    assert "before the switch" in rollout.MISSING["start"]
    with pytest.raises(AnsibleFilterError, match="stage"):
        filters.rollout_failures({}, "later")
    with pytest.raises(AnsibleFilterError):
        filters.rollout_failures(["app1"])


def test_the_serving_line_names_each_host_and_its_release():
    assert rollout.serving({"app1": "v2", "app2": "v1", "app3": "", "app4": None}) == \
        "app1: v2, app2: v1, app3: none, app4: ?"
    assert filters.rollout_serving({}) == ""


def test_app_servers_making_a_webhook_secret_at_once_all_get_the_same_one(tmp_path):
    # each app server of a fleet reads its secret on the first one, at the same time
    got, errors = [], []
    start = threading.Barrier(8)

    def one():
        try:
            start.wait()
            got.append(telegram.ensure_secret(str(tmp_path / "webhooks"), "admin_bot"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    secrets = {secret for secret, _ in got}
    assert len(secrets) == 1
    assert (tmp_path / "webhooks" / "admin_bot.secret").read_text().strip() in secrets
    assert sum(changed for _, changed in got) >= 1  # made once (the others found it, or lost the race)
    # and no temporary file is left
    assert sorted(p.name for p in (tmp_path / "webhooks").iterdir()) == ["admin_bot.secret"]


def test_each_host_s_fact_or_none_where_it_never_set_it():
    hostvars = {"app1": {"rollout_result": {"status": "PASSED"}}, "app2": {"other": 1}}
    got = filters.hosts_fact(["app1", "app2"], hostvars, "rollout_result")
    assert got == {"app1": {"status": "PASSED"}, "app2": None}
    # a host whose switch failed before it noted a result stops the rollout
    assert [f["host"] for f in filters.rollout_failures(got)] == ["app2"]
    with pytest.raises(AnsibleFilterError):
        filters.hosts_fact("app1", hostvars, "x")
