# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter plugins of the rolling switch (roles/rollout): the batches, the
hosts of a batch that stop the rollout, and the line saying which host
serves which release. The logic is in plugins/module_utils/rollout.py.
Documented in the .yml files beside this one.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.fieldservice.deploy.plugins.module_utils import rollout


def rollout_batches(hosts, size) -> list[list[str]]:
    """The hosts cut into batches of ``size`` (a count, ``N%`` or ``all``)."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("rollout_batches expects a list of hosts")
    try:
        return rollout.batches(hosts, size)
    except rollout.RolloutError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def rollout_failures(results, stage: str = "switch") -> list[dict]:
    """The hosts whose switch or health check failed (or that failed before
    the ``start`` of the rollout), with the reason."""
    if not isinstance(results, dict):
        raise AnsibleFilterError("rollout_failures expects a mapping of host to result")
    try:
        return rollout.failures(results, str(stage))
    except rollout.RolloutError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def hosts_fact(hosts, hostvars, name: str) -> dict:
    """Each host mapped to its fact ``name``, or None where it has none (a
    host that failed before it set it)."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("hosts_fact expects a list of hosts")
    out = {}
    for host in hosts:
        facts = hostvars[host]
        out[str(host)] = facts[name] if name in facts else None
    return out


def rollout_serving(releases) -> str:
    """``app1: v2, app2: v1`` from a mapping of host to the release it serves."""
    if not isinstance(releases, dict):
        raise AnsibleFilterError("rollout_serving expects a mapping of host to release")
    return rollout.serving(releases)


class FilterModule:
    def filters(self):
        return {
            "rollout_batches": rollout_batches,
            "rollout_failures": rollout_failures,
            "hosts_fact": hosts_fact,
            "rollout_serving": rollout_serving,
        }
