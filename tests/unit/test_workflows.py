"""The GitHub workflows: valid, clean under zizmor, and holding the invariants that keep
staging safe (deploy waits for CI, never cancelled mid-way, pinned actions, least privilege)."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
# What a job holding the staging secrets installs: the tool's dependencies by hash, then the
# tool itself from the checkout, built with no build tool fetched.
INSTALL = ["python -m pip install --require-hashes -r fabfile/files/deploy-requirements.txt",
           "python -m pip install --no-deps --no-build-isolation ."]
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(name):
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))   # YAML 1.1 reads the key `on` as True
    return doc


def tool(name):
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def test_workflows_are_valid_github_workflows():
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                             *map(str, WORKFLOWS.glob("*.yml"))], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_at_any_severity():
    """Every suppression is an inline `zizmor: ignore[...]` with its reason beside it; the
    pedantic persona's notes (a workflow without concurrency limits) count too."""
    result = subprocess.run([tool("zizmor"), "--offline", "--persona", "pedantic",
                             str(WORKFLOWS), str(ROOT / "examples" / "story-app" / ".github")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_waits_for_ci_of_the_same_run_and_is_never_cancelled_midway():
    deploy = load("deploy-staging.yml")
    assert set(deploy["on"]) == {"push", "workflow_dispatch"}
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["concurrency"]["cancel-in-progress"] is False
    assert deploy["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert deploy["jobs"]["deploy"]["needs"] == "ci"
    assert deploy["jobs"]["deploy"]["environment"]["name"] == "staging"


def test_ci_runs_once_per_commit_of_main():
    """On main, CI runs only inside the deploy's run: a second run beside it would race the gate.
    A pull request's newer push cancels its older run; a deploy's CI is never cancelled."""
    ci = load("ci.yml")
    assert set(ci["on"]) == {"pull_request", "workflow_call"}
    assert ci["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert "github.ref" in ci["concurrency"]["group"]


def test_only_main_can_reach_the_staging_secrets():
    for name, job in (("deploy-staging.yml", "deploy"), ("rollback-staging.yml", "rollback")):
        assert load(name)["jobs"][job]["if"] == "github.ref == 'refs/heads/main'", name
    assert load("certificate-staging.yml")["jobs"]["renew"]["if"] == "github.ref == 'refs/heads/main'"


def workflow_files():
    """This repository's workflows and the ones `staging.init` writes into a team's."""
    templates = ROOT / "fabfile" / "adopt" / "templates"
    return sorted(WORKFLOWS.glob("*.yml")) + sorted(templates.glob("*.yml"))


def test_no_job_condition_reads_what_only_its_environment_holds():
    """A job's `if` is evaluated before its environment is attached: `vars.X` set on the
    `staging` environment (EDGE_TLS) is empty there, and the job would never run (issue 29)."""
    for path in workflow_files():
        text = path.read_text().replace("@@CI_JOB@@", "").replace("@@NEEDS@@", "").replace(
            "@@SECRETS@@", "")
        doc = yaml.safe_load(text)
        for name, job in doc["jobs"].items():
            condition = str(job.get("if", ""))
            assert not re.search(r"\b(vars|secrets|env)\.", condition), \
                f"{path.name}:{name}: `if: {condition}` reads a value its job's environment holds"


def test_the_certificate_is_renewed_daily_in_the_deploys_queue_by_the_one_task_command():
    renew = load("certificate-staging.yml")
    assert set(renew["on"]) == {"schedule", "workflow_dispatch"}
    assert renew["concurrency"] == load("deploy-staging.yml")["concurrency"]
    steps = renew["jobs"]["renew"]["steps"]
    assert [s["run"] for s in steps if "run" in s] == [
        *INSTALL, "python -m invoke deploy.certificate --if-enabled"]


def test_every_job_has_a_timeout():
    for path in WORKFLOWS.glob("*.yml"):
        for job_name, job in load(path.name)["jobs"].items():
            if "uses" in job:
                continue   # a reusable workflow's own jobs carry theirs
            assert 0 < job["timeout-minutes"] <= 90, f"{path.name}:{job_name}"


def test_jobs_with_secrets_install_exact_versions_by_hash():
    lock = (ROOT / "fabfile" / "files" / "deploy-requirements.txt").read_text()
    pinned = dict(re.findall(r"^([a-z0-9_.-]+)==(\S+) \\$", lock, re.M))
    for dependency in ("fabric", "invoke", "requests", "python-dotenv", "paramiko", "pyyaml",
                       "setuptools"):
        assert dependency in pinned, dependency
    lines = lock.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"[A-Za-z0-9]", line):      # a requirement, not a comment or a hash
            assert re.fullmatch(r"[a-z0-9_.-]+==\S+ \\", line), line
            assert lines[i + 1].strip().startswith("--hash=sha256:"), line
    for name, job in (("deploy-staging.yml", "deploy"), ("rollback-staging.yml", "rollback")):
        installs = [s["run"] for s in load(name)["jobs"][job]["steps"] if "pip" in s.get("run", "")]
        assert installs == INSTALL, name


def test_the_deploy_step_is_the_one_task_command():
    steps = load("deploy-staging.yml")["jobs"]["deploy"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert runs[-1] == 'python -m invoke deploy.staging --sha "$DEPLOY_SHA"'
    assert all("\n" not in run for run in runs), "no shell scripts in YAML"
    assert [s for s in steps if "run" in s][-1]["env"]["DEPLOY_SHA"] == "${{ github.sha }}"


def test_every_action_is_pinned_to_a_commit_with_its_version_noted():
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            match = re.search(r"uses:\s*(\S+)", line)
            if match and not match.group(1).startswith("./"):
                assert PINNED.match(match.group(1)), f"{path.name}: {line.strip()}"
                assert re.search(r"#\s*v\d", line), f"{path.name}: no version comment: {line.strip()}"


def test_permissions_are_empty_at_the_top_and_least_per_job():
    allowed = {"ci.yml": {"contents": "read"},
               "deploy-staging.yml": {"contents": "read", "packages": "write", "checks": "read",
                                      "actions": "read"},
               "rollback-staging.yml": {"contents": "read"},
               "certificate-staging.yml": {"contents": "read"}}
    for name in allowed:
        doc = load(name)
        assert doc["permissions"] == {}
        for job_name, job in doc["jobs"].items():
            assert "permissions" in job, f"{name}:{job_name} has no explicit permissions"
            for scope, level in job["permissions"].items():
                assert allowed[name].get(scope) == level, f"{name}:{job_name} asks for {scope}: {level}"


def test_checkouts_do_not_keep_credentials():
    for path in WORKFLOWS.glob("*.yml"):
        for job in load(path.name)["jobs"].values():
            for step in job.get("steps", []):
                if str(step.get("uses", "")).startswith("actions/checkout@"):
                    assert step["with"]["persist-credentials"] is False


def test_rollback_from_github_is_the_one_task_command_in_the_deploys_queue():
    rollback, deploy = load("rollback-staging.yml"), load("deploy-staging.yml")
    assert set(rollback["on"]) == {"workflow_dispatch"}
    sha = rollback["on"]["workflow_dispatch"]["inputs"]["sha"]
    assert sha["required"] is False and sha["default"] == ""
    # one queue with the deploy: a rollback never races a deploy, and neither is cancelled
    assert rollback["concurrency"] == deploy["concurrency"]
    job = rollback["jobs"]["rollback"]
    assert job["environment"]["name"] == "staging"
    step = [s for s in job["steps"] if "run" in s][-1]
    # the input reaches the command through the environment, never spliced into the script
    assert step["run"] == 'python -m invoke deploy.rollback --to "$ROLLBACK_TO"'
    assert step["env"]["ROLLBACK_TO"] == "${{ inputs.sha }}"
    assert "REGISTRY_PASSWORD" not in step["env"] and "DB_PASSWORD" not in step["env"]
