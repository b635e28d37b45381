# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL: the pg_dump stage, psql, the load stage and scratch databases.

Every client runs in Docker: ``docker exec`` in the database container (over
its local socket), or a one-off ``docker run --rm`` container of an image
with the client for an external database. The password, when there is one,
is passed on by name (``-e PGPASSWORD``), never in an argv.

``args`` below is any object with ``db_container``, or ``db_host``,
``db_port``, ``pg_image`` and ``network``, plus ``db_user`` and ``db_name``
(the command line's options, or ``configuration.db_namespace``).
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import subprocess
import time

from . import PROG
from .errors import BackupError, one_line
from .execute import Stage

log = logging.getLogger(__name__)

HOOK_TIMEOUT_SECONDS = 20.0
# Plain SQL that restores into a fresh database owned by the restoring role.
PG_DUMP_OPTIONS = ("--no-owner", "--no-privileges", "--encoding=UTF8")
PG_DUMP_TRAILER = b"-- PostgreSQL database dump complete"


def pg_dump_complete(tail: bytes) -> str | None:
    """check_output of pg_dump: a complete plain dump ends with its trailer.

    (Recent releases add a ``\\unrestrict <key>`` line after it.)
    """
    if PG_DUMP_TRAILER in tail:
        return None
    return ("output is incomplete (no 'dump complete' trailer): pg_dump or "
            "its docker client was stopped before the end")


def sql_complete(tail: bytes) -> str | None:
    """check_output of a restore's SQL stream: it must end like a whole dump."""
    if PG_DUMP_TRAILER in tail:
        return None
    return ("the SQL does not end with pg_dump's 'dump complete' trailer: the backup is "
            "truncated or not a pg_dump plain dump")


def password_env() -> list[str]:
    return ["-e", "PGPASSWORD"] if os.environ.get("PGPASSWORD") else []


def _run_hook(argv: list[str]) -> None:
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=HOOK_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise BackupError(f"{shlex.join(argv[:3])}... exited {result.returncode}: "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'))}")


def pg_dump_stage(args) -> Stage:
    """pg_dump in the database container (docker exec) or a one-off container."""
    # A unique application_name (and container name) lets cleanup find the
    # pg_dump that outlives its killed docker client.
    tag = f"{PROG}_{os.getpid()}_{secrets.token_hex(4)}"
    password = password_env()
    dump_args = ["-U", args.db_user, "-d", args.db_name, *PG_DUMP_OPTIONS]
    if args.db_container:
        argv = ["docker", "exec", "-i", *password, "-e", f"PGAPPNAME={tag}",
                args.db_container, "pg_dump", *dump_args]
        query = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 f"WHERE application_name = '{tag}' AND pid <> pg_backend_pid()")

        def on_abort() -> None:
            _run_hook(["docker", "exec", *password, args.db_container, "psql", "-X",
                       "-q", "-At", "-U", args.db_user, "-d", args.db_name, "-c", query])
            log.info("ended the pg_dump session %s in %s", tag, args.db_container)
    else:
        network = ["--network", args.network] if args.network else []
        # --log-driver none: the one-off container's stdout (the dump) must
        # not also land uncompressed in Docker's container log.
        argv = ["docker", "run", "--rm", "-i", "--name", tag, *network,
                "--log-driver", "none", *password, "-e", f"PGAPPNAME={tag}",
                "--entrypoint", "pg_dump", args.pg_image,
                "-h", args.db_host, "-p", str(args.db_port), *dump_args]

        def on_abort() -> None:
            result = subprocess.run(["docker", "rm", "-f", "-v", tag], stdin=subprocess.DEVNULL,
                                    capture_output=True, timeout=HOOK_TIMEOUT_SECONDS,
                                    check=False)
            if result.returncode == 0:
                log.info("removed the pg_dump container %s", tag)
    return Stage("pg_dump", argv, check_output=pg_dump_complete, on_abort=on_abort)


def psql_argv(args, db: str, *extra: str, stdin: bool = False,
              container: str | None = None) -> list[str]:
    """psql with errors fatal, in the database container, ``container`` or a one-off one."""
    interactive = ["-i"] if stdin else []
    options = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", args.db_user, "-d", db, *extra]
    if container or args.db_container:
        return ["docker", "exec", *interactive, *password_env(),
                container or args.db_container, "psql", *options]
    network = ["--network", args.network] if args.network else []
    return ["docker", "run", "--rm", *interactive, *network, "--log-driver", "none",
            *password_env(), "--entrypoint", "psql", args.pg_image,
            "-h", args.db_host, "-p", str(args.db_port), *options]


def psql(args, db: str, sql: str, container: str | None = None, timeout: float = 120) -> str:
    """Run one SQL text; return its unaligned output; BackupError on failure."""
    argv = psql_argv(args, db, "-At", "-c", sql, container=container)
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BackupError(f"psql did not answer in {timeout:g}s: {sql[:80]}") from exc
    if result.returncode != 0:
        raise BackupError(f"psql failed ({sql[:60]}...): "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'))}")
    return result.stdout.decode("utf-8", "replace").strip()


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_stage(args, db: str, container: str | None = None) -> Stage:
    """psql reading SQL on stdin into ``db``, errors fatal (the last stage of a load)."""
    return Stage("psql", psql_argv(args, db, stdin=True, container=container))


def database_exists(args, name: str) -> bool:
    return psql(args, "postgres", "SELECT 1 FROM pg_database WHERE datname = "
                + quote_literal(name)) == "1"


def start_scratch(image: str, user: str, db: str, timeout: float = 120) -> str:
    """A throw-away PostgreSQL container with no network; return its name."""
    name = f"{PROG}_verify_{os.getpid()}_{secrets.token_hex(4)}"
    argv = ["docker", "run", "-d", "--rm", "--name", name, "--network", "none",
            "--label", "fs.role=backup-verify", "--log-driver", "none",
            "-e", f"POSTGRES_USER={user}", "-e", f"POSTGRES_DB={db}",
            # no network at all; psql comes in through docker exec (local socket)
            "-e", f"POSTGRES_PASSWORD={secrets.token_hex(16)}", image, "postgres",
            "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                            check=False)
    if result.returncode != 0:
        raise BackupError(f"cannot start a scratch database ({image}): "
                          f"{one_line(result.stderr.decode('utf-8', 'replace'))}")
    deadline = time.monotonic() + timeout
    while True:
        # TCP readiness: the entrypoint's temporary init server listens on no port.
        ready = subprocess.run(["docker", "exec", name, "pg_isready", "-q", "-h", "127.0.0.1",
                                "-U", user], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=30, check=False)
        if ready.returncode == 0:
            return name
        gone = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
        if gone.stdout.strip() != b"true":
            remove_container(name)
            raise BackupError(f"the scratch database ({image}) stopped while starting")
        if time.monotonic() > deadline:
            remove_container(name)
            raise BackupError(f"the scratch database did not start in {timeout:g}s")
        time.sleep(0.3)


def remove_container(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", "-v", name], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=120, check=False)
