"""Zero downtime, proven under traffic through a real deploy.

Given v1 of the sample app serving (the webhook bot behind the proxy, the
polling bot polling the stand-in Bot API), when ``playbooks/deploy.yml``
ships v2 (a new migration, new containers) while webhook updates arrive
through the proxy at a steady rate and updates are queued for the polling
bot at a steady pace, then no webhook request fails, every answered update is
stored, and the polling bot loses no update, answers none twice and never
overlaps with its successor (no 409 Conflict).

The numbers at 200 requests/s are ``bench/zero_downtime.py`` and
``bench/polling_handoff.py``; this test runs a smaller load (not timed).
"""

from __future__ import annotations

import pytest
from traffic import TEST_RATE as RATE

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployed_under_traffic(v1_then_v2_under_traffic):
    """The deployment of conftest.py (shared with test_rollback, which runs
    after this module on the same worker)."""
    return v1_then_v2_under_traffic


def test_webhook_requests_never_fail_during_a_deploy(deployed_under_traffic):
    r = deployed_under_traffic
    assert r["v2"] != r["v1"]
    web = r["webhook"]
    assert web["requests_sent"] >= RATE * 10, web  # the deploy took a while, under load all along
    assert web["requests_failed"] == 0, web
    assert web["answered_not_stored"] == 0, web
    # the new release serves the webhook now, the old containers are gone
    names = sorted(c["Names"] for c in r["d"].containers())
    assert names == sorted(f"{r['d'].name}_{s}_{r['v2']}" for s in ("admin_bot", "master_bot"))
    # and both releases answered part of the load: the switch happened under it
    releases = set(r["d"].psql("SELECT DISTINCT release FROM processed_updates WHERE service = 'admin_bot' "
                               "AND update_id >= 1000000").split())
    assert releases == {r["v1"], r["v2"]}, releases


def test_polling_bot_hands_over_without_overlap_or_loss(deployed_under_traffic):
    poll = deployed_under_traffic["polling"]
    assert poll["updates_sent"] >= 100, poll
    assert poll["feed_errors"] == 0, poll
    assert poll["still_queued"] == 0, poll
    assert poll["updates_lost"] == 0, poll
    assert poll["updates_unanswered"] == 0, poll
    assert poll["updates_duplicated"] == 0, poll
    assert poll["conflicts_409"] == 0, poll
    # both releases did part of the work: the handoff happened under the feed
    d = deployed_under_traffic["d"]
    releases = set(d.psql("SELECT DISTINCT release FROM processed_updates WHERE service = 'master_bot' "
                          "AND text LIKE 'feed-%'").split())
    assert len(releases) == 2, releases
