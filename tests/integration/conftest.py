"""Integration fixtures: the real testbed (Docker engine, registry, SSH staging host).

`testbed.up()` is idempotent, so the first integration test on a fresh machine brings the
testbed up (installing the engine if needed) and later runs reuse it.
"""
import contextlib
import fcntl
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

import testbed
from testbed import commits
from testbed.load import health_of
from tests.conftest import ROOT

APP_URL = f"http://127.0.0.1:{testbed.HTTP_PORT}"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """An integration test shares the machine with the other workers' tests; one marked
    `serial` has it to itself (the fixtures its setup brings up included)."""
    if "tests/integration" not in str(item.fspath):
        yield
        return
    with machine(exclusive=item.get_closest_marker("serial") is not None):
        yield


@contextlib.contextmanager
def machine(exclusive):
    """A readers-writer lock across the workers, the writer first: every test passes the
    turnstile on its way in; a `serial` one holds it while it waits for the tests running now
    to end, so that none starts meanwhile."""
    testbed.CACHE.mkdir(exist_ok=True)
    with open(testbed.CACHE / "machine.turnstile", "w") as turnstile, \
            open(testbed.CACHE / "machine.lock", "w") as lock:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield


@pytest.fixture(scope="session")
def testbed_env():
    testbed.up()
    # Settings come from .env.testbed only; GITHUB_* would turn on the CI gate when these tests
    # themselves run in Actions.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STAGING_", "REGISTRY", "GITHUB_"))}
    env["DEPLOY_ENV_FILE"] = str(testbed.ENV_FILE)
    # A short watch window for the many tests that are about something else; the window's own
    # tests (test_staying_up.py) run with the default from invoke.yaml.
    env["WATCH_SECONDS"] = "1"
    return env


@pytest.fixture
def default_window_env(testbed_env):
    return {k: v for k, v in testbed_env.items() if k != "WATCH_SECONDS"}


# The releases of this session made without a fault: once deployed, a later test may start
# from one of them (live_good) instead of deploying its own.
GOOD = set()


@pytest.fixture
def good(testbed_env):
    """A healthy release live on staging (live_good), with a row written to its database."""
    return live_good(testbed_env), write_row()


def live_good(env):
    """The release live now if it is a release of this session made without a fault and
    `deploy.status` finds it healthy (a deploy saved), else a new good release, deployed."""
    status = inv(env, "deploy.status", "--json")
    live = json.loads(status.stdout or "{}") if status.returncode == 0 else {}
    if live.get("sha") in GOOD and live.get("healthy"):
        return live["sha"]
    print(f"\nGOOD: a new good release (live: {live.get('sha') or 'nothing'}, "
          f"{'of this session' if live.get('sha') in GOOD else 'not of this session'}, "
          f"{live.get('reason') or status.stderr.strip()})")
    return deployed_good(env)


def deployed_good(env, label="good", parent="HEAD"):
    """A new good release, deployed; it may serve later tests' `good`."""
    sha = release(label, parent=parent)
    result = deploy(env, sha)
    assert result.returncode == 0, result.output
    return sha


def make_commit(files: dict, parent: str = "HEAD", message: str = "test release") -> str:
    """A real commit (parent + changed files) made without touching the working tree or branch."""
    return commits.make_commit(files, parent, message)


def release(label: str, fault: str = None, parent: str = "HEAD") -> str:
    """A new commit of the app; with `fault`, the backend's FAULT switch is set."""
    files = {"app/backend/RELEASE": f"{label} {uuid.uuid4().hex}\n"}
    if fault:
        files["app/backend/FAULT"] = fault + "\n"
    sha = make_commit(files, parent, f"test release {label}")
    if not fault:
        GOOD.add(sha)
    return sha


