"""`deploy.logs` and `deploy.exec` against the real testbed: the live release's logs and
environment, over the pinned SSH connection, secrets masked, Ctrl-C and the lock respected."""
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests
from dotenv import dotenv_values

import testbed
from tests.conftest import ROOT
from tests.integration.conftest import (
    APP_URL,
    BackgroundTask,
    DeployProcess,
    inv,
    live_good,
    release,
    staging_host,
)


@pytest.fixture(scope="module")
def live(testbed_env):
    return live_good(testbed_env)


def test_logs_show_the_live_release(testbed_env, live):
    marker = "logs-" + uuid.uuid4().hex
    requests.get(APP_URL + "/api/health", headers={"X-Request-ID": marker}, timeout=5)
    requests.get(APP_URL + "/?" + marker, timeout=5)          # the frontend logs it too
    both = inv(testbed_env, "deploy.logs", "--tail", "20")
    assert both.returncode == 0, both.output
    assert f'"version": "{live}"' in both.stdout and marker in both.stdout
    assert re.search(r"^frontend-1 +\| ", both.stdout, re.M)
    assert re.search(r"^backend-1 +\| ", both.stdout, re.M)
    assert "\x1b[" not in both.stdout
    one = inv(testbed_env, "deploy.logs", "--service", "backend", "--since", "10m", "--tail", "all")
    assert one.returncode == 0 and marker in one.stdout and "frontend-1" not in one.stdout
    postgres = inv(testbed_env, "deploy.logs", "-s", "postgres", "--tail", "5")
    assert postgres.returncode == 0 and postgres.stdout.strip(), postgres.output


def test_following_logs_ends_cleanly_on_ctrl_c(testbed_env, live):
    follow = BackgroundTask(testbed_env, "deploy.logs", "-s", "backend", "--follow", "--tail", "0")
    marker = "follow-" + uuid.uuid4().hex
    asked = threading.Event()

    def ask():                   # new lines arrive while it follows
        while not asked.wait(0.5):
            requests.get(APP_URL + "/api/health", headers={"X-Request-ID": marker}, timeout=5)

    threading.Thread(target=ask, daemon=True).start()
    try:
        follow.wait_for_line(marker, timeout=60)
    finally:
        asked.set()
    follow.process.send_signal(signal.SIGINT)
    assert follow.finish(timeout=20) == 0, follow.output
    assert "Traceback" not in follow.output
    deadline = time.monotonic() + 20   # the remote `compose logs --follow` ended with us
    while "logs" in staging_host("sh", "-c", "ps -eo args | grep '[c]ompose.*logs' || true"):
        assert time.monotonic() < deadline, "compose logs still runs on the host"
        time.sleep(0.5)


def test_exec_runs_with_the_live_environment_and_masks_secrets(testbed_env, live):
    secret = dotenv_values(testbed.ENV_FILE)["JWT_SECRET"]
    result = inv(testbed_env, "deploy.exec", "backend", "--", "sh", "-c",
                 'echo "jwt=$JWT_SECRET"; echo "db=${DATABASE_URL#*@}"; echo "v=$APP_VERSION"')
    assert result.returncode == 0, result.output
    assert "jwt=***" in result.stdout and secret not in result.output
    assert "db=postgres:5432/classroom" in result.stdout and f"v={live}" in result.stdout
    piped = subprocess.run([sys.executable, "-m", "invoke", "deploy.exec", "backend", "--",
                            "python3", "-"], cwd=ROOT, env=testbed_env, input="print(6 * 7)\n",
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stdout.strip() == "42", piped.stdout + piped.stderr
    failing = inv(testbed_env, "deploy.exec", "backend", "--", "sh", "-c", "exit 7")
    assert failing.returncode == 7
    assert staging_host("docker", "ps", "-aq", "--filter", "label=com.docker.compose.oneoff=True") == ""


def test_exec_refuses_while_a_deploy_holds_the_lock_unless_forced(testbed_env, live):
    running = DeployProcess(testbed_env, release("locked", fault="slow-start:10"))
    running.wait_for_line(" ok take the deploy lock")
    refused = inv(testbed_env, "deploy.exec", "backend", "--", "true")
    forced = inv(testbed_env, "deploy.exec", "--force", "backend", "--", "true")
    assert running.finish() == 0, running.output
    assert refused.returncode == 1 and "holds the deploy lock" in refused.stderr
    assert "--force" in refused.stderr
    assert forced.returncode == 0, forced.output
