# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``watch --config PATH``: the dead-man check of the scheduled backups.

Cron runs it every hour, apart from the backup jobs. A schedule whose last
success (the status file's ``schedules.<name>.last_success``) is older than
its period plus the margin (the configuration's ``watch``) is missing: a
job that failed, that never started (its cron line gone, the program or its
Python broken, the disk full before it could even log) or that hangs. The
status file says so (``schedules.<name>.missing``) and the team is told
(``backup_missing``), again once a day while it lasts; a success clears it.
Before any success, the time the watch first ran counts as the last one.
"""

from __future__ import annotations

import datetime
import logging

from ..configuration import load_config
from ..files import now_text
from ..monitoring import tell
from ..status import read_status, record, update_status

log = logging.getLogger(__name__)

RETELL = 86400.0


def _parse(text) -> datetime.datetime | None:
    try:
        value = datetime.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return value if value.tzinfo else value.astimezone()


def _span(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


def missing(status: dict, periods: dict, margin: float, now: datetime.datetime,
            since: datetime.datetime) -> dict:
    """{schedule: (last success or None, seconds without one)} for each schedule
    of ``periods`` whose last success (or ``since``) is older than its period
    plus ``margin``."""
    out = {}
    schedules = status.get("schedules") or {}
    for name, period in sorted(periods.items()):
        last = _parse(((schedules.get(name) or {}).get("last_success") or {}).get("time"))
        reference = max(x for x in (last, since) if x is not None)
        late = (now - reference).total_seconds()
        if late > float(period) + margin:
            out[name] = (last, late)
    return out


def run(args) -> dict:
    config = load_config(args.config, require_db=False)
    watch = config.get("watch") or {}
    periods = watch.get("periods") or {}
    margin = float(watch.get("margin_s") or 0)
    status_file = config.get("status_file")
    status = read_status(status_file) if status_file else {}
    now = datetime.datetime.now().astimezone()
    since = _parse(status.get("watch_since"))
    if since is None:
        since = now
        record(status_file, "watch_since", now_text())
    late = missing(status, periods, margin, now, since)
    told, cleared = [], []
    for name in sorted(periods):
        entry = ((status.get("schedules") or {}).get(name) or {}).get("missing")
        if name not in late:
            if entry:
                update_status(status_file, "missing", None, name)
                cleared.append(name)
                log.info("%s backups are back: the missing record is cleared", name)
            continue
        last, seconds = late[name]
        seen = (last.isoformat(timespec="seconds") if last
                else "never, watched since " + since.isoformat(timespec="seconds"))
        reason = (f"no successful {name} backup for {_span(seconds)} (last: {seen}; "
                  f"expected every {_span(float(periods[name]))} + {_span(margin)})")
        notified = _parse((entry or {}).get("notified"))
        due = notified is None or (now - notified).total_seconds() >= RETELL
        log.warning("%s", reason)
        record(status_file, "missing", {"since": (entry or {}).get("since") or now_text(),
                                        "reason": reason,
                                        "notified": now_text() if due else (entry or {}).get("notified")},
               name)
        if due:
            tell(config, "backup_missing", reason, who="dead-man check")
            told.append(name)
    return {"missing": sorted(late), "told": told, "cleared": cleared}
