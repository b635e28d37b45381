"""Release records on the server: what was deployed, when, and what to keep.

Every release lives in ``<root>/releases/<id>/`` and carries ``RELEASE.json``.
"current" is read from the ``<root>/current`` link and "previous" from the
records' activation times, never from directory mtimes (they lie after a copy
or a restore). Plain stdlib so that it runs without Ansible and is unit tested
as is.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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


def plan_prune(root: str, keep: int) -> list[str]:
    """Ids to delete so that at most ``keep`` releases remain.

    The current and the previous release are never deleted, whatever ``keep``
    says; the newest releases (by record, not mtime) are kept first.
    """
    if keep < 1:
        raise ReleaseStoreError("keep must be at least 1")
    rels = ordered(list_releases(root))
    protected = {current_id(root), previous_id(root, rels)} - {None}
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


def write_record(root: str, release_id: str, record: dict) -> None:
    path = os.path.join(releases_dir(root), release_id)
    fd, tmp = tempfile.mkstemp(prefix=".RELEASE.", dir=path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(path, RECORD_NAME))
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
