# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain-Python logic of the pre-deploy checks (roles/preflight).

Stdlib only, so it runs inside Ansible modules (through
``ansible.module_utils``) and is imported directly by the unit tests:

* critical TODO markers in the app's source, listed as ``file:line: text``;
* the newest version heading of a Keep-a-Changelog ``CHANGELOG.md`` and the
  comparison with the serving release's;
* free disk space per filesystem, the needs of paths on the same
  filesystem added up.

(The migrations check runs on the control node only, as an action plugin:
plugins/plugin_utils/migrations_check.py.)
"""

from __future__ import annotations

import os
import re

# TODO(critical) / FIXME(critical), and the spelled-out form "TODO: critical".
DEFAULT_TODO_PATTERN = r"(?i)\b(?:TODO|FIXME)(?:\(critical\)|:\s*critical\b)"
# Files larger than this are not read for markers (data, bundles).
MAX_SCAN_BYTES = 2 * 1024 * 1024

# "## [1.2.0] - 2026-01-01", "## 1.2.0", "## [v1.2.0-rc.1]"; "## [Unreleased]" is not a version.
_HEADING = re.compile(
    r"^##\s+\[?v?(?P<version>\d+(?:\.\d+)*(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)\]?(?:\s|$)"
)


# -- TODO markers ----------------------------------------------------------


def _is_binary(head: bytes) -> bool:
    return b"\0" in head


def scan_markers(root: str, files, pattern: str = DEFAULT_TODO_PATTERN,
                 max_bytes: int = MAX_SCAN_BYTES) -> tuple[list[dict], int]:
    """Search the given files (relative path, absolute path) for the pattern.

    Returns (hits, files_scanned); each hit is {path, line, text}. Binary and
    oversized files and symlinks are skipped."""
    regex = re.compile(pattern)
    hits: list[dict] = []
    scanned = 0
    for relpath, abspath in files:
        if os.path.islink(abspath) or not os.path.isfile(abspath):
            continue
        if os.path.getsize(abspath) > max_bytes:
            continue
        with open(abspath, "rb") as fh:
            data = fh.read()
        if _is_binary(data[:8192]):
            continue
        scanned += 1
        text = data.decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if regex.search(line):
                hits.append({"path": relpath, "line": number, "text": line.strip()[:200]})
    hits.sort(key=lambda h: (h["path"], h["line"]))
    return hits, scanned


def format_hits(hits: list[dict], limit: int) -> list[str]:
    """``file:line: text`` for the first ``limit`` hits, and a count of the rest."""
    lines = [f"{h['path']}:{h['line']}: {h['text']}" for h in hits[:limit]]
    if len(hits) > limit:
        lines.append(f"... and {len(hits) - limit} more")
    return lines


# -- CHANGELOG --------------------------------------------------------------


def changelog_versions(text: str) -> list[str]:
    """The version headings (``## [x.y.z]``) of a changelog, in file order."""
    out = []
    for line in (text or "").splitlines():
        m = _HEADING.match(line.strip())
        if m:
            out.append(m.group("version"))
    return out


def version_key(version: str) -> tuple:
    """Sort key of a semantic version; a pre-release sorts before its release."""
    core = version.split("+", 1)[0]
    release, dummy, pre = core.partition("-")
    nums = tuple(int(p) for p in release.split("."))
    nums = nums + (0,) * (4 - len(nums)) if len(nums) < 4 else nums
    if not pre:
        return (nums, 1, ())
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (nums, 0, parts)


def newest_version(text: str) -> str | None:
    versions = changelog_versions(text)
    return max(versions, key=version_key) if versions else None


def check_changelog(new_text: str | None, serving_text: str | None) -> dict:
    """Does the new CHANGELOG have an entry newer than the serving one?

    ``new_text`` None: the new source has no CHANGELOG.md. ``serving_text``
    None: nothing serving (first deploy) or no CHANGELOG there; then one
    version entry is enough."""
    result = {"ok": False, "newest": None, "serving_newest": None, "reason": ""}
    if new_text is None:
        result["reason"] = "the source has no CHANGELOG.md"
        return result
    newest = newest_version(new_text)
    result["newest"] = newest
    if newest is None:
        result["reason"] = "CHANGELOG.md has no version entry (a heading like '## [1.0.0] - 2026-01-01')"
        return result
    serving = newest_version(serving_text) if serving_text is not None else None
    result["serving_newest"] = serving
    if serving is not None and version_key(newest) <= version_key(serving):
        result["reason"] = (
            f"CHANGELOG.md has no entry newer than {serving}, the newest entry of the serving"
            f" release (newest in the new source: {newest})")
        return result
    result["ok"] = True
    result["reason"] = (f"{newest} is newer than the serving {serving}" if serving
                        else f"newest entry {newest}")
    return result


# -- free disk ---------------------------------------------------------------


def nearest_existing(path: str) -> str:
    """The path itself, or its closest existing parent (a first deploy has
    no app_root yet; it will be created on that parent's filesystem)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def docker_root(client, fallback: str) -> str:
    """Docker's data root as the engine reports it (``GET /info``), else ``fallback``."""
    try:
        info = client.request_json("GET", "/info") or {}
    except Exception:  # noqa: BLE001 - no engine answer: the usual place is measured
        return fallback
    return str(info.get("DockerRootDir") or fallback)


def database_size_mb(client, container: str, user: str, database: str) -> int:
    """Size of the app's database in MB (rounded up), read with psql in its
    container; 0 when it cannot be read (no database yet: a first deploy)."""
    try:
        rc, out, dummy = client.exec_run(
            container, ["psql", "-X", "-At", "-U", user, "-d", database, "-c",
                        "SELECT pg_database_size(current_database())"], timeout=60)
    except Exception:  # noqa: BLE001 - container missing or engine error: nothing to back up yet
        return 0
    if rc != 0:
        return 0
    try:
        size = int(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0
    return -(-size // (1024 * 1024))


def check_disk(needs: list[dict], statvfs=os.statvfs, stat=os.stat) -> dict:
    """Group the needs ({name, path, need_mb}) by filesystem, add them up and
    compare each sum with the free space there (for unprivileged users)."""
    groups: dict = {}
    for need in needs:
        existing = nearest_existing(need["path"])
        dev = stat(existing).st_dev
        vfs = statvfs(existing)
        group = groups.setdefault(dev, {
            "path": existing,
            "free_mb": vfs.f_bavail * vfs.f_frsize // (1024 * 1024),
            "size_mb": vfs.f_blocks * vfs.f_frsize // (1024 * 1024),
            "need_mb": 0,
            "holds": [],
        })
        group["need_mb"] += int(need["need_mb"])
        group["holds"].append(f"{need['name']} {need['path']} ({int(need['need_mb'])} MB)")
    filesystems = []
    short = []
    for group in groups.values():
        group["ok"] = group["free_mb"] >= group["need_mb"]
        filesystems.append(group)
        if not group["ok"]:
            short.append(
                f"the filesystem of {group['path']} has {group['free_mb']} MB free, needs"
                f" {group['need_mb']} MB for {', '.join(group['holds'])}")
    summary = "; ".join(
        f"{g['path']}: {g['free_mb']} MB free, {g['need_mb']} MB needed" for g in filesystems)
    return {"ok": not short, "filesystems": filesystems, "short": short, "summary": summary}
