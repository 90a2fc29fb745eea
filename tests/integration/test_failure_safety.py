"""Every failure leaves the previous release serving, the data intact and the lock free.

All against the real testbed: faults are commits with app/backend/FAULT, the registry is really
stopped, sshd really restarted, the deploy process really signalled.
"""
import json
import re
import signal
import subprocess
import time

import pytest

import testbed
from tests.integration.conftest import (
    DeployProcess,
    assert_recovered,
    deploy,
    health,
    inv,
    make_commit,
    release,
    rows,
    staging_host,
    step_seconds,
)


def report(fault, output):
    """Detection and recovery times, as the deploy printed them (read with pytest -s)."""
    print(f"\nTIMING {fault}: detect={step_seconds(output, 'before it gets traffic')}s "
          f"failed slot removed={step_seconds(output, 'undo: remove slot')}s "
          f"previous confirmed={step_seconds(output, 'undo: make sure')}s")


# health-500 and crash: test_zero_downtime.py, under load, with every assertion made here
@pytest.mark.parametrize("fault,settings,cause", [
    # seen as the container exiting or restarting, or as health failing once it is gone:
    # which comes first depends on when its first healthcheck ran
    ("crash-after:4", {"HEALTH_SETTLE": "8"}, r"backend container (restarted|is)|unhealthy again"),
    ("hang", {"HEALTH_TIMEOUT": "10"}, "not healthy after 10s"),
    ("slow-start:60", {"HEALTH_TIMEOUT": "10"}, "warming up"),
    ("no-db", {}, "migrations failed"),
])
def test_broken_release_is_rolled_back(testbed_env, good, fault, settings, cause):
    previous, row = good
    bad = release("bad", fault=fault)
    result = deploy(testbed_env, bad, **settings)
    assert re.search(cause, result.output), result.output
    assert_recovered(testbed_env, result.returncode, result.output, previous, row)
    report(fault, result.output)


def test_slow_start_shorter_than_the_deadline_succeeds(testbed_env, good):
    sha = release("slow", fault="slow-start:6")
    result = deploy(testbed_env, sha, HEALTH_TIMEOUT="30")
    assert result.returncode == 0, result.output
    assert health()[1] == sha


def test_a_service_that_restarted_before_does_not_fail_later_deploys(testbed_env, good):
    """Restart counts are history: only restarts during the deploy count as crashes."""
    redis = "classroom-manager-redis-1"

    def restarts_and_health():
        count, health = staging_host("docker", "inspect", "-f",
                                     "{{.RestartCount}} {{.State.Health.Status}}", redis).split()
        return int(count), health

    before, _ = restarts_and_health()
    staging_host("docker", "exec", redis, "sh", "-c", "kill 1")  # exits; its restart policy restarts it
    deadline = time.monotonic() + 60
    while restarts_and_health() != (before + 1, "healthy"):
        assert time.monotonic() < deadline, "redis did not come back"
    result = deploy(testbed_env, release("after-restart"))
    assert result.returncode == 0, result.output


def test_registry_stopped_before_the_pull(testbed_env, good):
    previous, row = good
    running = DeployProcess(testbed_env, release("no-registry"))
    running.wait_for_line("--> stage compose files")
    subprocess.run(["docker", "kill", testbed.REGISTRY], check=True, capture_output=True)
    try:
        code = running.finish()
    finally:
        testbed.start_registry()
    assert re.search(r"!!! (pull images|log in to \S+ on the host) FAILED", running.output), \
        running.output
    assert_recovered(testbed_env, code, running.output, previous, row)


def test_ssh_connection_cut_mid_deploy(testbed_env, good):
    previous, row = good
    running = DeployProcess(testbed_env, release("cut", fault="slow-start:30"), HEALTH_TIMEOUT="60")
    running.wait_for_line("before it gets traffic (deadline")
    staging_host("sh", "-c", "pkill sshd; sleep 0.5; /usr/sbin/sshd", user="root")
    code = running.finish()
    assert "connection" in running.output
    assert_recovered(testbed_env, code, running.output, previous, row)


