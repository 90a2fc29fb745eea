"""Staging stays up after "succeeded": the watch window after the switch, and reboots.

A release that dies a few seconds after it went live is switched back (the previous slot stood
by, the edge handed it whatever the new one failed), recorded as rolled back with the cause,
and reported as a failure. A staging host that reboots comes back by itself, serving the live
release; a reboot in the middle of a deploy ends with the recorded release serving.
All against the real testbed; a reboot is a restart of the staging host container, whose
inner Docker engine stops and starts again (and whose /run is emptied, as a boot does).
"""
import json
import subprocess
import time

import pytest

import testbed
from testbed.load import STORY_ROUTES, SteadyLoad
from tests.integration.conftest import (
    APP_URL,
    DeployProcess,
    deploy,
    health,
    inv,
    release,
    rows,
    staging_host,
)

# Faults fire this many seconds after the backend starts: after its candidate check and settle
# (about 5 s here) and well inside the default 10 s window that starts at the switch.
IN_WINDOW = 12


def ledger_entry(env, sha):
    return next(h for h in json.loads(inv(env, "deploy.history", "--json").stdout) if h["sha"] == sha)


def containers_of(sha):
    return staging_host("docker", "ps", "-a", "-q", "--filter",
                        f"label=org.opencontainers.image.revision={sha}").split()


def test_a_crash_in_the_window_switches_back_and_no_user_request_fails(default_window_env, good):
    previous, row = good
    bad = release("crash-in-window", fault=f"crash-after:{IN_WINDOW}")
    with SteadyLoad(APP_URL, paths=STORY_ROUTES, rate=20, max_seconds=300) as load:
        result = deploy(default_window_env, bad)
        stats = load.stop()
    print(f"\nLOAD crash in the window: {stats.line()}")
    assert result.returncode == 1, result.output
    assert "Traceback" not in result.output
    assert "failed in its watch window: backend container" in result.output
    assert "after it went live" in result.output
    assert "still runs healthy in slot" in result.output       # switched back, no restore
    assert f"rolled back to {previous[:12]}" in result.output
    assert "watch     10s after the switch: failed" in result.output
    entry = ledger_entry(default_window_env, bad)
    assert entry["result"] == "rolled_back" and "after it went live" in entry["cause"]
    assert stats.failed == 0, stats.line()
    assert {a.version for a in load.results if a.ok} <= {previous, bad}
    assert health()[1] == previous and row in rows()
    assert containers_of(bad) == []


def test_health_failing_in_the_window_switches_back(default_window_env, good):
    previous, row = good
    bad = release("unhealthy-in-window", fault=f"health-500-after:{IN_WINDOW}")
    result = deploy(default_window_env, bad)
    assert result.returncode == 1, result.output
    assert "failed in its watch window" in result.output
    assert "health answered 503" in result.output
    assert f"rolled back to {previous[:12]}" in result.output
    assert ledger_entry(default_window_env, bad)["result"] == "rolled_back"
    assert health()[1] == previous and row in rows()


def test_a_crash_after_the_window_is_a_success_that_status_then_reports(testbed_env, good):
    late = release("crash-after-window", fault="crash-after:25")
    result = deploy(testbed_env, late, WATCH_SECONDS="3")
    assert result.returncode == 0, result.output
    assert "watch     3s after the switch: ok" in result.output
    deadline = time.monotonic() + 90
    while True:
        status = inv(testbed_env, "deploy.status", "--json")
        report = json.loads(status.stdout)
        backend = next(c for c in report["containers"] if c["Service"] == "backend")
        if backend["RestartCount"] >= 1 and not report["healthy"]:
            break
        assert time.monotonic() < deadline, report
    assert status.returncode == 1 and report["sha"] == late
    assert "backend restarted" in report["reason"], report
    text = inv(testbed_env, "deploy.status").stdout
    assert "NOT HEALTHY" in text and "restarts=" in text


def test_a_restored_release_that_dies_in_its_window_is_reported_loudly(testbed_env, good):
    flaky = release("dies-later", fault="crash-after:14")
    assert deploy(testbed_env, flaky, WATCH_SECONDS="1").returncode == 0
    after = release("after-flaky")           # no fault: not a child of the flaky commit
    assert deploy(testbed_env, after).returncode == 0
    result = inv(testbed_env, "deploy.rollback", WATCH_SECONDS="20")
    assert result.returncode == 1, result.output
    assert f"ROLLBACK TO {flaky[:12]} FAILED" in result.output
    assert "failed in its watch window" in result.output
    # the rollback's own steps are undone: the release that ran before it serves again
    assert f"{after[:12]} serves again, as before the rollback" in result.output
    assert health()[1] == after and containers_of(flaky) == []
    undone = [line.split("--> undo: ")[1] for line in result.output.splitlines()
              if "--> undo: " in line]
    assert len(undone) == 2 and undone[1].startswith("remove slot "), result.output
    assert undone[0].startswith(f"switch the edge back to {after[:12]} in slot "), result.output
    back = inv(testbed_env, "deploy.rollback", "--to", after)
    assert back.returncode == 0, back.output
    assert health()[1] == after


# ---- reboots -----------------------------------------------------------------------------------

def reboot_staging_host():
    """Restart the staging host the way a reboot does: its engine stops (containers with it),
    then starts again. Returns when the engine answers."""
    subprocess.run(["docker", "restart", "-t", "60", testbed.HOST], check=True, capture_output=True)
    testbed.wait_for("staging host engine after the reboot",
                     lambda: testbed.ok("docker", "exec", testbed.HOST, "docker", "info"), 60)
    return time.monotonic()


def serving_within(sha, seconds):
    """Poll the public port until it answers 200 with `sha`; return how long that took."""
    started = time.monotonic()
    while True:
        answer = health()
        if answer == (200, sha):
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, answer
        time.sleep(0.5)


def test_staging_comes_back_by_itself_after_a_reboot(testbed_env, good):
    live, row = good
    for attempt in (1, 2):   # the second reboot proves the host itself survives reboots too
        reboot_staging_host()
        took = serving_within(live, 60)
        print(f"\nTIMING reboot {attempt}: serving {live[:12]} again {took:.1f}s after the engine was back")
    assert row in rows()
    status = json.loads(inv(testbed_env, "deploy.status", "--json").stdout)
    assert status["healthy"] and status["sha"] == live, status


@pytest.mark.parametrize("moment", ["before it gets traffic (deadline", "--> watch "])
def test_a_reboot_in_the_middle_of_a_deploy_leaves_the_recorded_release_serving(
        testbed_env, good, moment):
    previous, row = good
    interrupted = release("rebooted", fault="slow-start:8")
    running = DeployProcess(testbed_env, interrupted, HEALTH_TIMEOUT="60", WATCH_SECONDS="30")
    running.wait_for_line(moment)
    reboot_staging_host()
    code = running.finish(timeout=400)
    assert code == 1, running.output
    assert "Traceback" not in running.output and "connection" in running.output, running.output
    assert f"rolled back to {previous[:12]}" in running.output or "kept serving" in running.output
    serving_within(previous, 60)
    assert row in rows()
    after = deploy(testbed_env, release("after-reboot"))
    assert after.returncode == 0, after.output
    assert row in rows()
