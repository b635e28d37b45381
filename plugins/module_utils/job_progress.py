# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far a long background job (an Ansible async job) has come.

The deploy runs its long steps (the backup, the image build, a restore) as
async jobs and waits for them with the ``job_progress`` module, whose every
answer carries a line of progress for the console: the bytes the backup
program says it wrote or loaded (its ``--progress-file``), or the build step
the Docker engine runs now. Plain functions, tested without Ansible.
"""

from __future__ import annotations

import json
import os
import re
import time

_DIRECTIVE = re.compile(r"#\s*(syntax|escape|check)\s*=", re.IGNORECASE)
_COMMAND_CHARS = 72


class JobMissing(Exception):
    """No job file: the job id is wrong, or the job was cleaned up."""


def job_state(job_path: str) -> bool:
    """Whether the async job whose job file is ``job_path`` has finished.

    The rules are ``async_status``'s: a job file without ``started`` is the
    job's result; one not written completely yet is a job that runs.
    """
    try:
        with open(job_path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError as exc:
        raise JobMissing(f"could not find job {os.path.basename(job_path)} ({job_path})") from exc
    try:
        data = json.loads(text)
    except ValueError:
        return False
    if not isinstance(data, dict):
        return False
    return "started" not in data or bool(data.get("finished"))


def job_result(job_path: str) -> dict:
    """The result of a finished job, as ``async_status`` gives it: the job
    file's JSON with ``finished`` true."""
    with open(job_path, encoding="utf-8") as handle:
        data = json.load(handle)
    data["finished"] = True
    return data


def wait_for_job(job_path: str, wait: float, step: float = 0.1,
                 clock=time.monotonic, sleep=time.sleep) -> bool:
    """Wait up to ``wait`` seconds for the job to finish; whether it did."""
    deadline = clock() + max(0.0, wait)
    while True:
        if job_state(job_path):
            return True
        left = deadline - clock()
        if left <= 0:
            return False
        sleep(min(step, left))


def human_bytes(count: int) -> str:
    """``12345678`` -> ``12.3 MB`` (powers of 1000, as disks and networks count)."""
    value = float(max(0, int(count)))
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            if unit == "bytes":
                return f"{int(value)} bytes"
            return f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def file_progress(path: str, since: float | None = None) -> str:
    """The line of a backup program's progress file; "" when there is none yet
    (or only one older than ``since``, epoch seconds: another run's).

    ``{"note": "..."}`` is said as is, ``{"bytes": N, "verb": "written"}`` as
    ``12.3 MB written``.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            if since is not None and os.fstat(handle.fileno()).st_mtime < since:
                return ""
            data = json.load(handle)
    except (OSError, ValueError):
        return ""
    if not isinstance(data, dict):
        return ""
    if data.get("note"):
        return str(data["note"])
    if "bytes" in data and data.get("verb"):
        try:
            return f"{human_bytes(int(data['bytes']))} {data['verb']}"
        except (TypeError, ValueError):
            return ""
    return ""


def dockerfile_steps(text: str) -> list[str]:
    """The instructions of a Dockerfile, continuation lines joined, as the
    classic builder counts them in ``Step N/M`` (runs of white space as one)."""
    escape = "\\"
    lines = text.splitlines()
    for line in lines:  # parser directives come first, before any instruction or comment
        match = re.match(r"#\s*escape\s*=\s*(\S)", line.strip(), re.IGNORECASE)
        if match:
            escape = match.group(1)
        if not _DIRECTIVE.match(line.strip()):
            break
    steps: list[str] = []
    current = ""
    for raw in lines:
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith(escape):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            steps.append(_squash(current))
        current = ""
    if current.strip():
        steps.append(_squash(current))
    return steps


def _squash(text: str) -> str:
    return " ".join(text.split())


def container_instruction(cmd: list[str] | None) -> str | None:
    """The instruction an intermediate container of the classic builder runs,
    from its ``Config.Cmd``: ``RUN pip install ...``, ``WORKDIR /app``."""
    if not cmd:
        return None
    if len(cmd) >= 3 and cmd[1] == "-c" and cmd[0].endswith("sh"):
        body = cmd[2]
        if body.startswith("#(nop)"):  # ["/bin/sh", "-c", "#(nop) ", "WORKDIR /app"]
            return _squash(" ".join(cmd[2:])[len("#(nop)"):]) or None
        return "RUN " + _squash(body)
    return "RUN " + json.dumps(cmd)


def _step_matches(step: str, instruction: str) -> bool:
    keyword, _sep, rest = step.partition(" ")
    if keyword.upper() == "RUN" and instruction.startswith("RUN ["):
        try:
            return json.loads(rest) == json.loads(instruction[4:])
        except ValueError:
            return False
    return _squash(f"{keyword.upper()} {rest}") == instruction


def _shorten(text: str, limit: int = _COMMAND_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def newest_intermediate(containers: list[dict], since: float) -> str | None:
    """The id of the newest intermediate container of a classic-builder build.

    ``containers`` as ``GET /containers/json?all=1`` lists them: such a container
    has the image id (``sha256:...``) as its image; only those created at or
    after ``since`` (epoch seconds, the job's start) count.
    """
    newest = None
    for item in containers:
        if not str(item.get("Image") or "").startswith("sha256:"):
            continue
        created = item.get("Created")
        if not isinstance(created, (int, float)) or created < since:
            continue
        if newest is None or created >= newest[0]:
            newest = (created, item.get("Id"))
    return None if newest is None else newest[1]


def build_step(cmd: list[str] | None, steps: list[str]) -> str:
    """What the build runs, from its intermediate container's ``Config.Cmd``:
    ``step 3 of 7: RUN pip install -r requirements.txt`` when the instruction
    is one of ``steps`` (the Dockerfile's), else the instruction alone."""
    instruction = container_instruction(cmd)
    if instruction is None:
        return ""
    for index, step in enumerate(steps, start=1):
        if _step_matches(step, instruction):
            return f"step {index} of {len(steps)}: {_shorten(instruction)}"
    return _shorten(instruction)
