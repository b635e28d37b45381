"""The app's own Python environment for its tests and Alembic (plugin_utils/app_env.py).

Real virtualenvs are made (``python3 -m venv``); pip runs with ``--no-index``
so nothing is downloaded: an empty requirements file installs nothing, an
unknown package fails at once.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from ansible_collections.fieldservice.deploy.plugins.plugin_utils import app_env

BASE = "python3"


def params(path, cache, **extra):
    p = {"path": str(path), "python": "auto", "venv_dirs": [".venv"],
         "requirements": ["requirements.txt", "requirements-dev.txt"], "extra_packages": [],
         "base_python": BASE, "pip_args": ["--no-index"], "cache_dir": str(cache), "timeout": 300}
    p.update(extra)
    return p


def test_a_python_that_is_set_is_used_as_it_is(tmp_path):
    found = app_env.resolve(params(tmp_path, tmp_path / "cache", python="/opt/app/bin/python"))
    assert found["python"] == "/opt/app/bin/python"
    assert found["source"] == "setting"
    assert not (tmp_path / "cache").exists()


def test_the_apps_own_virtualenv_comes_first(tmp_path):
    py = tmp_path / ".venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\n")
    py.chmod(0o755)
    (tmp_path / "requirements.txt").write_text("nothing-installable\n")
    found = app_env.resolve(params(tmp_path, tmp_path / "cache"))
    assert found == {**found, "python": str(py), "source": "venv", "built": False}


def test_without_a_venv_or_requirements_the_error_names_the_settings(tmp_path):
    with pytest.raises(app_env.AppEnvError) as err:
        app_env.resolve(params(tmp_path, tmp_path / "cache"))
    text = str(err.value)
    assert "preflight_app_python" in text and "preflight_app_requirements" in text
    assert ".venv, requirements.txt, requirements-dev.txt" in text
    assert app_env.DOCS in text
    result = app_env.run(params(tmp_path, tmp_path / "cache"))
    assert result["failed"] and result["msg"].startswith("Pre-deploy check failed:")


def test_the_cache_key_follows_every_ingredient():
    base = app_env.cache_key({"requirements.txt": b"a==1\n"}, ["pytest"], "3.11.2", [])
    assert base == app_env.cache_key({"requirements.txt": b"a==1\n"}, ["pytest"], "3.11.2", [])
    others = {
        app_env.cache_key({"requirements.txt": b"a==2\n"}, ["pytest"], "3.11.2", []),
        app_env.cache_key({"requirements-dev.txt": b"a==1\n"}, ["pytest"], "3.11.2", []),
        app_env.cache_key({"requirements.txt": b"a==1\n"}, [], "3.11.2", []),
        app_env.cache_key({"requirements.txt": b"a==1\n"}, ["pytest"], "3.12.1", []),
        app_env.cache_key({"requirements.txt": b"a==1\n"}, ["pytest"], "3.11.2", ["--no-index"]),
    }
    assert base not in others and len(others) == 5


def test_a_virtualenv_is_made_once_from_the_requirements_and_reused(tmp_path):
    (tmp_path / "requirements.txt").write_text("# nothing to install\n")
    cache = tmp_path / "cache"
    first = app_env.resolve(params(tmp_path, cache))
    assert first["source"] == "cache" and first["built"] is True
    assert first["files"] == ["requirements.txt"]
    assert first["python"].startswith(str(cache))
    # it is a real interpreter of a virtualenv (its prefix is the venv)
    prefix = subprocess.run([first["python"], "-c", "import sys; print(sys.prefix)"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert prefix == first["venv"]
    again = app_env.resolve(params(tmp_path, cache))
    assert again["built"] is False and again["python"] == first["python"]
    # another requirements file: another virtualenv
    (tmp_path / "requirements-dev.txt").write_text("# dev\n")
    dev = app_env.resolve(params(tmp_path, cache))
    assert dev["built"] is True and dev["key"] != first["key"]
    assert dev["files"] == ["requirements-dev.txt", "requirements.txt"]


def test_a_failed_build_is_never_used_and_is_built_again(tmp_path):
    (tmp_path / "requirements.txt").write_text("no-such-package-fs-test==1.0\n")
    cache = tmp_path / "cache"
    with pytest.raises(app_env.AppEnvError) as err:
        app_env.resolve(params(tmp_path, cache))
    assert "pip install of the app's requirements (requirements.txt) failed" in str(err.value)
    key = app_env.cache_key({"requirements.txt": b"no-such-package-fs-test==1.0\n"}, [],
                            app_env._python_version(BASE), ["--no-index"])
    assert (cache / key / "bin" / "python").exists()  # half made...
    assert not (cache / key / app_env.COMPLETE).exists()  # ...and not marked complete
    with pytest.raises(app_env.AppEnvError):  # so it is never taken as made
        app_env.resolve(params(tmp_path, cache))


def test_an_interrupted_build_is_built_again(tmp_path):
    (tmp_path / "requirements.txt").write_text("\n")
    cache = tmp_path / "cache"
    first = app_env.resolve(params(tmp_path, cache))
    os.remove(os.path.join(first["venv"], app_env.COMPLETE))  # as if killed before the end
    again = app_env.resolve(params(tmp_path, cache))
    assert again["built"] is True and again["key"] == first["key"]
    assert os.path.isfile(os.path.join(again["venv"], app_env.COMPLETE))


def test_a_base_python_that_does_not_run_is_named(tmp_path):
    (tmp_path / "requirements.txt").write_text("\n")
    with pytest.raises(app_env.AppEnvError) as err:
        app_env.resolve(params(tmp_path, tmp_path / "cache", base_python=str(tmp_path / "nope")))
    assert "preflight_app_venv_python" in str(err.value)


def test_a_build_waits_for_another_runs_lock(tmp_path):
    """Two deploys at once: the second waits for the first's lock, then uses its venv."""
    (tmp_path / "requirements.txt").write_text("\n")
    cache = tmp_path / "cache"
    first = app_env.resolve(params(tmp_path, cache))
    lock = cache / f"{first['key']}.lock"
    holder = subprocess.Popen(["/usr/bin/flock", str(lock), "sleep", "1.5"])
    try:
        time.sleep(0.3)
        start = time.monotonic()
        again = app_env.resolve(params(tmp_path, cache))
        waited = time.monotonic() - start
    finally:
        holder.wait()
    assert again["built"] is False
    assert waited >= 1.0, waited


