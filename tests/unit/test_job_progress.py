"""How far a long async job has come (plugins/module_utils/job_progress.py): the
async job file's rules, the backup program's progress file, the build step from
the engine's intermediate container, numbered as the classic builder does."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.fieldservice.deploy.plugins.module_utils import job_progress as jp


def test_the_job_file_rules_are_async_status_ones(tmp_path):
    job = tmp_path / "123.456"
    with pytest.raises(jp.JobMissing, match="could not find job 123.456"):
        jp.job_state(str(job))
    job.write_text(json.dumps({"started": True, "finished": False, "ansible_job_id": "123.456"}))
    assert jp.job_state(str(job)) is False
    job.write_text('{"started": tr')  # being written
    assert jp.job_state(str(job)) is False
    job.write_text(json.dumps({"rc": 0, "stdout": "{}", "changed": True}))  # the job's result
    assert jp.job_state(str(job)) is True
    job.write_text(json.dumps({"started": 1, "finished": 1}))
    assert jp.job_state(str(job)) is True


def test_the_wait_ends_when_the_job_does_or_when_the_time_is_up(tmp_path):
    job = tmp_path / "j"
    job.write_text(json.dumps({"started": True, "finished": False}))
    now = [0.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds
        if now[0] >= 0.5:
            job.write_text(json.dumps({"rc": 0}))

    assert jp.wait_for_job(str(job), 2.0, clock=lambda: now[0], sleep=sleep) is True
    assert 0.5 <= now[0] < 0.7 and all(s <= 0.1 for s in sleeps)
    job.write_text(json.dumps({"started": True, "finished": False}))
    now[0] = 0.0
    def tick(seconds):
        now[0] += seconds

    assert jp.wait_for_job(str(job), 0.35, clock=lambda: now[0], sleep=tick) is False
    assert now[0] == pytest.approx(0.35)


@pytest.mark.parametrize(("count", "text"), [
    (0, "0 bytes"), (999, "999 bytes"), (1000, "1.0 kB"), (12345678, "12.3 MB"),
    (4_200_000_000, "4.2 GB"), (7 * 10**15, "7000.0 TB"), (-5, "0 bytes"),
])
def test_bytes_in_words(count, text):
    assert jp.human_bytes(count) == text


@given(st.integers(min_value=0, max_value=10**14), st.integers(min_value=0, max_value=10**14))
def test_more_bytes_never_read_as_fewer(a, b):
    def value(text):
        number, unit = text.split()
        return float(number) * {"bytes": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
    low, high = sorted((a, b))
    assert value(jp.human_bytes(low)) <= value(jp.human_bytes(high))
    assert abs(value(jp.human_bytes(a)) - a) <= max(1, a * 0.051)


def test_the_backup_programs_progress_file(tmp_path):
    path = tmp_path / "progress"
    assert jp.file_progress(str(path)) == ""  # not written yet
    path.write_text(json.dumps({"note": "waiting for the backup lock (another backup runs)", "updated": 1}))
    assert jp.file_progress(str(path)) == "waiting for the backup lock (another backup runs)"
    path.write_text(json.dumps({"verb": "written", "bytes": 12345678, "updated": 1}))
    assert jp.file_progress(str(path)) == "12.3 MB written"
    path.write_text(json.dumps({"verb": "of SQL loaded", "bytes": 0}))
    assert jp.file_progress(str(path)) == "0 bytes of SQL loaded"
    # another run's file (older than this job) says nothing
    os.utime(path, (1000, 1000))
    assert jp.file_progress(str(path), since=2000) == "" and jp.file_progress(str(path), since=999) != ""
    for broken in ("{", "[]", '{"bytes": "x", "verb": "written"}', '{"verb": "written"}'):
        path.write_text(broken)
        assert jp.file_progress(str(path)) == "", broken


SAMPLE = """\
# syntax=docker/dockerfile:1
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --system app
COPY requirements.txt ./
RUN pip install --no-cache-dir \\
    # a comment inside the instruction
    -r requirements.txt
RUN ["python", "-c", "print(1)"]
USER app
"""


def test_the_dockerfile_is_counted_as_the_classic_builder_counts_it():
    steps = jp.dockerfile_steps(SAMPLE)
    assert steps == [
        "ARG BASE_IMAGE=python:3.11-slim", "FROM ${BASE_IMAGE}",
        "ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1", "WORKDIR /app",
        "RUN useradd --system app", "COPY requirements.txt ./",
        "RUN pip install --no-cache-dir -r requirements.txt",
        'RUN ["python", "-c", "print(1)"]', "USER app",
    ]
    # the escape directive changes the continuation character
    assert jp.dockerfile_steps("# escape=`\nFROM x\nRUN a `\n  b\n") == ["FROM x", "RUN a b"]


def test_the_build_step_from_the_intermediate_container():
    steps = jp.dockerfile_steps(SAMPLE)
    shell = ["/bin/sh", "-c"]
    assert jp.build_step(shell + ["pip install --no-cache-dir     -r requirements.txt"], steps) == \
        "step 7 of 9: RUN pip install --no-cache-dir -r requirements.txt"
    assert jp.build_step(shell + ["useradd --system app"], steps) == "step 5 of 9: RUN useradd --system app"
    assert jp.build_step(shell + ["#(nop) ", "WORKDIR /app"], steps) == "step 4 of 9: WORKDIR /app"
    assert jp.build_step(shell + ["#(nop)  WORKDIR /app"], steps) == "step 4 of 9: WORKDIR /app"
    exec_form = jp.build_step(["python", "-c", "print(1)"], steps)
    assert exec_form == 'step 8 of 9: RUN ["python", "-c", "print(1)"]'
    # not in the Dockerfile (another build, another file): the instruction alone, shortened
    long = "apt-get install -y " + " ".join(f"package{i}" for i in range(30))
    text = jp.build_step(shell + [long], steps)
    assert text.startswith("RUN apt-get install -y package0") and text.endswith("...") and len(text) == 72
    assert jp.build_step(None, steps) == "" and jp.build_step([], steps) == ""


def test_the_newest_intermediate_container_of_the_job():
    listed = [
        {"Id": "app", "Image": "fs-app:abc", "Created": 200},              # a service container
        {"Id": "old", "Image": "sha256:" + "1" * 64, "Created": 90},        # before the job started
        {"Id": "step3", "Image": "sha256:" + "2" * 64, "Created": 150},
        {"Id": "step4", "Image": "sha256:" + "3" * 64, "Created": 160},
        {"Id": "odd", "Image": "sha256:" + "4" * 64, "Created": "2026-12-03T00:00:00Z"},
    ]
    assert jp.newest_intermediate(listed, since=100) == "step4"
    assert jp.newest_intermediate(listed, since=161) is None
    assert jp.newest_intermediate([], since=0) is None


def test_a_finished_jobs_result_is_the_job_file_with_finished(tmp_path):
    job = tmp_path / "j"
    job.write_text(json.dumps({"rc": 3, "stdout": "x", "failed": True, "msg": "non-zero return code"}))
    assert jp.job_result(str(job)) == {"rc": 3, "stdout": "x", "failed": True, "msg": "non-zero return code",
                                       "finished": True}
