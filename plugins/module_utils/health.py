# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health check of the deployed services: the logic, pure and unit tested.

A check looks, for every service, at its container (exists, running, not
restarting, restart count not rising during the check: a crash loop), at its
logs since the container started (no line matching a critical pattern) and at
its heartbeat row (present, fresh, written by the expected release); and at the
database (``SELECT 1`` answers).

The heartbeat is a choice per service (``heartbeat``): ``required``, ``off``,
or ``auto``: checked when the heartbeat table exists and has a row of the
service (of any release: the app writes heartbeats), else not used. Without
it, a service is healthy when it runs, does not restart, logs no critical
line, and the database answers.

The functions below take already fetched data (container inspect dicts, log
text, psql output, the database probe) and return plain dicts, so they are
tested without Docker. ``run_health_check`` fetches the data through a client
(``docker_api.DockerClient`` or anything with the same three methods) and
retries until everything passes or the timeout expires. Critical log lines and
a crash loop cannot heal within one check, so they fail at once.

Plain stdlib, but for the Bot API calls of the webhook checks (module_utils/telegram:
ansible's open_url).
"""

from __future__ import annotations

import calendar
import os
import re
import time

from ansible_collections.fieldservice.deploy.plugins.module_utils import oneoff, telegram
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import (
    DockerAPIError,
    DockerError,
)

PASSED = "PASSED"
FAILED = "FAILED"

DEFAULT_CRITICAL_PATTERNS = [r"\bCRITICAL\b", r"Traceback \(most recent call last\)", r"\bFATAL\b"]
DEFAULTS = {
    "db_user": "postgres",
    "db_name": "postgres",
    "heartbeat_table": "heartbeats",
    "heartbeat_max_age": 30.0,
    "critical_patterns": DEFAULT_CRITICAL_PATTERNS,
    "timeout": 60.0,
    "interval": 2.0,
    "webhooks": [],
    "webhook_max_pending": 100,
    "proxy_container": None,
    "refused_window": 86400.0,
    "maintenance": False,
    "db_host": None,
    "db_port": 5432,
    "db_password": None,
    "db_image": "postgres:15",
    "db_network": None,
}
HEARTBEAT_SQL = "SELECT service, release, EXTRACT(EPOCH FROM (now() - beat_at)) FROM {table}"
TABLE_SQL = "SELECT to_regclass('{table}') IS NOT NULL"
HEARTBEAT_MODES = ("auto", "required", "off")
PING_SQL = "SELECT 1"

MAX_CRITICAL_LINES = 5
MAX_LINE_LENGTH = 200
MAX_ERROR_LENGTH = 300

# Order of the failures in the report; the first one is the report's reason.
PRIO_CRITICAL = 0
PRIO_CRASH_LOOP = 1
PRIO_CONTAINER = 2
PRIO_DOCKER = 3
PRIO_DATABASE = 4
PRIO_HEARTBEAT = 5
PRIO_WEBHOOK = 6
REFUSED_MARK = "webhook refused: "  # what the proxy logs for a request without the secret (roles/proxy)

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}\Z")
_DOCKER_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?\Z"
)


# -- small helpers ------------------------------------------------------------


def valid_table_name(name: str) -> bool:
    """An unquoted SQL identifier, optionally schema-qualified (``schema.table``)."""
    if not isinstance(name, str) or not name:
        return False
    parts = name.split(".")
    return len(parts) <= 2 and all(_IDENT.match(p) for p in parts)


def heartbeat_query(table: str = "heartbeats") -> str:
    if not valid_table_name(table):
        raise ValueError(f"heartbeat_table {table!r} is not a valid SQL identifier")
    return HEARTBEAT_SQL.format(table=table)


def table_query(table: str = "heartbeats") -> str:
    """Whether the heartbeat table exists (``t`` or ``f``)."""
    if not valid_table_name(table):
        raise ValueError(f"heartbeat_table {table!r} is not a valid SQL identifier")
    return TABLE_SQL.format(table=table)


def psql_command(db_user: str, db_name: str, sql: str, host: str | None = None, port=5432) -> list[str]:
    where = ["-h", str(host), "-p", str(port)] if host else []
    return ["psql", "-X", "-At", "-F", "|", "-v", "ON_ERROR_STOP=1", *where, "-U", db_user, "-d", db_name,
            "-c", sql]


def compile_patterns(patterns) -> list[re.Pattern]:
    compiled = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):
            compiled.append(pattern)
            continue
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(
                f"critical pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from exc
    return compiled


def parse_docker_time(value) -> int | None:
    """Docker's RFC 3339 time (nanoseconds allowed) as integer nanoseconds since the epoch.

    None for an empty or unparsable value. An int is returned as is.
    """
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    m = _DOCKER_TIME.match(value.strip())
    if not m:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zone = m.group(7), m.group(8)
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def ns_to_since(ns: int) -> str:
    """Integer nanoseconds as the ``seconds.nanoseconds`` form of the logs API ``since``."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return f"{seconds}.{nanos:09d}"


def split_log_line(line: str) -> tuple[int | None, str]:
    """``(timestamp_ns, text)`` of a log line fetched with timestamps, (None, line) otherwise."""
    head, sep, rest = line.partition(" ")
    if sep:
        ts = parse_docker_time(head)
        if ts is not None:
            return ts, rest
    return None, line


def truncate(text: str, limit: int = MAX_LINE_LENGTH) -> str:
    text = text.rstrip("\r\n")
    return text if len(text) <= limit else text[:limit] + "..."


def first_line(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return truncate(line.strip(), limit)
    return ""


def _lines(text: str | None) -> list[str]:
    """Lines split on newlines only (str.splitlines also splits on \\x1c-\\x1e, \\x0b, \\x0c...)."""
    return [line.rstrip("\r") for line in (text or "").split("\n")]


def _fmt_seconds(value: float) -> str:
    return f"{value:g}"


# -- logs ---------------------------------------------------------------------


def critical_lines(log_text: str, patterns, since=None, limit: int = MAX_CRITICAL_LINES,
                   max_len: int = MAX_LINE_LENGTH) -> list[str]:
    """The first ``limit`` lines matching a critical pattern, truncated to ``max_len``.

    With ``since`` (Docker time string or integer nanoseconds, typically the
    container's ``State.StartedAt``), lines carrying an earlier Docker timestamp
    are ignored: they belong to a previous run. The timestamp prefix is removed
    from the reported lines. Lines without a timestamp are always considered.
    """
    compiled = compile_patterns(patterns)
    since_ns = parse_docker_time(since) if since is not None else None
    found: list[str] = []
    if not compiled or not log_text:
        return found
    for raw in _lines(log_text):
        ts, text = split_log_line(raw)
        if since_ns is not None and ts is not None and ts < since_ns:
            continue
        if any(p.search(text) for p in compiled):
            found.append(truncate(text, max_len))
            if len(found) >= limit:
                break
    return found


def last_log_timestamp(log_text: str) -> int | None:
    """Latest Docker timestamp (ns) in log text fetched with timestamps."""
    last = None
    for raw in _lines(log_text):
        ts, dummy = split_log_line(raw)
        if ts is not None and (last is None or ts > last):
            last = ts
    return last


# -- containers ---------------------------------------------------------------


def container_state(inspect: dict | None) -> dict:
    """The parts of a container inspect dict the check looks at."""
    if not inspect:
        return {
            "exists": False, "id": None, "running": False, "restarting": False, "paused": False,
            "restart_count": 0, "started_at": "", "finished_at": "", "status": "missing", "exit_code": None,
            "tty": False, "health": "",
        }
    state = inspect.get("State") or {}
    return {
        "exists": True,
        "id": inspect.get("Id"),
        "running": bool(state.get("Running")),
        "restarting": bool(state.get("Restarting")),
        "paused": bool(state.get("Paused")),
        "restart_count": int(inspect.get("RestartCount") or 0),
        "started_at": str(state.get("StartedAt") or ""),
        "finished_at": str(state.get("FinishedAt") or ""),
        "status": str(state.get("Status") or ("running" if state.get("Running") else "unknown")),
        "exit_code": state.get("ExitCode"),
        "tty": bool((inspect.get("Config") or {}).get("Tty")),
        "health": str((state.get("Health") or {}).get("Status") or ""),
    }


def run_cutoff_ns(state: dict) -> int | None:
    """Where the container's current run begins in its log (nanoseconds;
    earlier lines belong to a previous run), None when every line counts.

    Not ``StartedAt``: the engine stamps a log line when it reads it and
    records ``StartedAt`` only once the process runs, so a line printed at
    once can carry an earlier time (measured here: up to 2 ms on an idle
    machine, more under load), and a critical line printed at start would be
    missed. The previous run's ``FinishedAt`` is recorded after its last line
    was read: that is the boundary. A container that never stopped before
    has only this run in its log.
    """
    started = parse_docker_time(state.get("started_at"))
    finished = parse_docker_time(state.get("finished_at"))
    if started is None or started <= 0:
        return None
    if finished is not None and 0 < finished <= started:
        return finished + 1
    if finished is not None and finished > started:
        return started  # stopped now: its last run began at StartedAt
    return None


def restarted_during_check(state: dict, baseline: dict | None) -> bool:
    """True when the container (same id) restarted since ``baseline`` was seen.

    Its restart count rose, or it was started again (``StartedAt`` changed: a
    container first seen restarting or exited and then running again).
    """
    if not baseline or not state["exists"] or baseline.get("id") != state["id"]:
        return False
    if state["restart_count"] > int(baseline.get("restart_count") or 0):
        return True
    base_started = baseline.get("started_at")
    return bool(base_started) and bool(state["started_at"]) and state["started_at"] != base_started


def container_failures(
    service: str, container: str, state: dict, baseline: dict | None = None
) -> list[dict]:
    """Failures of the container check.

    ``baseline`` ({"id", "restart_count", "started_at"?}) is the container as
    first seen during the check; a restart since then is a crash loop.
    """
    failures = []
    if not state["exists"]:
        failures.append(_failure(service, "container", f"container {container} not found", PRIO_CONTAINER))
        return failures
    if restarted_during_check(state, baseline):
        restarts = state["restart_count"] - int(baseline.get("restart_count") or 0)
        what = f"restarted {restarts} time(s)" if restarts > 0 else "was started again"
        failures.append(_failure(
            service, "crash_loop",
            f"crash loop (container {container} {what} during the check,"
            f" restart count {state['restart_count']})",
            PRIO_CRASH_LOOP, permanent=True,
        ))
    if state["restarting"]:
        failures.append(
            _failure(service, "container", f"container {container} is restarting", PRIO_CONTAINER)
        )
    elif not state["running"]:
        detail = state["status"]
        if state["exit_code"] is not None and state["status"] in ("exited", "dead"):
            detail += f", exit code {state['exit_code']}"
        failures.append(_failure(
            service, "container", f"container {container} is not running ({detail})", PRIO_CONTAINER
        ))
    elif state.get("health") == "unhealthy" and not state.get("paused"):
        # The container's own HEALTHCHECK says it is not ready (e.g. /ready
        # answers 503): retried until the timeout like the other checks. (A
        # paused container cannot run its HEALTHCHECK: being paused is what
        # counts then, see evaluate.)
        failures.append(_failure(
            service, "container", f"container {container} reports unhealthy (its HEALTHCHECK fails)",
            PRIO_CONTAINER,
        ))
    return failures


def _failure(service: str, check: str, message: str, priority: int, permanent: bool = False) -> dict:
    return {
        "service": service, "check": check, "reason": f"{service}: {message}",
        "priority": priority, "permanent": permanent,
    }


# -- database and heartbeats --------------------------------------------------


def db_probe_result(
    exit_code: int | None, stdout: str = "", stderr: str = "", error: str | None = None
) -> dict:
    """``{"reachable", "error"}`` from the ``SELECT 1`` run through psql (or the exec error)."""
    if error:
        return {"reachable": False, "error": truncate(error, MAX_ERROR_LENGTH)}
    if exit_code == 0 and stdout.strip() == "1":
        return {"reachable": True, "error": None}
    reason = first_line(stderr) or first_line(stdout) or "no answer"
    return {"reachable": False, "error": f"psql exit code {exit_code}: {reason}"}


def parse_heartbeat_rows(text: str) -> dict:
    """psql ``-At -F '|'`` output of the heartbeat query as {service: {"release", "age"}}."""
    rows: dict = {}
    for line in _lines(text):
        if not line.strip() or "|" not in line:
            continue
        left, dummy, age_text = line.rpartition("|")
        service, sep, release = left.partition("|")
        if not sep:
            continue
        try:
            age = float(age_text) if age_text.strip() else None
        except ValueError:
            age = None
        rows[service] = {"release": release, "age": age}
    return rows


def heartbeat_failure(
    service: str, row: dict | None, max_age: float, release=None
) -> str | None:
    """The heartbeat check's failure message (without the service prefix), or None when it passes.

    ``release`` is the release that must have written it, or a list of the
    releases that may have (a polling service on several servers: the
    fleet's one poller may still be on a server not switched yet)."""
    if row is None:
        return "heartbeat missing"
    accepted = [release] if isinstance(release, str) else list(release or [])
    if accepted and row.get("release") not in accepted:
        return f"heartbeat from release {row.get('release')} (expected {' or '.join(accepted)})"
    age = row.get("age")
    if age is None:
        return "heartbeat has no time"
    if age > max_age:
        return f"heartbeat stale ({age:.1f}s > {_fmt_seconds(max_age)}s)"
    return None


# -- evaluation ---------------------------------------------------------------


def evaluate(
    services: list[dict],
    inspects: dict,
    critical: dict,
    database: dict,
    heartbeats: dict | None,
    heartbeat_max_age: float = 30.0,
    baselines: dict | None = None,
    errors: list[dict] | None = None,
    table: str | None = None,
) -> dict:
    """One attempt's report from fetched data.

    services:   [{"name", "container", "release"?, "releases"?, "heartbeat"?, "heartbeat_key"?}];
                heartbeat ``required`` (the default here), ``auto`` or ``off``;
                the heartbeat row is ``heartbeat_key`` (default the name), written
                by ``release`` or, when given, any of ``releases``
    inspects:   {name: container inspect dict, or None when the container does not exist};
                a service left out is unknown (inspect failed, see ``errors``)
    critical:   {name: [critical log lines since the container started]}
    database:   {"reachable": bool, "error": str|None}
    heartbeats: {service: {"release", "age"}} or None when they could not be
                read; {} with ``table`` set when the table does not exist
    table:      the name of the missing heartbeat table (for the report)
    baselines:  {name: {"id", "restart_count", "started_at"}} as first seen (crash loop)
    errors:     extra failures (fetch errors) made with ``fetch_failure``
    Returns the report without ``attempts``/``elapsed`` plus ``permanent``.
    """
    baselines = baselines or {}
    failures: list[dict] = list(errors or [])
    report_services: dict = {}
    for svc in services:
        name, container = svc["name"], svc["container"]
        known = name in inspects
        state = container_state(inspects.get(name))
        if not known:
            state["status"] = "unknown"
        lines = list(critical.get(name) or [])
        svc_failures = []
        if lines:
            svc_failures.append(_failure(
                name, "critical_log", f"critical log line in {container}: {lines[0]}",
                PRIO_CRITICAL, permanent=True,
            ))
        if known:
            svc_failures.extend(container_failures(name, container, state, baselines.get(name)))
        paused_ok = state["paused"] and bool(svc.get("maintenance"))
        if state["paused"] and not paused_ok:
            svc_failures.append(_failure(
                name, "container", f"container {container} is paused and maintenance mode is off "
                "(playbooks/maintenance.yml -e state=off resumes it)", PRIO_CONTAINER))
        key = svc.get("heartbeat_key") or name
        hb = None if heartbeats is None else heartbeats.get(key)
        mode = svc.get("heartbeat") or "required"
        if paused_ok:
            hb_check = "paused for maintenance"
        elif mode == "off":
            hb_check = "off"
        elif mode == "auto" and heartbeats is not None and hb is None:
            hb_check = (f"not used (no table {table})" if table else
                        "not used (the service has written none)")
        elif heartbeats is None:
            hb_check = "not checked"
            if mode == "required":
                svc_failures.append(_failure(
                    name, "heartbeat", "heartbeat not checked (database not readable)", PRIO_HEARTBEAT
                ))
        else:
            hb_check = "checked"
            accepted = svc.get("releases") or svc.get("release")
            message = heartbeat_failure(name, hb, heartbeat_max_age, accepted)
            if message and key != name:
                message += (f" (row {key}: on several app servers each container writes its row under its"
                            " HEARTBEAT_KEY; docs/fleet.md)" if hb is None else f" (row {key})")
            if message and table and hb is None:
                message += (f" (no table {table}: the app writes no heartbeats; set heartbeat: false"
                            " on the service; docs/zero-downtime.md#readiness)")
            if message:
                svc_failures.append(_failure(name, "heartbeat", message, PRIO_HEARTBEAT))
        failures.extend(svc_failures)
        own_errors = [f for f in (errors or []) if f.get("service") == name]
        report_services[name] = {
            "container": container,
            "exists": state["exists"],
            "status": state["status"],
            "running": state["running"],
            "restarting": state["restarting"],
            "paused": state["paused"],
            "restart_count": state["restart_count"],
            "started_at": state["started_at"],
            "critical_lines": lines,
            "heartbeat_age": None if hb is None or hb.get("age") is None else round(float(hb["age"]), 3),
            "heartbeat_release": None if hb is None else hb.get("release"),
            "heartbeat": hb_check,
            "ok": not svc_failures and not own_errors,
        }
    if not database.get("reachable"):
        failures.append(_failure(
            "database", "database", f"unreachable ({database.get('error') or 'unknown error'})", PRIO_DATABASE
        ))
    elif database.get("error"):
        failures.append(_failure("database", "database", database["error"], PRIO_DATABASE))
    failures.sort(key=lambda f: f["priority"])  # stable: service order kept within a priority
    reasons = [f["reason"] for f in failures]
    return {
        "status": FAILED if failures else PASSED,
        "reason": reasons[0] if reasons else "all checks passed",
        "failures": reasons,
        "services": report_services,
        "database": {"reachable": bool(database.get("reachable")), "error": database.get("error")},
        "permanent": any(f["permanent"] for f in failures),
    }


def fetch_failure(service: str, check: str, message: str, priority: int = PRIO_DOCKER) -> dict:
    """A failure to fetch data (engine error), for ``evaluate(errors=...)``."""
    return _failure(service, check, message, priority)


# -- parameters ---------------------------------------------------------------


def normalize_params(params: dict) -> dict:
    """Defaults applied and values checked; raises ValueError with a clear message."""
    p = dict(DEFAULTS)
    p.update({k: v for k, v in (params or {}).items() if v is not None})
    services = p.get("services")
    if not isinstance(services, list) or not services:
        raise ValueError("services must be a non-empty list of {name, container, release?}")
    clean = []
    seen = set()
    for i, svc in enumerate(services):
        if not isinstance(svc, dict) or not svc.get("name") or not svc.get("container"):
            raise ValueError(f"services[{i}] needs a name and a container")
        if svc["name"] in seen:
            raise ValueError(f"service {svc['name']!r} is listed twice")
        seen.add(svc["name"])
        release = svc.get("release")
        mode = svc.get("heartbeat") or "auto"
        if mode not in HEARTBEAT_MODES:
            raise ValueError(f"services[{i}].heartbeat must be one of {', '.join(HEARTBEAT_MODES)}")
        releases = svc.get("releases") or []
        if not isinstance(releases, list):
            raise ValueError(f"services[{i}].releases must be a list of releases")
        clean.append({
            "name": str(svc["name"]),
            "container": str(svc["container"]),
            "release": None if release in (None, "") else str(release),
            "releases": [str(r) for r in releases if r not in (None, "")],
            "heartbeat_key": str(svc.get("heartbeat_key") or svc["name"]),
            "heartbeat": mode,
            # maintenance mode: a paused container is what it asks (roles/maintenance)
            "maintenance": bool(p.get("maintenance")),
        })
    p["services"] = clean
    hooks = []
    for i, hook in enumerate(p.get("webhooks") or []):
        if not isinstance(hook, dict) or not hook.get("service") or not hook.get("token"):
            raise ValueError(f"webhooks[{i}] needs a service and a token")
        if hook.get("mode") not in ("webhook", "polling"):
            raise ValueError(f"webhooks[{i}].mode must be webhook or polling")
        hooks.append({"service": str(hook["service"]), "mode": hook["mode"], "token": str(hook["token"]),
                      "url": str(hook.get("url") or "")})
    p["webhooks"] = hooks
    if hooks and not p.get("telegram_api_base"):
        raise ValueError("telegram_api_base is required with webhooks")
    p["webhook_max_pending"] = int(p.get("webhook_max_pending") or 100)
    if not p.get("db_container") and not p.get("db_host"):
        raise ValueError("db_container (the managed database) or db_host (an external one) is required")
    if p.get("db_host") and not p.get("db_network"):
        raise ValueError("db_network is required with db_host (the network the probe's container joins)")
    p["heartbeat_query"] = heartbeat_query(p["heartbeat_table"])
    p["table_query"] = table_query(p["heartbeat_table"])
    p["patterns"] = compile_patterns(p["critical_patterns"] or [])
    for key in ("heartbeat_max_age", "timeout", "interval", "refused_window"):
        try:
            p[key] = float(p[key])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{key} must be a number") from exc
        if p[key] < 0:
            raise ValueError(f"{key} must not be negative")
    if p["interval"] <= 0:
        raise ValueError("interval must be greater than 0")
    return p


# -- the check ----------------------------------------------------------------


def _exec_sql(client, p: dict, sql: str, timeout: float) -> tuple[int | None, str, str, str | None]:
    """(exit_code, stdout, stderr, error) of one psql -c in the db container,
    or, for an external database (``db_host``), in a throwaway container of
    ``db_image`` on ``db_network`` (its output: stdout and stderr as one)."""
    if p.get("db_host"):
        name = f"fs_health_db_{os.getpid()}"
        body = oneoff.oneoff_body(
            p["db_image"], psql_command(p["db_user"], p["db_name"], sql, p["db_host"], p["db_port"]),
            {"PGPASSWORD": p.get("db_password") or "", "PGCONNECT_TIMEOUT": "5"}, p["db_network"],
            {"fs.role": "health-probe"})
        try:
            code, out = oneoff.run_oneoff(client, name, body, timeout)
        except DockerAPIError as exc:
            return None, "", "", f"probe container of {p['db_image']}: {exc.message} (HTTP {exc.status})"
        except DockerError as exc:
            return None, "", "", f"probe container of {p['db_image']}: {exc}"
        return code, out if code == 0 else "", out if code != 0 else "", None
    try:
        code, out, err = client.exec_run(
            p["db_container"], psql_command(p["db_user"], p["db_name"], sql),
            env={"PGCONNECT_TIMEOUT": "5"}, timeout=timeout,
        )
        return code, out, err, None
    except DockerAPIError as exc:
        return None, "", "", f"container {p['db_container']}: {exc.message} (HTTP {exc.status})"
    except DockerError as exc:
        return None, "", "", f"container {p['db_container']}: {exc}"


def _attempt(client, p: dict, tracked: dict, exec_timeout: float) -> dict:
    errors: list[dict] = []
    inspects: dict = {}
    critical: dict = {}
    baselines: dict = {}
    for svc in p["services"]:
        name, container = svc["name"], svc["container"]
        track = tracked.setdefault(
            name, {"id": None, "restart_count": 0, "started_at": "", "cursor": None, "lines": []}
        )
        try:
            info = client.inspect_container(container)
        except DockerError as exc:
            errors.append(fetch_failure(name, "container", f"cannot inspect container {container}: {exc}"))
            critical[name] = track["lines"]
            continue
        inspects[name] = info
        state = container_state(info)
        if state["exists"] and state["id"] != track["id"]:
            # First sight of this container (or it was replaced): new baseline.
            track.update(id=state["id"], restart_count=state["restart_count"],
                         started_at=state["started_at"], cursor=None, lines=[])
        if state["exists"]:
            baselines[name] = {"id": track["id"], "restart_count": track["restart_count"],
                               "started_at": track["started_at"]}
            run_ns = run_cutoff_ns(state)
            since_ns = run_ns
            if track["cursor"] is not None and (since_ns is None or track["cursor"] >= since_ns):
                since_ns = track["cursor"] + 1
            try:
                text = client.container_logs(
                    container, since=None if since_ns is None else ns_to_since(since_ns),
                    timestamps=True, tty=state["tty"],
                )
            except DockerError as exc:
                errors.append(fetch_failure(name, "logs", f"cannot read the logs of {container}: {exc}"))
            else:
                new = critical_lines(text, p["patterns"], since=run_ns)
                track["lines"] = (track["lines"] + new)[:MAX_CRITICAL_LINES]
                last = last_log_timestamp(text)
                if last is not None:
                    track["cursor"] = max(last, track["cursor"] or last)
        critical[name] = track["lines"]

    code, out, err, error = _exec_sql(client, p, PING_SQL, exec_timeout)
    database = db_probe_result(code, out, err, error)
    heartbeats = None
    missing_table = None
    wanted = [s["heartbeat"] for s in p["services"] if s["heartbeat"] != "off"]
    if database["reachable"] and not wanted:
        heartbeats = {}
    elif database["reachable"]:
        code, out, err, error = _exec_sql(client, p, p["table_query"], exec_timeout)
        if error is None and code == 0 and out.strip() == "f":
            heartbeats, missing_table = {}, p["heartbeat_table"]
        else:
            code, out, err, error = _exec_sql(client, p, p["heartbeat_query"], exec_timeout)
            if error is None and code == 0:
                heartbeats = parse_heartbeat_rows(out)
            else:
                detail = error or first_line(err) or f"psql exit code {code}"
                database["error"] = f"heartbeat query failed: {detail}"
    webhooks = _webhooks(p, tracked, errors)
    report = evaluate(
        p["services"], inspects, critical, database, heartbeats,
        heartbeat_max_age=p["heartbeat_max_age"], baselines=baselines, errors=errors, table=missing_table,
    )
    report["webhooks"] = webhooks
    return report


def _webhooks(p: dict, tracked: dict, errors: list) -> dict:
    """Ask Telegram (getWebhookInfo) about each bot of ``p["webhooks"]``; what
    is wrong goes to ``errors``; returns what it said, by service."""
    out = {}
    for hook in p["webhooks"]:
        name = hook["service"]
        try:
            info = p["telegram_api"](p["telegram_api_base"], hook["token"], "getWebhookInfo")
        except telegram.TelegramError as exc:
            errors.append(_failure(name, "webhook", f"cannot ask Telegram about its webhook: {exc}",
                                   PRIO_WEBHOOK))
            continue
        seen = tracked.setdefault(f"webhook:{name}", {"first_pending": None})
        pending = int(info.get("pending_update_count") or 0)
        problems = telegram.webhook_problems(info, hook["mode"], hook["url"], since=p["started_at"],
                                             first_pending=seen["first_pending"],
                                             max_pending=p["webhook_max_pending"])
        if seen["first_pending"] is None:
            seen["first_pending"] = pending
        errors.extend(_failure(name, "webhook", f"{name}: {problem}", PRIO_WEBHOOK) for problem in problems)
        out[name] = {"url": str(info.get("url") or ""), "pending_update_count": pending,
                     "last_error_message": str(info.get("last_error_message") or ""), "ok": not problems}
    return out


def refused_requests(log_text: str) -> int:
    """How many webhook requests the proxy refused (no valid secret header) in ``log_text``."""
    return sum(1 for line in _lines(log_text) if REFUSED_MARK in line)


def _refused(client, container: str, since: float) -> int | None:
    """Webhook requests the proxy refused since ``since`` (None: its logs could not be read)."""
    try:
        text = client.container_logs(container, since=since)
    except DockerError:
        return None
    return refused_requests(text)


def run_health_check(client, params: dict, clock=time.time, sleep=time.sleep) -> dict:
    """Check until everything passes, a permanent failure is seen, or ``timeout`` expires.

    ``client`` needs ``inspect_container``, ``container_logs`` and ``exec_run``
    (see docker_api.DockerClient). Returns the final report with
    ``attempts`` and ``elapsed``. Raises ValueError on invalid params.
    """
    p = normalize_params(params)
    start = clock()
    p["started_at"] = start - 1  # Telegram's error dates are whole seconds
    p.setdefault("telegram_api", telegram.call)
    attempts = 0
    tracked: dict = {}
    while True:
        attempts += 1
        remaining = p["timeout"] - (clock() - start)
        exec_timeout = min(30.0, max(5.0, remaining))
        try:
            report = _attempt(client, p, tracked, exec_timeout)
        except DockerError as exc:  # the engine went away between two calls
            known_lines = {s["name"]: tracked.get(s["name"], {}).get("lines") or [] for s in p["services"]}
            report = evaluate(
                p["services"], {}, known_lines,
                {"reachable": False, "error": f"Docker engine: {exc}"}, None,
                heartbeat_max_age=p["heartbeat_max_age"],
                errors=[fetch_failure("docker", "engine", f"engine unavailable ({exc})")],
            )
        if report["status"] == PASSED or report["permanent"]:
            break
        remaining = p["timeout"] - (clock() - start)
        if remaining <= 0:
            break
        sleep(min(p["interval"], remaining))
    report.pop("permanent", None)
    report.setdefault("webhooks", {})
    if p.get("proxy_container"):
        since = clock() - p["refused_window"]
        report["refused_webhook_requests"] = _refused(client, p["proxy_container"], since)
    report["attempts"] = attempts
    report["elapsed"] = round(clock() - start, 3)
    return report
