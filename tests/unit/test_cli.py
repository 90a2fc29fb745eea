"""The task entry points, run as a user runs them: `inv ...` in a subprocess, no Docker needed."""
import os
import subprocess
import sys
from pathlib import Path

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
    assert "pull --quiet" in out
    # the dump: the stable project's postgres, into a file for our user only
    assert "[remote] umask 077; { sh -c " in out
    assert "' sh com.docker.compose.project classroom-manager postgres '" in out
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
    for name, value in (("STAGING_DIR", "/"), ("DB_PASSWORD", "short"),
                        ("REGISTRY", "--help"), ("STAGING_USER", "-ou0"),
                        ("HEALTH_TIMEOUT", "nan"), ("JWT_SECRET", "x'y")):
        result = inv("deploy.staging", "--sha", head, "--dry-run", env=dict(environ, **{name: value}))
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 1 and len(output.splitlines()) == 1, output
        assert name in output and "Traceback" not in output and "[remote]" not in output
    sha_with_newline = inv("deploy.staging", "--sha", head + "\n", "--dry-run", env=environ)
    assert sha_with_newline.returncode == 1 and "not a full 40-character" in sha_with_newline.stderr


def staging_deploy(*args, cwd, env=None):
    """The installed console command, run as a user runs it."""
    command = str(Path(sys.executable).parent / "staging-deploy")
    return subprocess.run([command, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


def test_the_installed_command_offers_the_tools_tasks_and_no_testbed(tmp_path):
    """What a user installs is the tool: `staging-deploy` works in a folder with no tasks.py,
    and offers neither the testbed nor the bench."""
    listing = staging_deploy("--list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    for name in ("deploy.staging", "deploy.rollback", "staging.setup", "staging.init"):
        assert name in listing.stdout
    assert "testbed" not in listing.stdout and "bench" not in listing.stdout
    assert staging_deploy("--version", cwd=tmp_path).stdout.startswith("staging-deploy 0.")


def test_the_project_is_read_from_the_folder_the_command_runs_in(tmp_path, environ):
    """A project with no tasks.py: its invoke.yaml (found from a sub-folder too) over the
    tool's defaults; without one, one line saying what to run."""
    bare = one_line(staging_deploy("deploy.status", cwd=tmp_path, env=clean(environ)))
    assert "deploy.project is not set" in bare and "staging.init" in bare
    (tmp_path / "invoke.yaml").write_text("deploy:\n  project: their-app\n  services:\n"
                                          "    web: {context: ., dockerfile: docker/Dockerfile.web}\n"
                                          "  routes: [{path: /, service: web, port: 3000}]\n"
                                          "  health_path: /\n  health_body: any\n"
                                          "  data_services: [postgres]\n")
    (tmp_path / "compose").mkdir()
    (tmp_path / "compose" / "app.yaml").write_text("services: {}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                    "--allow-empty", "-m", "x"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / "docs").mkdir()
    plan = staging_deploy("deploy.staging", "--sha", head, "--dry-run", cwd=tmp_path / "docs",
                          env=clean(environ))
    assert plan.returncode == 0, plan.stderr
    assert f"git archive --format=tar {head} | docker build" in plan.stdout
    assert "-f docker/Dockerfile.web -" in plan.stdout
    assert "/opt/their-app/" in plan.stdout          # STAGING_DIR's default: /opt/<project>


def test_a_tasks_py_of_two_lines_mounts_the_tool(tmp_path):
    (tmp_path / "tasks.py").write_text("from staging_deploy.cli import collection\n"
                                       "namespace = collection()\n")
    result = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "deploy.staging" in result.stdout and "staging.init" in result.stdout


def clean(environ):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STAGING_", "REGISTRY", "DEPLOY_ENV_FILE", "IMAGE_NAME", "GITHUB_"))}
    env.update(environ)
    return env


def one_line(result):
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0 and len(output.splitlines()) == 1, output
    assert "Traceback" not in output, output
    return output


def test_hostile_flags_and_inputs_end_in_one_line_never_a_traceback(environ):
    """The review's doors beside the settings: flags, a key that is no key, Invoke's variables."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    key_like = "QUJD" * 2000   # base64 of no key, too long to be a path
    for args, env, expected in (
            (("deploy.history", "--limit", "²"), {}, "--limit '²' must be a whole number"),
            (("deploy.history", "--limit", "99999999999"), {}, "must be a whole number from 1"),
            (("deploy.staging", "--sha", head, "--dry-run", "--wait-lock=nan"), {},
             "--wait-lock='nan' must be a number of seconds from 1"),
            (("deploy.staging", "--sha", head, "--dry-run", "--wait-lock=1e309"), {},
             "--wait-lock='1e309' must be"),
            (("deploy.staging", "--sha", head, "--dry-run", "--wait-lock=-5"), {},
             "--wait-lock='-5' must be"),
            (("deploy.rollback", "--wait-lock=0"), {}, "--wait-lock='0' must be"),
            (("deploy.staging", "--sha", head, "--dry-run"), {"STAGING_SSH_KEY": key_like},
             "STAGING_SSH_KEY is neither a private key"),
            (("deploy.staging", "--sha", head, "--dry-run"), {"INVOKE_DEPLOY_HEALTH_INTERVAL": "0"},
             "INVOKE_DEPLOY_HEALTH_INTERVAL: invoke.yaml keys are not read"),
            (("testbed.up", "--instance", "¹"), {}, "--instance '¹' must be a whole number")):
        output = one_line(inv(*args, env=dict(environ, **env)))
        assert expected in output and key_like[:40] not in output, output


def test_a_base64_wrapped_key_is_read_as_the_key(defaults, environ):
    import base64

    from staging_deploy.config.settings import load_settings
    key = environ["STAGING_SSH_KEY"]
    environ["STAGING_SSH_KEY"] = base64.b64encode(key.encode()).decode()
    assert load_settings(defaults, environ).STAGING_SSH_KEY == key + "\n"


def test_a_broken_invoke_yaml_ends_in_one_redacted_line(tmp_path, environ):
    """Invoke reads invoke.yaml before any task runs: a YAML error or a `!!python` tag ends in
    one line too (the tool's excepthook), with every secret of the environment masked."""
    for tail in ("  project: !!python/name:os.system\n", "  project: [unclosed\n"):
        folder = tmp_path / str(len(tail))
        folder.mkdir()
        (folder / "invoke.yaml").write_text("deploy:\n" + tail)
        env = dict(os.environ, DB_PASSWORD="pw-canary-123456")
        output = one_line(staging_deploy("deploy.status", cwd=folder, env=env))
        assert output.startswith("error: ") and "invoke.yaml" in output, output


def test_an_unexpected_error_is_one_redacted_line_and_deploy_debug_shows_where(environ):
    """A bug (here: a settings loader that raises with a secret in its message) never prints a
    raw traceback or the secret; DEPLOY_DEBUG=1 adds the traceback, redacted."""
    program = ("import os, sys\n"
               "import staging_deploy.cli.project as project\n"
               "def broken(*args, **kwargs):\n"
               "    raise RuntimeError('boom ' + os.environ['JWT_SECRET'])\n"
               "project.load_settings = broken\n"
               "from staging_deploy.cli import main\n"
               "main(['staging-deploy', 'deploy.status'])\n")
    env = clean(environ)
    for debug in ("0", "1"):
        result = subprocess.run([sys.executable, "-c", program], cwd=ROOT,
                                env=dict(env, DEPLOY_DEBUG=debug), capture_output=True,
                                text=True, timeout=60)
        output = result.stdout + result.stderr
        assert result.returncode == 1 and environ["JWT_SECRET"] not in output, output
        assert "error: RuntimeError: boom ***" in output
        assert ("Traceback" in output) == (debug == "1"), output


def test_the_daily_renewal_does_nothing_where_the_edge_serves_no_https(environ):
    """`deploy.certificate --if-enabled` (the daily workflow) succeeds quietly with EDGE_TLS
    none; without the flag the same call is a user error (issue 29)."""
    quiet = inv("deploy.certificate", "--if-enabled", env=environ)
    assert quiet.returncode == 0, quiet.stderr
    assert "EDGE_TLS is none" in quiet.stdout and "-->" not in quiet.stdout
    refused = inv("deploy.certificate", env=environ)
    assert refused.returncode == 1 and "EDGE_TLS is none" in refused.stderr
