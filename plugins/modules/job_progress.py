#!/usr/bin/python
# Copyright (c) 2026, field-service-deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ansible module: wait a little for an async job, and say how far it has come."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: job_progress
short_description: Wait for a long async job, with a line of progress at every answer
description:
  - >-
    The long steps of a deploy, a rollback and a restore (the backup, the image build, loading
    a backup) run as async jobs (C(async) with C(poll) 0); this module waits for one of them in an
    C(until) loop, like M(ansible.builtin.async_status), and each of its answers carries
    RV(progress), which the C(fieldservice.deploy.console) callback shows
    (C(Creating backup... still running, 20.0 s: 12.3 MB written)).
  - >-
    Each answer waits up to O(wait) seconds for the job to end, so the loop needs no C(delay)
    and a job that ends is seen at once.
  - >-
    The progress is the backup program's O(progress_file) (the bytes written or loaded, or what
    it waits for), or, with O(dockerfile), the build step the Docker engine runs now (the newest
    intermediate container of the classic builder, numbered as in the Dockerfile:
    C(step 4 of 9: RUN pip install -r requirements.txt)); an empty string when there is none yet.
  - >-
    When the job has ended, the answer is the job's own result, as
    M(ansible.builtin.async_status) gives it (C(rc), C(stdout), C(failed), ...), plus RV(finished)
    and RV(progress); the job file and O(progress_file) are then removed (one call for what
    C(async_status) does in its two modes).
  - >-
    An action plugin runs it (it knows the async directory of the remote shell).
version_added: "0.5.0"
author: Field Service deploy contributors (@field-service-deploy)
seealso:
  - module: ansible.builtin.async_status
    description: The same wait, without progress.
  - module: fieldservice.deploy.secret_file
    description: Hands a secret to a job without putting it in the job's arguments.
options:
  jid:
    description: The job's id (C(ansible_job_id) in the result of the task that started it with C(poll) 0).
    type: str
    required: true
  wait:
    description: Seconds each answer waits for the job to end.
    type: float
    default: 2
  progress_file:
    description:
      - >-
        The JSON file the backup program keeps its progress in (its C(--progress-file)),
        C({"note": "..."}) or C({"bytes": N, "verb": "written"}).
    type: path
  async_dir:
    description:
      - The folder of the async job files on the remote host. The action plugin sets it to the remote
        shell's C(async_dir), as M(ansible.builtin.async_status) does.
    type: path
    default: ~/.ansible_async
  dockerfile:
    description:
      - The Dockerfile the job builds from, on the remote host; the progress is then the build
        step the engine runs.
    type: path
extends_documentation_fragment:
  - fieldservice.deploy.common.docker
attributes:
  check_mode:
    support: none
    description: A job started in check mode did not start; there is nothing to wait for.
  diff_mode:
    support: none
    description: It only reads.
  idempotent:
    support: none
    description: It removes the job's files once the job has ended.
"""

EXAMPLES = r"""
- name: Start the backup
  ansible.builtin.command:
    argv: [/opt/fs-backup/current/fs-backup, dump, --progress-file, /opt/backups/.fs_backup.progress]
  async: 3600
  poll: 0
  register: backup_job

- name: Wait for the backup
  fieldservice.deploy.job_progress:
    jid: "{{ backup_job.ansible_job_id }}"
    progress_file: /opt/backups/.fs_backup.progress
  register: backup_result
  until: backup_result.finished
  retries: 1800
  delay: 0
"""

RETURN = r"""
finished:
  description: Whether the job has ended.
  returned: always
  type: bool
progress:
  description: How far the job has come, in words (empty when it does not say yet).
  returned: always
  type: str
  sample: 12.3 MB written
ansible_job_id:
  description: The job's id.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fieldservice.deploy.plugins.module_utils import job_progress as jobs
from ansible_collections.fieldservice.deploy.plugins.module_utils.argspec import docker_spec
from ansible_collections.fieldservice.deploy.plugins.module_utils.docker_api import DockerClient, DockerError


def _build_progress(dockerfile: str, docker_host: str, since: float) -> str:
    try:
        client = DockerClient(docker_host=docker_host, timeout=10)
        newest = jobs.newest_intermediate(client.list_containers(), since)
        if newest is None:
            return ""
        info = client.inspect_container(newest) or {}
    except (DockerError, OSError):
        return ""  # progress is for a person watching: never a reason to fail the wait
    try:
        with open(dockerfile, encoding="utf-8") as handle:
            steps = jobs.dockerfile_steps(handle.read())
    except (OSError, UnicodeDecodeError):
        steps = []
    return jobs.build_step((info.get("Config") or {}).get("Cmd"), steps)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "jid": {"type": "str", "required": True},
            "wait": {"type": "float", "default": 2.0},
            "progress_file": {"type": "path"},
            "dockerfile": {"type": "path"},
            "async_dir": {"type": "path", "default": "~/.ansible_async"},
            **docker_spec(),
        },
        mutually_exclusive=[("progress_file", "dockerfile")],
        supports_check_mode=False,
    )
    p = module.params
    job_path = os.path.join(p["async_dir"], p["jid"])
    try:
        started = os.stat(job_path).st_mtime  # the job file is written when the job starts
        finished = jobs.wait_for_job(job_path, p["wait"])
    except (jobs.JobMissing, FileNotFoundError) as exc:
        module.fail_json(msg=f"{exc}: was the job started with poll 0, and not waited for already?",
                         ansible_job_id=p["jid"], finished=True, progress="")
    progress = ""
    if p["progress_file"]:
        # a file older than the job is another run's (the job file of a job that
        # has ended is as old as its end, after the job's last write)
        progress = jobs.file_progress(p["progress_file"], since=None if finished else started - 1)
        if finished:
            try:
                os.unlink(p["progress_file"])
            except OSError:
                pass
    elif p["dockerfile"] and not finished:
        progress = _build_progress(p["dockerfile"], p["docker_host"], started - 1)
    if not finished:
        module.exit_json(changed=False, finished=False, progress=progress, ansible_job_id=p["jid"])
    # The job's own result, passed on (what async_status does); then its file goes.
    try:
        result = jobs.job_result(job_path)
        os.unlink(job_path)
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"cannot read the result of job {p['jid']}: {exc}", ansible_job_id=p["jid"],
                         finished=True, progress=progress)
    result.update(ansible_job_id=p["jid"], progress=progress)
    # the job's warnings become the wait's (exit_json takes none as arguments)
    for warning in result.pop("warnings", None) or []:
        module.warn(str(warning.get("msg", warning)) if isinstance(warning, dict) else str(warning))
    result.pop("deprecations", None)
    if result.get("failed"):
        result.setdefault("msg", f"job {p['jid']} failed")
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
