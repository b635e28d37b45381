"""The compressor stage: every CPU by default, at a low priority, the level the benchmark chose."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess

import pytest
import yaml
from fs_backup import compression

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def test_the_default_threads_are_every_cpu_this_process_may_use():
    assert compression.default_threads() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_the_compressor_runs_below_the_bots_and_the_database(kind):
    if kind == "zstd" and not shutil.which("zstd"):
        pytest.fail("zstd is not installed (scripts/setup installs it)")
    stage = compression.compressor_stage(kind, 3, 2)
    nice = shutil.which("nice")
    assert stage.argv[:3] == [nice, "-n", str(compression.NICENESS)], stage.argv
    # the prefix really lowers the priority of what follows it
    base = os.getpriority(os.PRIO_PROCESS, 0)
    got = subprocess.run([*stage.argv[:3], "nice"], capture_output=True, text=True, check=True).stdout
    assert int(got) == min(19, base + compression.NICENESS)
    # and the niced compressor still writes what its decompressor reads back
    data = b"INSERT INTO orders VALUES (1, 'repair');\n" * 5000
    packed = subprocess.run(stage.argv, input=data, capture_output=True, check=True).stdout
    assert len(packed) < len(data) / 10
    _, unpack = compression.decompressor_argv(kind, None)
    assert subprocess.run(unpack, input=packed, capture_output=True, check=True).stdout == data


def test_pigz_gets_the_threads_and_level_asked_for():
    if not shutil.which("pigz"):
        pytest.fail("pigz is not installed (scripts/setup installs it)")
    stage = compression.compressor_stage("gzip", 5, 2)
    assert stage.name == "pigz" and stage.argv[3:] == [shutil.which("pigz"), "-5", "-p", "2", "-c"]
    packed = subprocess.run(stage.argv, input=b"x" * 100000, capture_output=True, check=True).stdout
    assert gzip.decompress(packed) == b"x" * 100000  # plain gzip, as the seed's .sql.gz


def test_the_role_default_level_is_the_programs():
    with open(os.path.join(ROOT, "roles", "backup", "defaults", "main.yml"), encoding="utf-8") as fh:
        defaults = yaml.safe_load(fh)
    with open(os.path.join(ROOT, "roles", "backup", "meta", "argument_specs.yml"), encoding="utf-8") as fh:
        specs = yaml.safe_load(fh)
    options = specs["argument_specs"]["main"]["options"]
    assert defaults["backup_level"] == options["backup_level"]["default"] == 5
    assert compression.DEFAULT_LEVELS["gzip"] == 5
    assert defaults["backup_threads"] == options["backup_threads"]["default"] == 0
