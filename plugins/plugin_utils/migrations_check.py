# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migrations pre-deploy check, on the control node (the action plugin
fieldservice.deploy.preflight_migrations).

One Alembic head, and ``upgrade <serving revision>`` then ``upgrade head``
against a throwaway PostgreSQL: a temporary local cluster made with
initdb/pg_ctl (as the ``postgres`` user when run as root), or a ``docker run``
of the server's image. It starts processes with time limits and as another
user, which is controller work (a module would have to go through
``run_command``, which has neither), hence a plugin, not a module.

Stdlib only and importable without Ansible (the unit tests import it).
"""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import migration_lint


def parse_heads(output: str) -> list[str]:
    """Revision ids from the output of ``alembic heads``."""
    heads = []
    for line in output.splitlines():
        line = line.strip()
        if "(head)" in line or "(effective head)" in line:
            heads.append(line.split()[0])
    return heads


def _tail(text: str, count: int = 15) -> list[str]:
    return [line for line in (text or "").splitlines() if line.strip()][-count:]


class CheckError(Exception):
    """A throwaway database could not be set up, with the reason."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_pg_bin(dirs=None) -> str | None:
    """A directory holding initdb and pg_ctl: PATH first, then the Debian
    layout /usr/lib/postgresql/<version>/bin (newest), then others given."""
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    found = glob.glob("/usr/lib/postgresql/*/bin")

    def _ver(path: str) -> tuple:
        name = os.path.basename(os.path.dirname(path))
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += sorted(found, key=_ver, reverse=True)
    candidates += list(dirs or [])
    for cand in candidates:
        if all(os.access(os.path.join(cand, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return cand
    return None


class LocalPostgres:
    """A temporary cluster: initdb + pg_ctl on 127.0.0.1 and a free port,
    trust authentication, removed on stop. PostgreSQL refuses to run as root:
    as root the cluster runs as the ``postgres`` user."""

    name = "local"

    def __init__(self, bindir: str, timeout: int = 120):
        self.bindir = bindir
        self.timeout = timeout
        self.workdir = None
        self.port = None
        self._user = None
        self.from_template = False

    @staticmethod
    def usable(bindir: str | None) -> bool:
        if not bindir:
            return False
        if os.geteuid() != 0:
            return True
        import pwd
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return True

    def _run(self, args, **kwargs):
        extra = {}
        if self._user is not None:
            extra = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return subprocess.run(args, capture_output=True, text=True, check=False, timeout=self.timeout,
                              cwd=self.workdir, **extra, **kwargs)

    def start(self) -> None:
        if os.geteuid() == 0:
            import pwd
            self._user = pwd.getpwnam("postgres")
        self.workdir = tempfile.mkdtemp(prefix="fs_preflight_pg_")
        if self._user is not None:
            os.chown(self.workdir, self._user.pw_uid, self._user.pw_gid)
        data = os.path.join(self.workdir, "data")
        self.from_template = self._copy_template(data)
        if not self.from_template:
            out = self._run([os.path.join(self.bindir, "initdb"), "-D", data, "-A", "trust",
                             "-U", "postgres", "-E", "UTF8", "--no-sync"])
            if out.returncode != 0:
                raise CheckError(f"initdb failed: {' | '.join(_tail(out.stderr + out.stdout, 5))}")
            self._save_template(data)
        self.port = _free_port()
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.workdir} -c fsync=off"
        out = self._run([os.path.join(self.bindir, "pg_ctl"), "-D", data, "-o", opts, "-w",
                         "-t", str(min(self.timeout, 60)), "-l", os.path.join(self.workdir, "log"),
                         "start"])
        if out.returncode != 0:
            log = ""
            try:
                with open(os.path.join(self.workdir, "log"), encoding="utf-8", errors="replace") as fh:
                    log = fh.read()
            except OSError:
                pass
            raise CheckError(f"pg_ctl start failed: {' | '.join(_tail(out.stderr + log, 5))}")

    # A freshly initialised, never started data directory is kept (per user
    # and per server binaries) and copied for the next check: cp -a takes a
    # tenth of a second where initdb takes one and a half.
    def _template_path(self) -> str | None:
        try:
            st = os.stat(os.path.join(self.bindir, "initdb"))
        except OSError:
            return None
        key = hashlib.sha256(f"{self.bindir}|{st.st_mtime_ns}|{st.st_size}".encode()).hexdigest()[:16]
        base = os.path.join(tempfile.gettempdir(), f"fs_preflight_pg_cache_{os.geteuid()}")
        try:
            os.makedirs(base, mode=0o700, exist_ok=True)
            info = os.lstat(base)
        except OSError:
            return None
        # only a private directory of our own (not a link another user put there)
        if not os.path.isdir(base) or os.path.islink(base) or info.st_uid != os.geteuid() \
                or info.st_mode & 0o077:
            return None
        return os.path.join(base, f"template_{key}")

    def _copy_template(self, data: str) -> bool:
        template = self._template_path()
        if not template or not os.path.isfile(os.path.join(template, "PG_VERSION")):
            return False
        out = subprocess.run(["cp", "-a", template, data], capture_output=True, text=True, check=False,
                             timeout=self.timeout)
        if out.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            return False
        return True

    def _save_template(self, data: str) -> None:
        template = self._template_path()
        if not template or os.path.exists(template):
            return
        tmp = f"{template}.{os.getpid()}.tmp"
        out = subprocess.run(["cp", "-a", data, tmp], capture_output=True, text=True, check=False,
                             timeout=self.timeout)
        try:
            if out.returncode == 0:
                os.rename(tmp, template)
        except OSError:
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def create_db(self, name: str) -> str:
        out = self._run([os.path.join(self.bindir, "createdb"), "-h", "127.0.0.1",
                         "-p", str(self.port), "-U", "postgres", name])
        if out.returncode != 0:
            raise CheckError(f"createdb failed: {' | '.join(_tail(out.stderr, 3))}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def dump(self, name: str) -> str:
        out = self._run([os.path.join(self.bindir, "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port),
                         "-U", "postgres", "--no-owner", "--no-privileges", name])
        if out.returncode != 0:
            raise CheckError(f"pg_dump failed: {' | '.join(_tail(out.stderr, 3))}")
        return out.stdout

    def stop(self) -> None:
        if not self.workdir:
            return
        data = os.path.join(self.workdir, "data")
        if os.path.exists(os.path.join(data, "postmaster.pid")):
            try:
                self._run([os.path.join(self.bindir, "pg_ctl"), "-D", data, "-m", "immediate",
                           "-w", "stop"])
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None


class DockerPostgres:
    """A throwaway container of the server's PostgreSQL image, published on
    127.0.0.1 only, a random password over TCP, removed (with its volume) on stop."""

    name = "docker"

    def __init__(self, image: str, name_prefix: str = "fs", timeout: int = 120, docker: str = "docker"):
        self.image = image
        self.container = f"{name_prefix}_preflight_{uuid.uuid4().hex[:8]}"
        self.timeout = timeout
        self.docker = docker
        self.port = None
        self._started = False
        # the image trusts its local socket; over TCP (Alembic) a password,
        # as the official image and the offline stand-in both ask for one
        self.password = uuid.uuid4().hex

    @staticmethod
    def usable(docker: str = "docker") -> bool:
        if not shutil.which(docker):
            return False
        try:
            out = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                                 capture_output=True, text=True, check=False, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return out.returncode == 0

    def _run(self, *args, timeout=None):
        return subprocess.run([self.docker, *args], capture_output=True, text=True, check=False,
                              timeout=timeout or self.timeout)

    def start(self) -> None:
        out = self._run("run", "-d", "--name", self.container, "--label", "fs.role=preflight",
                        "-e", f"POSTGRES_PASSWORD={self.password}",
                        "-p", "127.0.0.1::5432", "--tmpfs", "/var/lib/postgresql/data", self.image)
        if out.returncode != 0:
            raise CheckError(f"docker run {self.image} failed: {' | '.join(_tail(out.stderr, 3))}")
        self._started = True
        out = self._run("port", self.container, "5432/tcp")
        try:
            self.port = int(out.stdout.strip().splitlines()[0].rsplit(":", 1)[1])
        except (IndexError, ValueError) as err:
            raise CheckError(f"no published port for {self.container}: {out.stderr.strip()}") from err
        deadline = time.monotonic() + self.timeout
        while True:
            # TCP inside the container: the image's init server listens on the socket only.
            ready = self._run("exec", self.container, "pg_isready", "-h", "127.0.0.1", "-U", "postgres",
                              timeout=20)
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise CheckError(f"{self.image} did not become ready in {self.timeout}s")
            time.sleep(0.5)

    def create_db(self, name: str) -> str:
        out = self._run("exec", self.container, "createdb", "-U", "postgres", name)  # local socket: trusted
        if out.returncode != 0:
            raise CheckError(f"createdb failed: {' | '.join(_tail(out.stderr, 3))}")
        return f"postgresql://postgres:{self.password}@127.0.0.1:{self.port}/{name}"

    def dump(self, name: str) -> str:
        out = self._run("exec", self.container, "pg_dump", "-U", "postgres", "--no-owner",
                        "--no-privileges", name)
        if out.returncode != 0:
            raise CheckError(f"pg_dump failed: {' | '.join(_tail(out.stderr, 3))}")
        return out.stdout

    def stop(self) -> None:
        if self._started:
            self._run("rm", "-f", "-v", self.container, timeout=60)
            self._started = False


def pick_backend(backend: str, image: str, name_prefix: str, timeout: int, pg_bin_dirs=None):
    """(database or None, why) for backend auto/local/docker/none."""
    if backend == "none":
        return None, "preflight_migrations_database is none"
    if backend in ("auto", "local"):
        bindir = find_pg_bin(pg_bin_dirs)
        if LocalPostgres.usable(bindir):
            return LocalPostgres(bindir, timeout), ""
        if backend == "local":
            return None, "no usable PostgreSQL server binaries (initdb, pg_ctl) on the control node"
    if backend in ("auto", "docker") and DockerPostgres.usable():
        return DockerPostgres(image, name_prefix, timeout), ""
    return None, ("no PostgreSQL server binaries (initdb, pg_ctl) and no Docker engine answering"
                  " on the control node")


def run_alembic(command, args, cwd, env, timeout):
    try:
        out = subprocess.run(list(command) + list(args), cwd=cwd, env=env, capture_output=True,
                             text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout}s"
    except OSError as err:
        return 127, str(err)
    return out.returncode, (out.stdout or "") + (out.stderr or "")


def portable_dump(text: str) -> str:
    """A plain pg_dump without its session settings (a newer pg_dump's SETs
    fail on an older server; the dump qualifies every name itself)."""
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith(("SET ", "SELECT pg_catalog.set_config(")))


def check_upgrade(database, command, from_revisions, cwd, timeout, env=None,
                  url_var="DATABASE_URL", dump_from=None) -> dict:
    """On a fresh database per starting revision: upgrade to it, then to head.

    For the starting revision ``dump_from``, the database is dumped at that
    revision and at head (``schemas``: serving and head), for the check of
    the serving release on the new schema."""
    steps = []
    schemas = {}
    base_env = dict(os.environ if env is None else env)
    starts = list(dict.fromkeys(r or "" for r in (from_revisions or [""])))
    for index, start in enumerate(starts):
        url = database.create_db(f"preflight_{index}")
        run_env = dict(base_env, **{url_var: url})
        plan = ([start] if start else []) + ["head"]
        for target in plan:
            rc, output = run_alembic(command, ["upgrade", target], cwd, run_env, timeout)
            step = {"from": start or "base", "target": target, "rc": rc, "output": _tail(output)}
            steps.append(step)
            if rc != 0:
                what = (f"building the serving revision {start}" if target == start and start
                        else f"upgrading {'from ' + start if start else 'an empty database'} to head")
                return {"ok": False, "steps": steps, "schemas": {},
                        "reason": f"{what} failed (exit {rc}): {' | '.join(step['output'][-5:])}"}
            if dump_from is not None and start == dump_from:
                schemas["serving" if target == start else "head"] = portable_dump(
                    database.dump(f"preflight_{index}"))
    return {"ok": True, "steps": steps, "schemas": schemas,
            "reason": "upgrade " + ", ".join(f"{s or 'base'} -> head" for s in starts) + " works"}


def pending_from(from_revisions, heads) -> str:
    """The serving revision whose migrations a deploy will run, or "" when
    none is pending (no serving schema, or it is the head already). With
    several serving revisions (hosts at different revisions) the oldest
    known one is taken: it has the most to run."""
    head = heads[0] if len(heads) == 1 else ""
    for start in from_revisions or []:
        if start and start != head:
            return start
    return ""


def run_check(p: dict, env: dict) -> dict:
    """The whole check with the action's options ``p`` (see the module's
    documentation), in the environment ``env``. ``ok`` says whether it passed,
    ``reason`` what was found; nothing raises for a failed check."""
    result = {"changed": False, "ok": True, "heads": [], "upgrade": "off", "database": None,
              "steps": [], "reason": "", "warning": "", "pending_from": "",
              "lint": {"ran": False, "why": "off"}, "schemas": {},
              "skip_with": "preflight_check_migrations"}
    reasons = []
    if p["check_heads"]:
        rc, output = run_alembic(p["command"], ["heads"], p["path"], env, p["timeout"])
        heads = parse_heads(output) if rc == 0 else []
        result["heads"] = heads
        if rc != 0:
            result.update(ok=False,
                          reason=f"'alembic heads' failed (exit {rc}): " + " | ".join(_tail(output, 5)))
            return result
        if len(heads) != 1:
            result.update(ok=False, reason=(
                f"{len(heads)} Alembic heads ({', '.join(heads) or 'none'}), exactly one expected"
                + (": merge them (alembic merge heads)" if len(heads) > 1 else "")))
            return result
        reasons.append(f"single head {heads[0]}")
    pending = pending_from(p["from_revisions"], result["heads"]) if p["check_heads"] else ""
    result["pending_from"] = pending

    # the lint (Alembic's offline render, squawk) runs beside the upgrade
    # check: two processes of their own, each waiting on the other's CPU
    lint_job = None
    if p["lint"] and not pending:
        result["lint"] = {"ran": False, "why": "no pending migrations" if any(p["from_revisions"] or [])
                          else "no serving schema"}
    elif p["lint"]:
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        lint_job = pool.submit(migration_lint.lint, p["command"], pending, p["path"], env, p["timeout"],
                               p["table_sizes"], p["small_table_bytes"], p["lint_locks"], p["squawk"],
                               p["pg_version"], p["url_var"])
        pool.shutdown(wait=False)

    upgrade = None
    if p["check_upgrade"]:
        database, why = pick_backend(p["database"], p["image"], p["name_prefix"], p["timeout"],
                                     p["pg_bin_dirs"])
        if database is None:
            result.update(upgrade="skipped", warning=f"upgrade not checked: {why}")
        else:
            result["database"] = database.name
            try:
                database.start()
                upgrade = check_upgrade(database, p["command"], p["from_revisions"], p["path"], p["timeout"],
                                        env, p["url_var"], dump_from=pending if p["dump_schemas"] and pending
                                        else None)
            except CheckError as err:
                upgrade = {"ok": False, "steps": [], "schemas": {},
                           "reason": f"the throwaway PostgreSQL ({database.name}) failed: {err}"}
            except Exception as err:  # noqa: BLE001 - reported, and the database removed below
                upgrade = {"ok": False, "steps": [], "schemas": {}, "reason": f"{type(err).__name__}: {err}"}
            finally:
                database.stop()
            result["steps"] = upgrade["steps"]
            result["schemas"] = upgrade["schemas"]
            result["upgrade"] = "passed" if upgrade["ok"] else "failed"

    # what the lint found comes first: it names the migration's line
    if lint_job is not None:
        try:
            lint = lint_job.result()
        except migration_lint.LintError as err:
            result.update(ok=False, lint={"ran": False, "why": str(err)}, schemas={},
                          reason=f"the migrations lint: {err}", skip_with="preflight_migrations_lint")
            return result
        result["lint"] = dict(lint, ran=True)
        if not lint["ok"]:
            result.update(ok=False, skip_with="preflight_migrations_lint", schemas={}, reason=(
                f"{len(lint['refused'])} change(s) of the pending migrations would break the serving "
                "release or lock a table it uses: " + " ; ".join(lint["refused"])))
            return result
        reasons.append(f"lint of {lint['statements']} statement(s) from {pending}: "
                       + (f"{len(lint['warned'])} warning(s)" if lint["warned"] else "nothing refused"))
    if result["upgrade"] == "skipped":
        reasons.append("upgrade not checked")
    elif upgrade is not None:
        reasons.append(upgrade["reason"] + (f" ({result['database']} PostgreSQL)" if upgrade["ok"] else ""))
        if not upgrade["ok"]:
            result.update(ok=False, reason=upgrade["reason"])
            return result
    result["reason"] = "; ".join(reasons)
    return result
