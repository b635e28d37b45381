# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rolling switch over several app hosts: how the hosts split into
batches, and which hosts of a batch stopped the rollout.

Plain Python, shared by the rollout filters (plugins/filter/rollout.py) and
unit-tested on its own.
"""

from __future__ import annotations

import math
import re

SETTING = "rollout_batch_size"


class RolloutError(ValueError):
    """A setting of the rollout that cannot be used; the message names it."""


def batch_size(size, hosts: int) -> int:
    """Hosts per batch for ``size``: a count (``2``), a share of the hosts
    (``"50%"``, rounded up, at least one host) or ``"all"``."""
    text = str(size).strip().lower()
    if text == "all":
        return max(hosts, 1)
    share = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
    if share:
        percent = float(share.group(1))
        if not 0 < percent <= 100:
            raise RolloutError(f"{SETTING} {size!r}: a share must be more than 0 % and at most 100 %")
        return max(1, math.ceil(hosts * percent / 100))
    if isinstance(size, bool) or not re.fullmatch(r"\d+", text) or int(text) < 1:
        raise RolloutError(f"{SETTING} {size!r}: give a number of hosts (1 or more), a share such as "
                           "'50%', or 'all'")
    return int(text)


def batches(hosts, size) -> list[list[str]]:
    """The hosts in the order given, cut into batches of ``batch_size``."""
    hosts = [str(h) for h in hosts]
    if len(set(hosts)) != len(hosts):
        raise RolloutError("the rollout's hosts must be distinct")
    n = batch_size(size, len(hosts))
    return [hosts[i:i + n] for i in range(0, len(hosts), n)]


MISSING = {
    "switch": "it failed before its health check (its switch failed, or it became unreachable)",
    "start": "it failed before the switch (its error is above), or it became unreachable",
}


def failures(results: dict, stage: str = "switch") -> list[dict]:
    """The hosts that stop the rollout, each with its reason.

    ``results`` maps each host to what it left: after its switch and health
    check ``{"status": "PASSED"|..., "reason": ...}``; at the ``start`` of
    the rollout ``{"status": "PASSED"}`` from each host still deploying.
    Nothing (None) when the host never got that far. Only ``PASSED`` lets
    the rollout go on.
    """
    if stage not in MISSING:
        raise RolloutError(f"unknown rollout stage {stage!r}")
    out = []
    for host, result in results.items():
        if not isinstance(result, dict) or not result.get("status"):
            out.append({"host": str(host), "reason": MISSING[stage]})
        elif result["status"] != "PASSED":
            out.append({"host": str(host), "reason": str(result.get("reason") or result["status"])})
    return out


def serving(releases: dict) -> str:
    """``app1: v2, app2: v1``: the release each host serves (``none`` when no
    release serves there, ``?`` when it cannot be told)."""
    return ", ".join(f"{host}: {release or 'none'}" if release is not None else f"{host}: ?"
                     for host, release in releases.items())
