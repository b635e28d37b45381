# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Release records on the server: what was deployed, when, and what to keep.

Every release lives in ``<root>/releases/<id>/`` and carries ``RELEASE.json``.
"current" is read from the ``<root>/current`` link and "previous" from the
records' activation times, never from directory mtimes (they lie after a copy
or a restore). Plain stdlib so that it runs without Ansible and is unit tested
as is.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

RECORD_NAME = "RELEASE.json"


class ReleaseStoreError(Exception):
    """A release store operation that cannot be done, with the reason."""


@dataclass
class Release:
    id: str
    path: str
    record: dict = field(default_factory=dict)

    @property
    def activated_at(self) -> str:
        return str(self.record.get("activated_at") or "")

    @property
    def created_at(self) -> str:
        return str(self.record.get("created_at") or "")

    def as_dict(self) -> dict:
        return {"id": self.id, "path": self.path, **self.record}


def _valid_id(release_id: str) -> bool:
    return (
        bool(release_id)
        and not release_id.startswith(".")
        and "/" not in release_id
        and release_id not in ("current", "..")
        and not release_id.endswith(".partial")
    )


def releases_dir(root: str) -> str:
    return os.path.join(root, "releases")


def read_record(path: str) -> dict:
    try:
        with open(os.path.join(path, RECORD_NAME), encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # A damaged record must not hide the release: treat it as empty.
        return {}


def list_releases(root: str) -> list[Release]:
    """All complete releases (a directory with a REVISION file)."""
    base = releases_dir(root)
    if not os.path.isdir(base):
        return []
    found = []
    for name in sorted(os.listdir(base)):
        path = os.path.join(base, name)
        if not _valid_id(name) or not os.path.isdir(path) or os.path.islink(path):
            continue
        if not os.path.exists(os.path.join(path, "REVISION")):
            continue
        found.append(Release(name, path, read_record(path)))
    return found


def current_id(root: str) -> str | None:
    link = os.path.join(root, "current")
    if not os.path.islink(link):
        return None
    return os.path.basename(os.readlink(link).rstrip("/")) or None


def ordered(releases: list[Release]) -> list[Release]:
    """Newest first: by activation time, then creation time, then id."""
    return sorted(
        releases,
        key=lambda r: (r.activated_at, r.created_at, r.id),
        reverse=True,
    )


def failed_health(release: Release) -> bool:
    """The release's deploy failed its health check (and was rolled back
    automatically): its record's ``health`` is a reason, not PASSED."""
    health = release.record.get("health")
    return bool(health) and health != "PASSED"


def previous_id(root: str, releases: list[Release] | None = None) -> str | None:
    """The most recently activated release other than the current one whose
    deploy did not fail its health check (a broken release is not where a
    rollback should go by default; it can still be named explicitly)."""
    cur = current_id(root)
    for rel in ordered(releases if releases is not None else list_releases(root)):
        if rel.id != cur and rel.activated_at and not failed_health(rel):
            return rel.id
    return None


def info(root: str) -> dict:
    rels = list_releases(root)
    return {
        "current": current_id(root),
        "previous": previous_id(root, rels),
        "releases": [r.as_dict() for r in ordered(rels)],
    }


def plan_prune(root: str, keep: int, protect: tuple | list = ()) -> list[str]:
    """Ids to delete so that at most ``keep`` releases remain.

    The current and the previous release, and those in ``protect`` (whose
    containers run), are never deleted, whatever ``keep`` says; the newest
    releases (by record, not mtime) are kept first.
    """
    if keep < 1:
        raise ReleaseStoreError("keep must be at least 1")
    rels = ordered(list_releases(root))
    protected = ({current_id(root), previous_id(root, rels)} | set(protect or ())) - {None, ""}
    kept = [r.id for r in rels if r.id in protected]
    doomed = []
    for rel in rels:
        if rel.id in protected:
            continue
        if len(kept) < keep:
            kept.append(rel.id)
        else:
            doomed.append(rel.id)
    return doomed


def prune(root: str, ids: list[str]) -> None:
    for rid in ids:
        if not _valid_id(rid):
            raise ReleaseStoreError(f"refusing to delete {rid!r}: not a release id")
        path = os.path.join(releases_dir(root), rid)
        # Rename first so that a half-deleted release never looks complete.
        doomed = os.path.join(releases_dir(root), f".{rid}.deleting")
        os.rename(path, doomed)
        shutil.rmtree(doomed)


def merged_record(root: str, release_id: str, updates: dict) -> tuple[dict, dict]:
    """(before, after) of the release's record with ``updates`` applied."""
    if not _valid_id(release_id):
        raise ReleaseStoreError(f"{release_id!r} is not a release id")
    path = os.path.join(releases_dir(root), release_id)
    if not os.path.isdir(path):
        raise ReleaseStoreError(f"release {release_id} does not exist under {releases_dir(root)}")
    before = read_record(path)
    after = dict(before)
    after.update({k: v for k, v in updates.items() if v is not None})
    after["id"] = release_id
    return before, after


def write_json(path: str, data: dict, indent: int | None = 2) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it,
    fsynced, mode 0644, renamed over it (a reader sees the old file or the
    new one, never half of one)."""
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name.lstrip('.').split('.')[0]}.", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=indent, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise


def write_record(root: str, release_id: str, record: dict) -> None:
    write_json(os.path.join(releases_dir(root), release_id, RECORD_NAME), record)


def release_present(root: str, release_id: str) -> bool:
    """The release is complete on the server (its REVISION file is there)."""
    return os.path.isfile(os.path.join(releases_dir(root), release_id, "REVISION"))


# A partial directory older than this was left by a killed run.
STALE_PARTIAL_SECONDS = 3600


def _clean_stale_partials(base: str, release_id: str, now: float) -> None:
    for name in os.listdir(base):
        if name != f"{release_id}.partial" and not name.startswith(f".{release_id}.partial-"):
            continue
        path = os.path.join(base, name)
        try:
            age = now - os.lstat(path).st_mtime
        except OSError:
            continue
        if name == f"{release_id}.partial" or age > STALE_PARTIAL_SECONDS:
            shutil.rmtree(path, ignore_errors=True)


def _extract(archive: str, dest: str) -> None:
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without extraction filters
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in member.name.split("/"):
                    raise ReleaseStoreError(f"unsafe path in the archive: {member.name}")
            tar.extractall(dest)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _place(partial: str, final: str, root: str, release_id: str) -> bool:
    """Rename the unpacked ``partial`` to ``final``; False when a complete
    release got there first. An incomplete one (no REVISION: left by a run
    older than the partial directories) is moved aside under a partial name
    (one rename, so a complete release another run puts in place meanwhile
    is never deleted) and removed."""
    for _attempt in range(5):
        if release_present(root, release_id):
            return False
        try:
            os.rename(partial, final)
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        if release_present(root, release_id):
            return False
        aside = f"{partial}-aside"
        try:
            os.rename(final, aside)
        except FileNotFoundError:
            continue
        if os.path.isfile(os.path.join(aside, "REVISION")):
            # a complete one arrived between the check and the move: back
            try:
                os.rename(aside, final)
            except OSError:
                pass  # another complete one is in place already
        shutil.rmtree(aside, ignore_errors=True)
    if release_present(root, release_id):
        return False
    raise ReleaseStoreError(f"cannot put the release {release_id} in place: {final} keeps changing")


def unpack(root: str, release_id: str, archive: str, revision: str, check: bool = False) -> bool:
    """Put an uploaded archive in place as ``releases/<id>/``.

    Unpacked into a hidden directory of this run's own
    (``.<id>.partial-<random>``; what a killed run left there an hour ago
    is removed first), the REVISION file written, then renamed into place,
    so a release directory is always complete, also when two runs unpack the
    same release at once (the second finds it there and leaves it). The
    archive is removed. False (nothing done but removing the archive) when
    the release is already there.
    """
    if not _valid_id(release_id):
        raise ReleaseStoreError(f"{release_id!r} is not a release id")
    final = os.path.join(releases_dir(root), release_id)
    if release_present(root, release_id):
        if not check:
            _unlink_quiet(archive)
        return False
    if check:
        return True
    if not os.path.isfile(archive):
        raise ReleaseStoreError(f"the archive {archive} is not on the server")
    base = releases_dir(root)
    os.makedirs(base, mode=0o755, exist_ok=True)
    _clean_stale_partials(base, release_id, time.time())
    partial = tempfile.mkdtemp(prefix=f".{release_id}.partial-", dir=base)
    try:
        os.chmod(partial, 0o755)
        try:
            _extract(archive, partial)
        except FileNotFoundError:
            if release_present(root, release_id):  # the other run was quicker
                return False
            raise
        except (tarfile.TarError, OSError) as exc:
            raise ReleaseStoreError(f"cannot unpack {archive}: {exc}") from exc
        with open(os.path.join(partial, "REVISION"), "w", encoding="utf-8") as fh:
            fh.write(revision if revision.endswith("\n") else revision + "\n")
        os.chmod(os.path.join(partial, "REVISION"), 0o644)
        if not _place(partial, final, root, release_id):
            _unlink_quiet(archive)
            return False
    finally:
        if os.path.exists(partial):
            shutil.rmtree(partial, ignore_errors=True)
    _unlink_quiet(archive)
    return True


def activate(root: str, release_id: str, check: bool = False) -> bool:
    """Point ``<root>/current`` at ``releases/<id>`` atomically (a new link
    under a temporary name renamed over the old one: ``current`` is never
    missing). False when it already points there."""
    if not _valid_id(release_id):
        raise ReleaseStoreError(f"{release_id!r} is not a release id")
    if not os.path.isdir(os.path.join(releases_dir(root), release_id)):
        raise ReleaseStoreError(f"release {release_id} does not exist under {releases_dir(root)}")
    if current_id(root) == release_id:
        return False
    if check:
        return True
    # a temporary name of this run's own: two runs may activate at once
    tmp = os.path.join(root, f".current.new-{os.getpid()}-{secrets.token_hex(4)}")
    os.symlink(os.path.join("releases", release_id), tmp)
    try:
        os.replace(tmp, os.path.join(root, "current"))
    except OSError:
        _unlink_quiet(tmp)
        raise
    return True


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def record_serving(root: str, release_id: str, record: dict | None = None, replaced: str | None = None,
                   replaced_record: dict | None = None, now: str | None = None) -> bool:
    """Say on the server that ``release_id`` serves: the current link first
    (one atomic rename: the truth a reader goes by), then its record
    (``activated_at`` and ``record``), then the record of the release it
    replaced. Called by the switch the moment the new containers take the
    traffic, in the same process, so no later step on the control node is
    needed for the server to know. Whether anything changed."""
    changed = activate(root, release_id)
    updates = dict(record or {})
    if changed or not read_record(os.path.join(releases_dir(root), release_id)).get("activated_at"):
        updates["activated_at"] = now or utc_now()
    before, after = merged_record(root, release_id, updates)
    if before != after:
        write_record(root, release_id, after)
        changed = True
    if replaced and replaced != release_id and replaced_record \
            and os.path.isdir(os.path.join(releases_dir(root), replaced)):
        before, after = merged_record(root, replaced, replaced_record)
        if before != after:
            write_record(root, replaced, after)
            changed = True
    return changed


# -- the switch in progress ------------------------------------------------

SWITCH_FILE = ".switch.json"


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of
    /proc/<pid>/stat), which tells a process from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


class SwitchJournal:
    """``<root>/.switch.json`` while a switch runs: from which releases to
    which one, by which process, and how far it got. Removed when the
    switch ends (done or given up); a file whose process is gone tells of a
    switch that was interrupted (the server died, the process was killed)."""

    def __init__(self, root: str, release: str, replacing: list, pid: int | None = None):
        self.path = os.path.join(root, SWITCH_FILE)
        pid = os.getpid() if pid is None else pid
        self.data = {"to": release, "from": sorted(set(replacing) - {release}), "pid": pid,
                     "pid_start": _proc_start(pid), "started_at": utc_now(), "stage": "starting"}

    def begin(self) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o755, exist_ok=True)
        write_json(self.path, self.data, indent=None)

    def stage(self, stage: str) -> None:
        self.data["stage"] = stage
        write_json(self.path, self.data, indent=None)

    def end(self) -> None:
        _unlink_quiet(self.path)


def read_switch(root: str) -> dict | None:
    """The switch journal, with ``running``: its process still runs."""
    try:
        with open(os.path.join(root, SWITCH_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"to": "?", "from": [], "stage": "?", "running": False, "unreadable": True}
    if not isinstance(data, dict):
        return None
    pid = int(data.get("pid") or 0)
    data["running"] = pid > 0 and _proc_start(pid) is not None and _proc_start(pid) == data.get("pid_start")
    return data


# -- which release serves ----------------------------------------------------

def running_by_release(containers: list) -> dict:
    """{release: sorted services} of the running service containers, from
    ``GET /containers/json`` documents (labels fs.role=service, fs.release,
    fs.service)."""
    out: dict = {}
    for doc in containers:
        labels = doc.get("Labels") or {}
        if labels.get("fs.role") != "service" or doc.get("State") not in ("running", "restarting"):
            continue
        out.setdefault(labels.get("fs.release", ""), set()).add(labels.get("fs.service", ""))
    return {rel: sorted(svcs) for rel, svcs in sorted(out.items())}


def _unhealthy(containers: list) -> list:
    return sorted(str((doc.get("Names") or [""])[0]).lstrip("/") for doc in containers
                  if (doc.get("Labels") or {}).get("fs.role") == "service"
                  and (doc.get("State") == "restarting" or "unhealthy" in str(doc.get("Status", ""))
                       or "health: starting" in str(doc.get("Status", ""))))


def _describe(running: dict) -> str:
    return ", ".join(f"{rel} ({', '.join(svcs)})" for rel, svcs in running.items()) or "none"


def serving_state(root: str, containers: list | None, services: list | None = None,
                  switch: dict | None = None) -> dict:
    """What serves, from the record (the current link) and the running
    containers (their release labels) together: the one answer every
    playbook goes by.

    ``state`` is one of:

    * ``agree``: the containers that run are of the recorded release (or
      nothing was deployed yet; or the containers could not be read:
      ``containers`` None, and the record is all there is);
    * ``stopped``: the record names a release but no container of the app
      runs (``serving`` None; a deploy or a rollback starts one);
    * ``reconcile``: the containers that run are all of one other release,
      every service is there and none is unhealthy: that release serves
      (``serving``), and the record can be made to say so;
    * ``switching``: a switch is running on the server at this moment;
    * ``conflict``: anything else (containers of several releases, or of
      one other release that lacks services or is unhealthy): ``problem``
      says what, ``fix`` the command that puts it right (a switch to the
      recorded release, which stops the others).

    A switch journal left by an interrupted switch is named in ``problem``.
    """
    recorded = current_id(root)
    result = {"recorded": recorded, "serving": recorded, "running": {}, "state": "agree",
              "problem": "", "fix": "", "switch": switch}
    if containers is not None:
        result["running"] = running_by_release(containers)
    running = result["running"]
    if switch and switch.get("running"):
        result.update(state="switching", problem=(
            f"a switch to {switch.get('to')} is running on the server now (process {switch.get('pid')}, "
            f"since {switch.get('started_at')}, at '{switch.get('stage')}')"),
            fix="wait until it ends (seconds, usually), then run the command again")
        return result
    interrupted = ""
    if switch:
        interrupted = (f"a switch from {', '.join(switch.get('from') or []) or 'nothing'} to "
                       f"{switch.get('to')} was interrupted at '{switch.get('stage')}' "
                       f"(started {switch.get('started_at')})")
        result["problem"] = interrupted
    if containers is None:
        return result
    releases = set(running)
    if not releases:
        if recorded:
            result.update(state="stopped", serving=None, problem="; ".join(filter(None, [
                f"no container of the app runs; the record says {recorded}", interrupted])))
        return result
    if releases == {recorded}:
        return result
    what = "; ".join(filter(None, [
        f"the record says {recorded or 'nothing'} serves, the containers that run are of "
        f"{_describe(running)}", interrupted]))
    if len(releases) == 1:
        (only,) = releases
        missing = sorted(set(services or []) - set(running[only]))
        sick = _unhealthy(containers)
        if not missing and not sick:
            result.update(state="reconcile", serving=only, problem=what)
            return result
        what += f" ({only} lacks {', '.join(missing)})" if missing else f" (unhealthy: {', '.join(sick)})"
        result["serving"] = only if not recorded else recorded
    result.update(state="conflict", problem=what,
                  fix="ansible-playbook playbooks/rollback.yml -e release="
                  + str(recorded or result["serving"] or sorted(releases)[-1]))
    return result


def serving_info(root: str, containers: list | None, services: list | None = None) -> dict:
    """``info()`` with ``serving`` (``serving_state``): the one reading of
    the release store and the containers that every playbook goes by."""
    result = info(root)
    serving = serving_state(root, containers, services, read_switch(root))
    result["serving"] = serving
    if serving["state"] == "reconcile" and serving["recorded"]:
        result["previous"] = serving["recorded"]
    return result
