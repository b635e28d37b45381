"""The CI templates for the app's repository (ci-templates/): schema-valid and doing what the guide says.

The schemas are the GitHub-workflow and GitLab-CI schemas vendored in check-jsonschema
(``--builtin-schema vendor.*``), so the check needs no network.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "ci-templates" / "github" / "deploy.yml"
GITLAB = ROOT / "ci-templates" / "gitlab" / ".gitlab-ci.yml"
GITHUB_DRILL = ROOT / "ci-templates" / "github" / "restore-drill.yml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
SECRETS = ("ANSIBLE_VAULT_PASSWORD", "SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS")
STAGES = ["test", "backup", "deploy", "verify"]
PLAYBOOK_OF = {
    "backup": "fieldservice.deploy.backup",
    "deploy": "fieldservice.deploy.deploy",
    "verify": "fieldservice.deploy.health",
}
# The collection, installed from its repository at a pinned ref.
COLLECTION_INSTALL = re.compile(
    r'ansible-galaxy collection install "git\+\$DEPLOY_COLLECTION_REPO,\$DEPLOY_COLLECTION_REF"')


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check_jsonschema(schema: str, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- schema ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.github-workflows", GITHUB), ("vendor.gitlab-ci", GITLAB),
     ("vendor.github-workflows", GITHUB_DRILL)],
    ids=["github", "gitlab", "github-restore-drill"],
)
def test_template_is_schema_valid(schema, path):
    proc = check_jsonschema(schema, path)
    assert proc.returncode == 0, f"{path.relative_to(ROOT)} fails {schema}:\n{proc.stdout}{proc.stderr}"
    assert "ok -- validation done" in proc.stdout


@pytest.mark.parametrize(
    ("schema", "path", "breakage"),
    [
        ("vendor.github-workflows", GITHUB, lambda d: d["jobs"]["deploy"].pop("runs-on")),
        ("vendor.gitlab-ci", GITLAB, lambda d: d["deploy"].update(when="sometimes")),
    ],
    ids=["github", "gitlab"],
)
def test_schema_check_rejects_a_broken_template(schema, path, breakage, tmp_path):
    """The schema check is not a rubber stamp: an invalid copy of each template fails it."""
    doc = load(path)
    breakage(doc)
    broken = tmp_path / path.name
    broken.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    proc = check_jsonschema(schema, broken)
    assert proc.returncode != 0, proc.stdout


# --- secrets ---------------------------------------------------------------------------------------


def secret_leaks(script: str, secrets: tuple = SECRETS) -> list[str]:
    """Lines of a shell script that could print a secret.

    A secret variable may only be tested for emptiness, written to a file (``> file``)
    or piped into ``ssh-add -``; ``echo`` never touches it and tracing (``set -x``) is off.
    """
    problems = []
    for line in script.splitlines():
        stripped = line.strip()
        if re.search(r"\bset\s+-[a-z]*x", stripped) or "xtrace" in stripped:
            problems.append(f"shell tracing prints every secret: {stripped}")
        for name in secrets:
            if not re.search(rf"\$\{{?{name}(?![A-Za-z0-9_])", stripped):
                continue
            if re.search(r"\becho\b", stripped):
                problems.append(f"echo with {name}: {stripped}")
            elif not (
                re.search(r"\|\s*ssh-add\s+-\s*$", stripped)
                or re.search(r"(?<![>&0-9])>\s*(?!&)\S", stripped)
                or re.fullmatch(rf'\[ -n "\$\{{?{name}(:-)?\}}?" \]', stripped)
            ):
                problems.append(f"{name} is neither written to a file nor piped to ssh-add: {stripped}")
    return problems


def test_secret_leak_check_catches_leaks():
    assert secret_leaks('printf \'%s\' "$ANSIBLE_VAULT_PASSWORD" > "$RUNNER_TEMP/vault-pass"') == []
    assert secret_leaks("printf '%s\\n' \"$SSH_PRIVATE_KEY\" | tr -d '\\r' | ssh-add -") == []
    assert secret_leaks('echo "ANSIBLE_VAULT_PASSWORD_FILE=$RUNNER_TEMP/vault-pass"') == []
    assert secret_leaks('echo "$ANSIBLE_VAULT_PASSWORD" > /tmp/pass')
    assert secret_leaks('printf "%s" "${SSH_PRIVATE_KEY}"')
    assert secret_leaks('cat <<< "$SSH_KNOWN_HOSTS" >&2')
    assert secret_leaks("set -euxo pipefail")


def github_steps(doc: dict) -> list[tuple[str, dict]]:
    return [(job_id, step) for job_id, job in doc["jobs"].items() for step in job.get("steps", [])]


def test_github_secrets_never_echoed():
    doc = load(GITHUB)
    text = GITHUB.read_text(encoding="utf-8")
    problems = []
    # secrets only reach the steps that need them, through step-level env
    assert "secrets." not in yaml.safe_dump(doc.get("env", {})), "secrets in the workflow-level env"
    for job_id, job in doc["jobs"].items():
        if "secrets." in yaml.safe_dump(job.get("env", {})):
            problems.append(f"{job_id}: secrets in the job-level env (every step would see them)")
    for job_id, step in github_steps(doc):
        run = step.get("run", "")
        if "secrets." in run:
            problems.append(f"{job_id}: a run script expands ${{{{ secrets.* }}}} inline: {step.get('name')}")
        problems += [f"{job_id}: {p}" for p in secret_leaks(run)]
    for name in SECRETS:
        assert f"secrets.{name}" in text, f"the workflow does not use the secret {name}"
    assert "ACTIONS_STEP_DEBUG" not in text and "ACTIONS_RUNNER_DEBUG" not in text
    assert not problems, "\n".join(problems)


def gitlab_jobs(doc: dict) -> dict[str, dict]:
    """The GitLab jobs with `extends` resolved (GitLab's deep merge of hashes)."""

    def merge(base: dict, over: dict) -> dict:
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = (
                merge(out[key], value)
                if isinstance(value, dict) and isinstance(out.get(key), dict)
                else value
            )
        return out

    def resolve(name: str) -> dict:
        job = doc[name]
        parents = job.get("extends", [])
        parents = [parents] if isinstance(parents, str) else parents
        resolved: dict = {}
        for parent in parents:
            resolved = merge(resolved, resolve(parent))
        return merge(resolved, {k: v for k, v in job.items() if k != "extends"})

    reserved = {
        "stages",
        "variables",
        "workflow",
        "default",
        "include",
        "image",
        "services",
        "cache",
        "before_script",
        "after_script",
    }
    return {name: resolve(name) for name in doc if name not in reserved and not name.startswith(".")}


def gitlab_script(job: dict, *keys: str) -> str:
    lines = []
    for key in keys or ("before_script", "script", "after_script"):
        value = job.get(key, [])
        lines += [value] if isinstance(value, str) else value
    return "\n".join(lines)


def test_gitlab_secrets_never_echoed():
    doc = load(GITLAB)
    text = GITLAB.read_text(encoding="utf-8")
    problems = []
    for name, job in gitlab_jobs(doc).items():
        problems += [f"{name}: {p}" for p in secret_leaks(gitlab_script(job))]
        for key in SECRETS:
            assert key not in (job.get("variables") or {}), f"{name}: {key} given a value in the file"
    for key in SECRETS:
        assert key not in (doc.get("variables") or {}), f"{key} given a value in the file"
        assert f"${key}" in text, f"the pipeline does not use the CI/CD variable {key}"
    assert "CI_DEBUG_TRACE" not in text, "CI_DEBUG_TRACE prints every variable"
    assert not problems, "\n".join(problems)


# --- GitHub structure ------------------------------------------------------------------------------


def test_github_runs_on_push_to_main():
    doc = load(GITHUB)
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads the key `on` as true
    assert triggers["push"]["branches"] == ["main"]
    assert set(triggers) <= {"push", "workflow_dispatch"}, f"unexpected triggers: {sorted(triggers)}"


def test_github_concurrency_never_overlaps():
    concurrency = load(GITHUB).get("concurrency")
    assert isinstance(concurrency, dict) and concurrency.get("group"), "no workflow-level concurrency group"
    assert concurrency.get("cancel-in-progress") is False, "a running deploy must never be cancelled"


def test_github_job_order():
    jobs = load(GITHUB)["jobs"]
    assert list(jobs) == STAGES
    for before, after in zip(STAGES, STAGES[1:], strict=False):
        needs = jobs[after].get("needs")
        assert needs == before or needs == [before], f"{after} must need {before}, needs {needs!r}"
    assert "needs" not in jobs["test"]


def test_github_jobs_run_the_right_commands():
    jobs = load(GITHUB)["jobs"]
    runs = {job_id: "\n".join(s.get("run", "") for s in job["steps"]) for job_id, job in jobs.items()}
    assert re.search(r"python -m pytest tests/", runs["test"])
    for job_id, playbook in PLAYBOOK_OF.items():
        assert re.search(rf"ansible-playbook .*{re.escape(playbook)}", runs[job_id]), (
            f"{job_id} runs no {playbook}"
        )
        assert "ansible-playbook" not in runs["test"]
    assert re.search(r"fieldservice\.deploy\.deploy[^\n]*\n?[^\n]*-e skip_tests=true", runs["deploy"])


def test_github_secret_handling_in_each_server_job():
    jobs = load(GITHUB)["jobs"]
    for job_id in PLAYBOOK_OF:
        steps = jobs[job_id]["steps"]
        runs = [s.get("run", "") for s in steps]
        setup = next((r for r in runs if "ANSIBLE_VAULT_PASSWORD_FILE=" in r), "")
        assert "umask 077" in setup and "chmod 600" in setup, f"{job_id}: vault password file not 0600"
        assert "ssh-agent" in setup and "ssh-add -" in setup, f"{job_id}: SSH key not loaded into ssh-agent"
        assert "known_hosts" in setup, f"{job_id}: no known_hosts (host keys must be checked)"
        cleanup = [s for s in steps if s.get("if") == "always()" and "rm -f" in s.get("run", "")]
        assert cleanup and "vault-pass" in cleanup[0]["run"] and "ssh-agent -k" in cleanup[0]["run"], (
            f"{job_id}: no always() step removing the vault password file and the agent"
        )
        uses = [s.get("uses", "") for s in steps]
        assert any(COLLECTION_INSTALL.search(r) for r in runs), (
            f"{job_id}: the deploy collection is not installed at a pinned ref"
        )
        assert "ANSIBLE_COLLECTIONS_PATH=" in setup, f"{job_id}: the installed collection is not on the path"
        assert "ANSIBLE_CALLBACKS_ENABLED=fieldservice.deploy.deploy_log" in setup, f"{job_id}: no deploy log"
        assert all("@" in u for u in uses if u), f"{job_id}: an action without a version"
        assert jobs[job_id].get("environment") == "production"
    assert "secrets." not in yaml.safe_dump(jobs["test"]), "the test job must not see the deploy secrets"


# --- GitLab structure ------------------------------------------------------------------------------


def test_gitlab_stage_order():
    doc = load(GITLAB)
    # the seed's pipeline, then the restore drill's own stage (scheduled pipelines only)
    assert doc["stages"] == [*STAGES, "drill"]
    jobs = gitlab_jobs(doc)
    by_stage = {stage: [n for n, j in jobs.items() if j.get("stage") == stage] for stage in STAGES}
    assert all(by_stage.values()), f"a stage without a job: {by_stage}"
    assert not [n for n, j in jobs.items() if j.get("stage") not in [*STAGES, "drill"]]
    assert not [n for n, j in jobs.items() if j.get("needs")], "needs: would let a job skip the stage order"


def test_gitlab_only_on_main():
    doc = load(GITLAB)
    rules = doc["workflow"]["rules"]
    assert rules and all('$CI_COMMIT_BRANCH == "main"' in r.get("if", "") for r in rules), rules
    assert all(r.get("when", "always") != "never" or "main" not in r.get("if", "") for r in rules)


def test_gitlab_resource_group_serializes_server_jobs():
    jobs = gitlab_jobs(load(GITLAB))
    server_jobs = [n for n, j in jobs.items() if j["stage"] in PLAYBOOK_OF]
    groups = {jobs[n].get("resource_group") for n in server_jobs}
    assert len(server_jobs) == 3 and len(groups) == 1 and None not in groups, (
        f"backup, deploy and verify must share one resource_group: {groups}"
    )
    assert all(jobs[n].get("interruptible") is False for n in server_jobs)


def test_gitlab_jobs_run_the_right_commands():
    jobs = gitlab_jobs(load(GITLAB))
    stage_script = {j["stage"]: gitlab_script(j, "script") for j in jobs.values()}
    assert "python -m pytest tests/" in stage_script["test"]
    for stage, playbook in PLAYBOOK_OF.items():
        assert re.search(rf"ansible-playbook .*{re.escape(playbook)}", stage_script[stage]), (
            f"{stage}: no {playbook}"
        )
    assert re.search(r"fieldservice\.deploy\.deploy\s+-e skip_tests=true", stage_script["deploy"])


def test_gitlab_secret_handling_in_each_server_job():
    jobs = gitlab_jobs(load(GITLAB))
    for name, job in jobs.items():
        if job["stage"] not in PLAYBOOK_OF:
            continue
        setup = gitlab_script(job, "before_script")
        assert "umask 077" in setup and '> "$ANSIBLE_VAULT_PASSWORD_FILE"' in setup, (
            f"{name}: vault file not 0600"
        )
        assert "ssh-agent" in setup and "ssh-add -" in setup, f"{name}: SSH key not loaded into ssh-agent"
        assert "known_hosts" in setup, f"{name}: no known_hosts (host keys must be checked)"
        assert (job.get("variables") or {}).get("ANSIBLE_VAULT_PASSWORD_FILE", "").startswith("/tmp/"), (
            f"{name}: the vault password file must live outside the project directory (artifacts, caches)"
        )
        cleanup = gitlab_script(job, "after_script")
        assert 'rm -f "$ANSIBLE_VAULT_PASSWORD_FILE"' in cleanup, f"{name}: after_script keeps the vault file"
        assert COLLECTION_INSTALL.search(setup), f"{name}: the collection is not installed at a pinned ref"


# --- the restore drill ------------------------------------------------------------------------------

DRILL = "fieldservice.deploy.verify_backup"
DRILL_ARGS = ("-e each_schedule=true", "-e compare=true")


def test_the_github_restore_drill_runs_weekly_with_the_key_from_a_secret():
    doc = load(GITHUB_DRILL)
    # PyYAML reads the key "on" as True
    trigger = doc.get("on", doc.get(True))
    assert [c["cron"] for c in trigger["schedule"]] == ["30 6 * * 1"] and "workflow_dispatch" in trigger
    assert doc["concurrency"]["group"] == load(GITHUB)["concurrency"]["group"], "never beside a deploy"
    runs = "\n".join(step.get("run", "") for _job, step in github_steps(doc))
    assert DRILL in runs and all(a in runs for a in DRILL_ARGS)
    assert "secrets.BACKUP_AGE_IDENTITY" in GITHUB_DRILL.read_text(encoding="utf-8")
    problems = []
    for job_id, step in github_steps(doc):
        run = step.get("run", "")
        if "secrets." in run:
            problems.append(f"{job_id}: a run script expands ${{{{ secrets.* }}}} inline")
        problems += [f"{job_id}: {p}" for p in secret_leaks(run, SECRETS + ("BACKUP_AGE_IDENTITY",))]
    assert not problems, "\n".join(problems)
    # the key file is removed, whatever happened
    last = github_steps(doc)[-1][1]
    assert last.get("if") == "always()" and "age-identity" in last["run"] and "drill.json" in last["run"]


def test_the_gitlab_restore_drill_runs_only_on_the_schedule():
    doc = load(GITLAB)
    jobs = gitlab_jobs(doc)
    drill = jobs["restore-drill"]
    assert drill["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule"'}]
    script = gitlab_script(drill, "script")
    assert DRILL in script and all(a in script for a in DRILL_ARGS)
    assert not secret_leaks(gitlab_script(drill), SECRETS + ("BACKUP_AGE_IDENTITY",))
    assert drill["resource_group"] == jobs["deploy"]["resource_group"], "never beside a deploy"
    cleanup = gitlab_script(drill, "after_script")
    assert 'rm -f "$ANSIBLE_VAULT_PASSWORD_FILE"' in cleanup
    assert "age-identity" in cleanup and "drill-" in cleanup
    # a scheduled pipeline deploys nothing: every other job is off on the schedule
    for name, job in jobs.items():
        if name != "restore-drill":
            assert job.get("rules") == [{"if": '$CI_PIPELINE_SOURCE != "schedule"'}], name
    assert any("schedule" in rule["if"] for rule in doc["workflow"]["rules"])