def test_what_a_requirements_file_brings_in_is_part_of_the_key(tmp_path):
    # -r / -c includes (relative to the including file) and a local
    # --find-links folder, as the bot kit's adoption uses (wheels/)
    (tmp_path / "reqs").mkdir()
    (tmp_path / "wheels").mkdir()
    (tmp_path / "requirements.txt").write_text("-r reqs/base.txt\n--find-links wheels\nkit==0.1.0\n"
                                               "-f https://example.org/simple\n")
    (tmp_path / "reqs" / "base.txt").write_text("-c pins.txt\npsycopg\n")
    (tmp_path / "reqs" / "pins.txt").write_text("psycopg==3.3.9\n")
    (tmp_path / "wheels" / "kit-0.1.0-py3-none-any.whl").write_bytes(b"one")
    got = app_env.requirement_inputs(str(tmp_path), ["requirements.txt", "requirements-dev.txt"])
    assert sorted(got) == ["reqs/base.txt", "reqs/pins.txt", "requirements.txt",
                           "wheels/kit-0.1.0-py3-none-any.whl"]

    def key_now() -> str:
        inputs = app_env.requirement_inputs(str(tmp_path), ["requirements.txt"])
        return app_env.cache_key(inputs, [], "3.11", [])

    key = key_now()
    assert key == app_env.cache_key(got, [], "3.11", [])
    # the same wheel name rebuilt, a changed pin: other keys
    (tmp_path / "wheels" / "kit-0.1.0-py3-none-any.whl").write_bytes(b"two")
    rebuilt = key_now()
    (tmp_path / "reqs" / "pins.txt").write_text("psycopg==3.3.8\n")
    repinned = key_now()
    assert len({key, rebuilt, repinned}) == 3
    # a plain requirements file keys as before (caches made earlier stay valid)
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "requirements.txt").write_text("x==1\n")
    assert app_env.requirement_inputs(str(plain), ["requirements.txt"]) == {"requirements.txt": b"x==1\n"}