def test_silent_network_drop_is_noticed_in_seconds(testbed_env, good):
    """The host freezes (no FIN, no RST; the port proxy in front of it keeps acknowledging TCP):
    the deploy must notice within seconds, then roll back once the host is back."""
    previous, row = good
    running = DeployProcess(testbed_env, release("frozen", fault="slow-start:30"), HEALTH_TIMEOUT="120")
    running.wait_for_line("before it gets traffic (deadline")
    subprocess.run(["docker", "pause", testbed.HOST], check=True, capture_output=True)
    frozen_at = time.monotonic()
    try:
        line = running.wait_for_line(" failed: ", timeout=45)
        noticed = time.monotonic() - frozen_at
    finally:
        subprocess.run(["docker", "unpause", testbed.HOST], check=True, capture_output=True)
    print(f"TIMING frozen host noticed after {noticed:.1f}s")
    assert "connection" in line.lower()
    code = running.finish()
    assert_recovered(testbed_env, code, running.output, previous, row)


def test_sigterm_during_health_polling(testbed_env, good):
    previous, row = good
    running = DeployProcess(testbed_env, release("term", fault="slow-start:30"), HEALTH_TIMEOUT="60")
    running.wait_for_line("before it gets traffic (deadline")
    running.process.send_signal(signal.SIGTERM)
    code = running.finish()
    assert "interrupted by SIGTERM" in running.output
    assert_recovered(testbed_env, code, running.output, previous, row)


def test_sigkill_during_compose_up_then_a_new_deploy(testbed_env, good):
    previous, row = good
    killed = release("killed")
    running = DeployProcess(testbed_env, killed)
    running.wait_for_line(", beside the live one")   # its compose up
    running.process.send_signal(signal.SIGKILL)
    running.finish()
    after = release("after-kill")
    result = deploy(testbed_env, after, "--wait-lock=30")
    assert result.returncode == 0, result.output
    assert f"found an unfinished deploy of {killed[:12]}" in result.output
    assert health()[1] == after and row in rows()
    history = json.loads(inv(testbed_env, "deploy.history", "--json").stdout)
    assert [h["result"] for h in history if h["sha"] == killed] == ["abandoned"]


def test_two_deploys_at_once_one_waits_or_is_refused(testbed_env, good):
    first = DeployProcess(testbed_env, release("first", fault="slow-start:5"))
    first.wait_for_line(" ok take the deploy lock")
    refused = deploy(testbed_env, release("second"))
    waiting = DeployProcess(testbed_env, third := release("third"), "--wait-lock=120")
    assert first.finish() == 0, first.output
    assert waiting.finish() == 0, waiting.output
    assert refused.returncode == 1
    assert "staging is locked by deploy of" in refused.stderr and "--wait-lock" in refused.stderr
    assert health()[1] == third


def test_older_sha_is_refused_unless_forced(testbed_env, good):
    a, row = good
    b = release("newer", parent=a)
    assert deploy(testbed_env, b).returncode == 0
    refused = deploy(testbed_env, a)
    assert refused.returncode == 1
    assert "older than the running" in refused.stderr and "--force" in refused.stderr
    assert health()[1] == b
    assert deploy(testbed_env, a, "--force").returncode == 0
    assert health()[1] == a


