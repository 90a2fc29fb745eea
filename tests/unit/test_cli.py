"""The task entry points, run as a user runs them: `inv ...` in a subprocess, no Docker needed."""
import os
import subprocess
import sys

from tests.conftest import ROOT


def inv(*args, env=None):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("STAGING_", "REGISTRY", "DEPLOY_ENV_FILE", "IMAGE_NAME", "GITHUB_"))}
    clean.update(env or {})
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=60)


def test_every_task_is_listed_with_help():
    listing = inv("--list").stdout
    for name in ("deploy.staging", "deploy.rollback", "deploy.status", "deploy.history",
                 "deploy.logs", "deploy.exec", "deploy.unlock", "testbed.up", "testbed.down"):
        line = [text for text in listing.splitlines() if text.strip().startswith(name)]
        assert line and len(line[0].split()) > 1, f"{name} has no one-line help"


def test_missing_settings_and_bad_sha_give_one_clear_line(environ):
    result = inv("deploy.staging", "--sha", "main")
    assert result.returncode == 1
    output = (result.stdout + result.stderr).strip()
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output
    assert "missing: STAGING_HOST" in output and "JWT_SECRET" in output
    assert "--sha 'main' is not a full 40-character" in output


def test_unknown_commit_is_rejected_before_anything_runs(environ):
    env = dict(environ, STAGING_SSH_KEY=environ["STAGING_SSH_KEY"])
    result = inv("deploy.staging", "--sha", "f" * 40, env=env)
    assert result.returncode == 1
    assert "is not a commit in this repository" in result.stderr
    assert "-->" not in result.stdout  # no step started


def test_dry_run_prints_local_and_remote_commands_without_running(environ):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    result = inv("deploy.staging", "--sha", head, "--dry-run", env=environ)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"[local] set -o pipefail; git archive --format=tar {head}:app/backend | docker build" in out
    assert "[remote] docker compose -p classroom-manager" in out and "pull --quiet" in out
    assert f"[remote] sftp put /opt/classroom-manager/releases/{head}/.env (mode 0600" in out
    assert "--> watch 10s after the switch (slot green stands by)" in out
    # the complete plan: lock, ledger, rollback tags, backup, switch, watch, retire, prune
    for line in ("[remote] flock --nonblock", "[remote] tee -a -- /opt/classroom-manager/ledger.jsonl",
                 "classroom-manager-frontend:rollback && docker tag", "pg_dump", "edge/live.conf (mode 0644",
                 "[remote] docker stop '<container:frontend-green>'", "; docker image ls --no-trunc",
                 "[remote] rm -f /opt/classroom-manager/deploy.lock.json"):
        assert line in out, line
    assert "(the 5 lines above again, 10 more times)" in out   # the watch window's looks
    # staging-latest moves only once the host pulled (a push beside the pull can make a
    # registry answer the pull 500)
    assert out.index("pull --quiet") < out.index("docker push --quiet ghcr.io/acme/"
                                                 "classroom-manager-frontend:staging-latest")
    for secret in ("s3cret-db-pw", "jwt-very-secret"):
        assert secret not in out + result.stderr


def test_incident_tools_refuse_bad_arguments_in_one_line_before_connecting(environ):
    for args, expected in ((("deploy.exec", "backend"), "give the command after --"),
                           (("deploy.exec", "postgres", "--", "psql"), "not 'postgres'"),
                           (("deploy.logs", "--since", "soon"), "--since 'soon' must be"),
                           (("deploy.history", "--limit", "abc"), "--limit 'abc' must be a whole"),
                           (("staging.setup", "--nodes", "s2"), "--nodes is for the swarm target")):
        result = inv(*args, env=dict(environ, SETUP_USER="admin",
                                     SETUP_SSH_KEY=environ["STAGING_SSH_KEY"]))
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 1 and len(output.splitlines()) == 1, output
        assert expected in output and "Traceback" not in output


def test_hostile_settings_stop_a_dry_run_with_one_line_naming_them(environ):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    for name, value in (("STAGING_DIR", "/"), ("LOG_LEVEL", "info'\nJWT_SECRET='pwned"),
                        ("REGISTRY", "--help"), ("STAGING_USER", "-ou0"),
                        ("HEALTH_TIMEOUT", "nan"), ("JWT_SECRET", "x'y")):
        result = inv("deploy.staging", "--sha", head, "--dry-run", env=dict(environ, **{name: value}))
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 1 and len(output.splitlines()) == 1, output
        assert name in output and "Traceback" not in output and "[remote]" not in output
    sha_with_newline = inv("deploy.staging", "--sha", head + "\n", "--dry-run", env=environ)
    assert sha_with_newline.returncode == 1 and "not a full 40-character" in sha_with_newline.stderr


def test_the_tool_without_this_repositorys_testbed_has_no_testbed_tasks(tmp_path):
    """What a user installs is the tool: the testbed is neither imported nor offered."""
    import shutil
    for name in ("tasks.py", "invoke.yaml"):
        shutil.copy(ROOT / name, tmp_path)
    shutil.copytree(ROOT / "fabfile", tmp_path / "fabfile")
    result = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "deploy.staging" in result.stdout
    assert "testbed" not in result.stdout and "bench" not in result.stdout
