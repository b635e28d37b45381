"""Shared helpers of the benchmarks: an isolated deployment of the sample app on
this machine (the integration tests' harness), `ansible-playbook` runs timed
with Ansible's per-task profile, the load generator, and JSON results.

The benchmarks are commands, not tests: each prints its figures and writes
``bench/results/<name>.json``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import fleet  # noqa: E402,F401  (re-exported: the fleet of the test bed)
import testbed  # noqa: E402,F401  (re-exported)
from harness import PYTHON, Deployment, add_changelog_entry, make_source  # noqa: E402
from load import LoadGenerator, summarize  # noqa: E402,F401  (re-exported)
from traffic import SECRET_HEADER, PollingFeed, proxy_port, webhook_load, webhook_outcome  # noqa: E402,F401  (re-exported)

PROFILE_LINE = re.compile(r"^(?P<task>.+?) -{3,} (?P<seconds>\d+\.\d+)s\s*$")


def new_deployment(prefix: str, workdir: str | None = None, **extravars) -> Deployment:
    """An isolated app (own names, directories and loopback ports) on this machine."""
    def make(name: str) -> str:
        work = workdir or os.path.join("/tmp", "fs-bench", name)
        os.makedirs(work, exist_ok=True)
        return work

    d = Deployment.isolated(prefix, make)
    d.extravars["app_proxy_port"] = d.telegram_port + 1
    d.extravars.update(extravars)
    return d


def source(d: Deployment, version: int = 1, app_version: str | None = None) -> str:
    """Write the sample app's source (v1 or v2). app_version changes only the
    app's code (its VERSION file), with the CHANGELOG entry a release needs."""
    src = os.path.join(d.workdir, "src")
    make_source(src, version)
    if app_version:
        with open(os.path.join(src, "field_service", "VERSION"), "w", encoding="utf-8") as fh:
            fh.write(app_version + "\n")
        add_changelog_entry(src, app_version, time.strftime("%Y-%m-%d"))
    return src


def run_playbook(d: Deployment, playbook: str = "deploy.yml", log_name: str | None = None,
                 profile: bool = True, nice: int = 0, **extra) -> dict:
    """Run ansible-playbook as a user would (a process of its own), timed.

    ``nice`` > 0 runs it (and what it runs on the control node) at that lower
    CPU priority: on this one machine the control node shares the server's
    cores, where in production it is a workstation or a CI runner.
    Returns rc, seconds (wall clock of the whole command), started (its
    time.monotonic() at the start), the per-task profile
    (Ansible's ansible.posix.profile_tasks, slowest first) and the output file.
    """
    log_name = log_name or f"{playbook}.{uuid.uuid4().hex[:6]}.out"
    varfile = os.path.join(d.workdir, f"{log_name}.vars.json")
    with open(varfile, "w", encoding="utf-8") as fh:
        json.dump(d.vars(**extra), fh)
    env = d.env()
    env["ANSIBLE_CALLBACKS_ENABLED"] = ("fieldservice.deploy.deploy_log"
                                        + (",ansible.posix.profile_tasks" if profile else ""))
    env["PROFILE_TASKS_TASK_OUTPUT_LIMIT"] = "all"
    env["PROFILE_TASKS_SORT_ORDER"] = "descending"
    out_path = os.path.join(d.workdir, log_name)
    start = time.monotonic()
    with open(out_path, "w", encoding="utf-8") as out:
        rc = subprocess.run(
            (["nice", "-n", str(nice)] if nice > 0 else [])
            + [os.path.join(os.path.dirname(PYTHON), "ansible-playbook"), "-i", d.inventory,
             os.path.join(ROOT, "playbooks", playbook), "-e", f"@{varfile}"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, check=False,
        ).returncode
    seconds = time.monotonic() - start
    with open(out_path, encoding="utf-8") as fh:
        text = fh.read()
    return {"rc": rc, "seconds": round(seconds, 2), "started": start, "profile": parse_profile(text),
            "output": out_path, "tail": text[-3000:] if rc else ""}


def parse_profile(text: str) -> list[tuple[str, float]]:
    """The TASKS RECAP of profile_tasks as (task, seconds), slowest first."""
    if "TASKS RECAP" not in text:
        return []
    recap = text.split("TASKS RECAP", 1)[1]
    tasks = []
    for line in recap.splitlines():
        m = PROFILE_LINE.match(line.strip())
        if m:
            tasks.append((m["task"].strip(), float(m["seconds"])))
    tasks.sort(key=lambda t: -t[1])
    return tasks


def median(values):
    return round(statistics.median(values), 2) if values else None


def machine() -> dict:
    load1, load5, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_1m_at_start": round(load1, 2),
        "load_avg_5m_at_start": round(load5, 2),
        "docker": subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                 capture_output=True, text=True, check=False).stdout.strip(),
    }


def write_result(name: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    data = {**data, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")
    return path
