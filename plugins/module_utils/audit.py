# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The audit trail on the server: one JSON line per action of the tool.

The file is only ever appended to (one ``write`` of one line on a descriptor
opened with ``O_APPEND``, so lines of runs at once never mix); nothing in
the tool rewrites or truncates it.
"""

from __future__ import annotations

import json
import os
import time

FIELDS = ("time", "who", "action", "release", "outcome", "seconds", "detail")
MAX_DETAIL = 2000


def entry(action: str, outcome: str, who: str = "", release: str = "", seconds=None, detail: str = "",
          now=None) -> dict:
    """The line's fields, in order (``time`` in UTC, ISO 8601)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))
    detail = " ".join(str(detail or "").split())
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 1] + "…"
    return {"time": stamp, "who": who or "?", "action": action, "release": release or "",
            "outcome": outcome, "seconds": None if seconds in (None, "") else round(float(seconds), 1),
            "detail": detail}


def append(path: str, record: dict) -> bool:
    """Append one line (the file 0640 when new). No folder (nothing of the
    app is on the server yet: a run refused before it changed anything):
    nothing is written, False."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        return False
    line = (json.dumps(record, ensure_ascii=False, separators=(", ", ": ")) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def tail(path: str, lines: int = 20, block: int = 65536) -> list:
    """The last ``lines`` entries (oldest first); a line that is not JSON is
    given as ``{"unreadable": <text>}``. No file: none."""
    if lines <= 0:
        return []
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return []
    with fh:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        data = b""
        while end > 0 and data.count(b"\n") <= lines:
            start = max(0, end - block)
            fh.seek(start)
            data = fh.read(end - start) + data
            end = start
    out = []
    for raw in data.splitlines()[-lines:]:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            continue
        try:
            value = json.loads(text)
            out.append(value if isinstance(value, dict) else {"unreadable": text})
        except ValueError:
            out.append({"unreadable": text})
    return out


def line_text(record: dict) -> str:
    """One entry as a person reads it."""
    if "unreadable" in record:
        return f"(not an audit line) {record['unreadable']}"
    took = f" {record['seconds']:g} s" if isinstance(record.get("seconds"), (int, float)) else ""
    release = f" {record['release']}" if record.get("release") else ""
    detail = f": {record['detail']}" if record.get("detail") else ""
    return (f"{record.get('time', '?')} {record.get('who', '?')} {record.get('action', '?')}{release} "
            f"{record.get('outcome', '?')}{took}{detail}")