def deploy(env, sha, *extra, timeout=600, **settings):
    """Run `inv deploy.staging` as a user would; return the CompletedProcess with its duration."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "invoke", "deploy.staging", "--sha", sha, *extra],
                            cwd=ROOT, env=dict(env, **settings), capture_output=True, text=True,
                            timeout=timeout)
    result.duration = time.monotonic() - started
    result.output = result.stdout + result.stderr
    return result


def health(url=APP_URL):
    """(status, release) of the public health endpoint, or (None, None) if nothing answers.
    The release is the sha the stand-in names in its X-App-Version header (its health body
    has the story's shape: no version)."""
    return health_of(url + "/api/health")


class BackgroundTask:
    """`inv <args>` running in the background, its output read line by line.

    A reader thread moves output lines into a queue, so a task that hangs without printing
    fails the wait at its deadline instead of blocking the test.
    """

    def __init__(self, env, *args, **settings):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "invoke", *args], cwd=ROOT,
            env=dict(env, **settings), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)  # end of output

    def _next_line(self, deadline):
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return ""
        if line is not None:
            self.lines.append(line)
        return line

    def wait_for_line(self, text, timeout=300):
        """Read output until a line contains `text`; fail if the task ends or the time is up."""
        deadline = time.monotonic() + timeout
        while True:
            line = self._next_line(deadline)
            if line is None:
                raise AssertionError(f"task ended without a line containing {text!r}:\n{self.output}")
            if text in line:
                return line
            assert time.monotonic() < deadline, (f"no line with {text!r} within {timeout}s:\n"
                                                 f"{self.output}")

    def finish(self, timeout=300):
        """Wait for the task to exit and collect the rest of its output."""
        deadline = time.monotonic() + timeout
        while self._next_line(deadline) is not None:
            if time.monotonic() >= deadline:
                self.process.kill()
                raise AssertionError(f"task did not end within {timeout}s:\n{self.output}")
        self.process.wait(timeout)
        return self.process.returncode

    @property
    def output(self):
        return "".join(self.lines)


class DeployProcess(BackgroundTask):
    """`inv deploy.staging --sha SHA` in the background."""

    def __init__(self, env, sha, *extra, **settings):
        super().__init__(env, "deploy.staging", "--sha", sha, *extra, **settings)


def inv(env, *args, timeout=300, **settings):
    """Any other task (rollback, status, history, unlock), run as a user would."""
    result = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                            env=dict(env, **settings), capture_output=True, text=True,
                            timeout=timeout)
    result.output = result.stdout + result.stderr
    return result


def staging_host(*argv, user="deploy", check=True, input=None):
    """A command inside the staging host container (test set-up and inspection only); `input`
    is fed to its stdin (`staging_host("tee", path, input=text)` writes a file there)."""
    interactive = ("-i",) if input is not None else ()
    return subprocess.run(["docker", "exec", *interactive, "-u", user, testbed.HOST, *argv],
                          check=check, capture_output=True, text=True, input=input).stdout


def write_row():
    name = "row-" + uuid.uuid4().hex
    assert requests.post(APP_URL + "/api/items", json={"name": name}, timeout=5).status_code == 201
    return name


def rows():
    return [r["name"] for r in requests.get(APP_URL + "/api/items", timeout=5).json()["data"]]


def assert_recovered(env, result_code, output, previous, row):
    """The four checks after any fault."""
    assert result_code == 1, output
    assert "Traceback" not in output
    # the previous release kept serving (failed before the switch), or was switched back to
    assert (f"rolled back to {previous[:12]}" in output
            or f"{previous[:12]} kept serving (the failed release never took traffic" in output)
    assert health() == (200, previous)
    assert row in rows()
    lock = json.loads(inv(env, "deploy.status", "--json").stdout)["lock"]
    assert lock["held"] is False


def step_seconds(output, step):
    """Duration the deploy printed for a step (ok or FAILED), or None."""
    match = re.search(re.escape(step) + r".*?(?:FAILED after |\()([\d.]+)s", output)
    return float(match.group(1)) if match else None
