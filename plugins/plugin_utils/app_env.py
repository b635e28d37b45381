# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app's own Python environment on the control node, for its tests and
its Alembic (the logic of the ``app_env`` action; stdlib only).

The pre-deploy tests and the migrations check import the app and its
libraries (``telegram``, ``aiogram``, ``psycopg``...), which the tool's own
virtualenv does not have. In order:

1. ``python`` given (the setting ``preflight_app_python``): that interpreter.
2. The app's own virtualenv, ``<source>/.venv`` (or another name in
   ``venv_dirs``): its ``bin/python``.
3. The app's requirements files (``requirements``, the ones that exist):
   a virtualenv made from them with ``base_python -m venv`` and pip, plus
   ``extra_packages`` (pytest by default), kept in ``cache_dir`` under the
   hash of the files' contents, the extras and the base Python's version:
   the next deploy with the same requirements reuses it (seconds, not a
   pip install). Built under a lock (two deploys at once build it once),
   marked complete only when pip succeeded: an interrupted build is built
   again, never used half-made.
4. Otherwise an error that names the settings.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time

DOCS = "docs/configuration.md#preflight"
COMPLETE = ".fs-complete.json"


class AppEnvError(Exception):
    """No environment to run the app's tests in (the message names the settings)."""


def _python_version(python: str, timeout: float = 60) -> str:
    try:
        proc = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AppEnvError(f"the Python {python!r} does not run ({exc}); set preflight_app_venv_python "
                          f"to an interpreter on the control node (see {DOCS})") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-300:]
        raise AppEnvError(f"the Python {python!r} does not run (exit {proc.returncode}: {tail}); "
                          f"set preflight_app_venv_python (see {DOCS})")
    return proc.stdout.strip()


def cache_key(files: dict, extra_packages: list, base_version: str, pip_args: list) -> str:
    """The cache entry's name: a hash of what the virtualenv is made of.

    ``files``: {relative name: bytes}. Any change in a requirements file, in
    the extras, the pip arguments or the base Python gives another key.
    """
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(b"file\0" + name.encode() + b"\0" + files[name] + b"\0")
    h.update(b"extras\0" + json.dumps(sorted(extra_packages)).encode())
    h.update(b"pip\0" + json.dumps(list(pip_args)).encode())
    h.update(b"python\0" + base_version.encode())
    return h.hexdigest()[:20]


_INCLUDE = re.compile(r"^\s*(-r|--requirement|-c|--constraint|-f|--find-links)(?:\s+|=)(\S+)")


def requirement_inputs(path: str, names: list) -> dict:
    """{name: bytes} of the requirements files found under ``path`` and of
    what they bring in: the files their ``-r``/``-c`` lines include (relative
    to the including file, recursively) and the files of a local
    ``--find-links`` folder (a wheel rebuilt under the same name changes the
    key too). Remote URLs are left out."""
    out: dict = {}
    todo = [os.path.join(path, n) for n in names]
    while todo:
        full = todo.pop(0)
        rel = os.path.relpath(full, path)
        if rel in out or not os.path.isfile(full):
            continue
        with open(full, "rb") as fh:
            out[rel] = fh.read()
        for line in out[rel].decode("utf-8", "replace").splitlines():
            match = _INCLUDE.match(line)
            if not match or "://" in match.group(2):
                continue
            target = os.path.join(os.path.dirname(full), match.group(2))
            if match.group(1) in ("-f", "--find-links"):
                if os.path.isdir(target):
                    todo.extend(os.path.join(target, n) for n in sorted(os.listdir(target)))
            else:
                todo.append(target)
    return out


def _venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def _run(argv: list, timeout: float, what: str) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AppEnvError(f"{what} took longer than {timeout:g} s; raise preflight_app_venv_timeout "
                          f"(see {DOCS})") from exc
    except OSError as exc:
        raise AppEnvError(f"{what} could not run: {exc}") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise AppEnvError(f"{what} failed (exit {proc.returncode}): {tail}")


def build_venv(venv: str, base_python: str, requirement_paths: list, extra_packages: list,
               pip_args: list, timeout: float) -> None:
    """A fresh virtualenv at ``venv`` with the requirements installed."""
    if os.path.isdir(venv):
        shutil.rmtree(venv)
    _run([base_python, "-m", "venv", venv], timeout,
         f"{base_python} -m venv {venv} (preflight_app_venv_python; on Debian it needs python3-venv)")
    argv = [_venv_python(venv), "-m", "pip", "install", "--disable-pip-version-check", "-q", *pip_args]
    for path in requirement_paths:
        argv += ["-r", path]
    argv += list(extra_packages)
    if requirement_paths or extra_packages:
        _run(argv, timeout, "pip install of the app's requirements (" + ", ".join(
            [os.path.basename(p) for p in requirement_paths] + list(extra_packages)) + ")")


def resolve(params: dict, clock=time.monotonic) -> dict:
    """The interpreter to run the app's tests and Alembic with.

    Returns {python, source (setting|venv|cache), venv, built, key, files, seconds}.
    Raises AppEnvError when there is none, or the build failed.
    """
    start = clock()
    path = params["path"]
    given = (params.get("python") or "auto").strip()
    out = {"python": "", "source": "", "venv": "", "built": False, "key": "", "files": [], "seconds": 0.0}
    if given != "auto":
        out.update(python=given, source="setting")
        return out
    for name in params.get("venv_dirs") or [".venv"]:
        candidate = _venv_python(os.path.join(path, name))
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            out.update(python=candidate, source="venv", venv=os.path.join(path, name))
            return out
    wanted = list(params.get("requirements") or [])
    inputs = requirement_inputs(path, wanted)
    files = [n for n in wanted if n in inputs]  # what pip is given; the key has all the inputs
    if not files:
        looked = ", ".join((params.get("venv_dirs") or [".venv"]) + list(params.get("requirements") or []))
        raise AppEnvError(
            f"the app's tests and Alembic need the app's own Python environment, and {path} has none of "
            f"{looked}. Set preflight_app_python to the interpreter of a virtualenv that has the app's "
            f"dependencies, or preflight_app_requirements to its requirements files (see {DOCS})")
    base = params.get("base_python") or "python3"
    extras = list(params.get("extra_packages") or [])
    pip_args = list(params.get("pip_args") or [])
    key = cache_key(inputs, extras, _python_version(base), pip_args)
    cache = os.path.expanduser(params.get("cache_dir") or "~/.cache/fieldservice-deploy/app-venvs")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    venv = os.path.join(cache, key)
    out.update(key=key, venv=venv, python=_venv_python(venv), source="cache", files=sorted(files))
    with open(os.path.join(cache, f"{key}.lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = os.path.join(venv, COMPLETE)
        if not os.path.isfile(marker) or not os.path.isfile(out["python"]):
            build_venv(venv, base, [os.path.join(path, n) for n in sorted(files)], extras, pip_args,
                       float(params.get("timeout") or 900))
            with open(marker, "w", encoding="utf-8") as fh:
                json.dump({"files": sorted(files), "extra_packages": extras, "base_python": base,
                           "built_at": time.time()}, fh)
            out["built"] = True
    out["seconds"] = round(clock() - start, 2)
    return out


def run(params: dict) -> dict:
    """The action's result: ``failed`` with ``msg`` when there is no environment."""
    try:
        found = resolve(params)
    except AppEnvError as exc:
        return {"failed": True, "changed": False, "msg": f"Pre-deploy check failed: {exc}"}
    return {"changed": found["built"], **found}
