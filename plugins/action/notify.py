# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin: send an event to the team's channels, from the control node.

Documented in plugins/modules/notify.py; the logic is plugins/plugin_utils/notify.py.
"""

from __future__ import annotations

import os

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import deploy_lines, notify
from ansible_collections.fieldservice.deploy.plugins.plugin_utils.control_action import ControlNodeAction

ARGUMENT_SPEC = {
    "channels": {"type": "list", "elements": "raw", "default": []},
    "events": {"type": "list", "elements": "str", "default": list(notify.DEFAULT_EVENTS)},
    "event": {"type": "str", "default": ""},
    "app": {"type": "str", "default": ""},
    "server": {"type": "str", "default": ""},
    "release": {"type": "str", "default": ""},
    "previous": {"type": "str", "default": ""},
    "who": {"type": "str", "default": ""},
    "seconds": {"type": "float"},
    "reason": {"type": "str", "default": ""},
    "log_lines": {"type": "int", "default": 10},
    "retries": {"type": "int", "default": 3},
    "timeout": {"type": "float", "default": 10.0},
}


def log_tail(lines: int) -> list:
    path = deploy_lines.current_log()
    if not path or lines <= 0 or not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for line in fh.readlines()[-lines:]]


class ActionModule(ControlNodeAction):
    ARGUMENT_SPEC = ARGUMENT_SPEC

    def act(self, params: dict) -> dict:
        try:
            channels = notify.check_channels(params["channels"])
            events = notify.check_events(params["events"])
            if params["event"] and params["event"] not in notify.EVENTS:
                raise notify.ConfigError(f"unknown event {params['event']!r}")
        except notify.ConfigError as exc:
            msg = f"Notifications: {exc} (docs/operations.md#notifications)"
            return {"failed": True, "msg": msg, "config_error": msg}
        out = {"changed": False, "results": [], "sent": 0, "undelivered": 0, "channels": len(channels)}
        if not params["event"] or not channels:
            return out
        keys = ("event", "app", "server", "release", "previous", "who", "seconds", "reason")
        event = {key: params[key] for key in keys}
        event["log_tail"] = [] if params["event"].endswith("_start") else log_tail(params["log_lines"])
        results = notify.send(channels, event, events=events, retries=params["retries"],
                              timeout=params["timeout"])
        out.update(results=results, sent=sum(1 for r in results if r["ok"]),
                   undelivered=sum(1 for r in results if not r["ok"]),
                   summary=summary(params["event"], results))
        return out


def summary(event: str, results: list) -> str:
    """One line for the deploy log: each channel sent, or not and why."""
    if not results:
        return ""
    said = [f"{r['channel']} sent" if r["ok"] else
            f"{r['channel']} NOT delivered after {r['attempts']} attempt(s) ({r['error']})" for r in results]
    return f"Notifications ({event}): " + "; ".join(said)
