"""Integration fixtures: the real testbed (Docker engine, registry, SSH staging host).

`testbed.up()` is idempotent, so the first integration test on a fresh machine brings the
testbed up (installing the engine if needed) and later runs reuse it.
"""
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

import testbed
from testbed import commits
from tests.conftest import ROOT

APP_URL = f"http://127.0.0.1:{testbed.HTTP_PORT}"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def testbed_env():
    testbed.up()
    # Settings come from .env.testbed only; GITHUB_* would turn on the CI gate when these tests
    # themselves run in Actions.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STAGING_", "REGISTRY", "GITHUB_"))}
    env["DEPLOY_ENV_FILE"] = str(testbed.ENV_FILE)
    return env


def make_commit(files: dict, parent: str = "HEAD", message: str = "test release") -> str:
    """A real commit (parent + changed files) made without touching the working tree or branch."""
    return commits.make_commit(files, parent, message)


def release(label: str, fault: str = None, parent: str = "HEAD") -> str:
    """A new commit of the app; with `fault`, the backend's FAULT switch is set."""
    files = {"app/backend/RELEASE": f"{label} {uuid.uuid4().hex}\n"}
    if fault:
        files["app/backend/FAULT"] = fault + "\n"
    return make_commit(files, parent, f"test release {label}")


def deploy(env, sha, *extra, timeout=600, **settings):
    """Run `inv deploy.staging` as a user would; return the CompletedProcess with its duration."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "invoke", "deploy.staging", "--sha", sha, *extra],
                            cwd=ROOT, env=dict(env, **settings), capture_output=True, text=True,
                            timeout=timeout)
    result.duration = time.monotonic() - started
    result.output = result.stdout + result.stderr
    return result


def health():
    """(status, body) of the public health endpoint, or (None, None) if nothing answers."""
    try:
        response = requests.get(APP_URL + "/api/health", timeout=5)
        return response.status_code, response.json()
    except (requests.RequestException, ValueError):
        return None, None


class DeployProcess:
    """`inv deploy.staging` running in the background, its output read line by line."""

    def __init__(self, env, sha, *extra, **settings):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "invoke", "deploy.staging", "--sha", sha, *extra], cwd=ROOT,
            env=dict(env, **settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []

    def wait_for_line(self, text, timeout=300):
        """Read output until a line contains `text` (fail if the deploy ends first)."""
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.lines.append(line)
            if text in line:
                return line
            assert time.monotonic() < deadline, f"no line with {text!r} within {timeout}s"
        raise AssertionError(f"deploy ended without a line containing {text!r}:\n{self.output}")

    def finish(self, timeout=300):
        self.lines += self.process.stdout.readlines()
        self.process.wait(timeout)
        return self.process.returncode

    @property
    def output(self):
        return "".join(self.lines)


def inv(env, *args, timeout=300, **settings):
    """Any other task (rollback, status, history, unlock), run as a user would."""
    result = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                            env=dict(env, **settings), capture_output=True, text=True,
                            timeout=timeout)
    result.output = result.stdout + result.stderr
    return result


def staging_host(*argv, user="deploy", check=True):
    """A command inside the staging host container (test set-up and inspection only)."""
    return subprocess.run(["docker", "exec", "-u", user, testbed.HOST, *argv], check=check,
                          capture_output=True, text=True).stdout


def write_row():
    name = "row-" + uuid.uuid4().hex
    assert requests.post(APP_URL + "/api/items", json={"name": name}, timeout=5).status_code == 201
    return name


def rows():
    return [r["name"] for r in requests.get(APP_URL + "/api/items", timeout=5).json()["data"]]


def step_seconds(output, step):
    """Duration the deploy printed for a step (ok or FAILED), or None."""
    match = re.search(re.escape(step) + r".*?(?:FAILED after |\()([\d.]+)s", output)
    return float(match.group(1)) if match else None