def test_lock_of_a_frozen_deploy_is_stale_after_max_age_and_unlock_frees_it(testbed_env, good):
    frozen = DeployProcess(testbed_env, release("frozen", fault="slow-start:5"))
    frozen.wait_for_line(" ok take the deploy lock")
    frozen.process.send_signal(signal.SIGSTOP)  # a lost runner: its connection stays open
    try:
        status = json.loads(inv(testbed_env, "deploy.status", "--json").stdout)["lock"]
        assert status["held"] and "deploy of" in status["description"]
        refused = deploy(testbed_env, release("blocked"))
        assert refused.returncode == 1 and "inv deploy.unlock" in refused.stderr
        # Frozen for an hour, as its note on the host now says: older than LOCK_MAX_AGE (1800 s;
        # the least it may be is one command's timeout plus the health wait and the window).
        note = "/opt/classroom-manager/deploy.lock.json"
        info = json.loads(staging_host("cat", note))
        info["since_epoch"] -= 3600
        staging_host("tee", note, input=json.dumps(info))
        taken = deploy(testbed_env, release("takes-over"))
        assert taken.returncode == 0, taken.output
        assert "taking over a stale lock" in taken.output

        frozen2 = DeployProcess(testbed_env, release("frozen2", fault="slow-start:5"))
        frozen2.wait_for_line(" ok take the deploy lock")
        frozen2.process.send_signal(signal.SIGSTOP)
        unlocked = inv(testbed_env, "deploy.unlock", "--yes")
        assert unlocked.returncode == 0 and "unlocked" in unlocked.stdout, unlocked.output
        assert json.loads(inv(testbed_env, "deploy.status", "--json").stdout)["lock"]["held"] is False
        frozen2.process.kill()
    finally:
        frozen.process.kill()
    after = deploy(testbed_env, release("after-unlock"))
    assert after.returncode == 0, after.output


def test_a_disk_too_full_for_the_release_is_refused_before_anything_changes(testbed_env, good):
    """The free-space check before the pull (issue 22), against the host's real `df` and
    `docker info`; a margin larger than any disk stands in for a full one. Refused in one line
    with the figures before the pull; the live release serves on, its containers untouched."""
    previous, row = good
    ours = ("docker", "ps", "-q", "--filter", "name=classroom-manager")
    before = sorted(staging_host(*ours).split())
    result = deploy(testbed_env, release("no-room", parent=previous), DISK_MARGIN="100000000")
    assert re.search(r"error: not enough disk space on the host: /\S+ has [\d,]+ MB free, but "
                     r"the release's images take up to [\d,]+ MB and DISK_MARGIN keeps "
                     r"100,000,000 MB free", result.output), result.output
    assert "--> pull images" not in result.stdout and "Traceback" not in result.output
    assert_recovered(testbed_env, result.returncode, result.output, previous, row)
    assert sorted(staging_host(*ours).split()) == before


def test_a_dump_that_fills_the_disk_leaves_no_backup_and_the_previous_release_serving(
        testbed_env, good):
    """A real full disk (issue 22): backups/ on a 1 MB filesystem filled up, and a release
    with a migration, so that pg_dump runs out of space half-way. The check before the dump lets
    it through (DISK_MARGIN=0, no earlier dump in that filesystem); the dump fails, leaves no
    file behind (nothing that `--restore-db` or a person could take for a backup), and the
    deploy fails cleanly before the migration."""
    previous, row = good
    backups = "/opt/classroom-manager/backups"
    staging_host("install", "-d", "-m", "0700", "-o", "deploy", backups, user="root")
    staging_host("sh", "-c", "mount -t tmpfs -o size=1m,mode=0700,uid=$(id -u deploy) tmpfs "
                 + backups, user="root")
    try:
        staging_host("sh", "-c", f"cat /dev/zero > {backups}/filler; df -k {backups}", check=False)
        version = int(time.time())
        sha = make_commit({"app/backend/RELEASE": f"full {version}\n",
                           f"app/backend/migrations/{version}-full.sql":
                               f"CREATE TABLE full_{version} (id INT)"}, previous)
        result = deploy(testbed_env, sha, DISK_MARGIN="0")
        assert "--> back up the database to" in result.stdout, result.output
        assert re.search(r"error: pg_dump failed:\s+.*no space left on device", result.output,
                         re.I), result.output
        assert "--> run migrations" not in result.stdout
        assert staging_host("ls", "-A", backups).split() == ["filler"]
        assert_recovered(testbed_env, result.returncode, result.output, previous, row)
    finally:
        staging_host("umount", backups, user="root", check=False)
