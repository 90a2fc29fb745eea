"""Zero downtime, under a steady load on the public port: a good deploy, a broken one and a
rollback fail no request; a broken release never answers a user; postgres, redis and the edge
proxy keep their containers across app releases."""
import contextlib
import re
import subprocess
import time
from typing import NamedTuple

import pytest
import requests

import testbed
from testbed.load import STORY_ROUTES, SteadyLoad
from tests.conftest import ROOT
from tests.integration.conftest import (
    APP_URL,
    assert_recovered,
    deploy,
    deployed_good,
    health,
    inv,
    live_good,
    make_commit,
    release,
    staging_host,
    step_seconds,
    write_row,
)

RATE = 20  # requests per second: small, but a gap of 0.1 s would already fail one


def stable_containers():
    """service -> container id, for the stable project's services."""
    ids = {}
    for service in ("postgres", "redis", "edge"):
        ids[service] = staging_host(
            "docker", "ps", "-q", "--no-trunc",
            "--filter", "label=com.docker.compose.project=classroom-manager",
            "--filter", f"label=com.docker.compose.service={service}").strip()
    assert all(ids.values()), ids
    return ids


def under_load(action):
    """Run `action` while the load runs; return its result, the load's stats and every answer."""
    with SteadyLoad(APP_URL, paths=STORY_ROUTES, rate=RATE, max_seconds=300) as load:
        result = action()
        stats = load.stop()
    print(f"\nLOAD {stats.line()}")
    if stats.failed:   # when, in the deploy's own timeline, the failed requests were sent
        print(f"the deploy (its times count from about the load's start):\n{result.output}")
    return result, stats, load.results


def test_good_release_fails_no_request_and_keeps_the_stable_containers(testbed_env, good):
    a, _ = good
    before = stable_containers()
    b = release("zd-b", parent=a)
    result, stats, answers = under_load(lambda: deploy(testbed_env, b))
    assert result.returncode == 0, result.output
    assert stats.failed == 0, stats.line()
    assert {x.version for x in answers} <= {a, b}
    assert [x.version for x in answers][-1] == b
    assert stable_containers() == before
    assert health()[1] == b


class Broken(NamedTuple):
    """A broken release deployed under load, and what the deploy and the load saw."""
    fault: str
    previous: str           # the good release live before it
    row: str                # written to the database before it
    sha: str
    result: object          # the deploy's CompletedProcess
    stats: object           # the load's LoadStats
    answers: list


@pytest.fixture(scope="module", params=[("health-500", {"HEALTH_TIMEOUT": "8"}),
                                        ("crash", {"HEALTH_TIMEOUT": "60"})],
                ids=["health-500", "crash"])
def broken(request, testbed_env):
    """One deploy of each broken kind under load; the three tests below each assert one side of
    it (they were three deploys of the same release, in three modules)."""
    fault, settings = request.param
    previous, row = live_good(testbed_env), write_row()
    bad = release("zd-bad", fault=fault)
    result, stats, answers = under_load(lambda: deploy(testbed_env, bad, **settings))
    return Broken(fault, previous, row, bad, result, stats, answers)


def test_a_broken_release_never_answers_a_user(broken):
    assert (f"{broken.previous[:12]} kept serving (the failed release never took traffic"
            in broken.result.output)
    assert broken.stats.failed == 0, broken.stats.line()
    assert {x.version for x in broken.answers} == {broken.previous}
    assert staging_host("docker", "ps", "-a", "-q", "--filter",
                        f"label=org.opencontainers.image.revision={broken.sha}") == ""


def test_a_broken_release_fails_loudly_with_its_cause_within_the_deadline(broken):
    """A release that never gets healthy is given up at the deadline; one that crashes at once,
    without waiting for it."""
    output, errors = broken.result.stdout, broken.result.stderr
    assert "deploy FAILED" in output and "last backend log lines" in output
    checked = step_seconds(broken.result.output, "before it gets traffic")
    if broken.fault == "health-500":
        assert re.search(f"error: release {broken.sha[:12]} is not healthy: not healthy after 8s: "
                         r"slot (blue|green): health answered 503", errors), broken.result.output
        assert 'last health body: {"success": false' in output
        assert checked < 8 + 5
    else:
        assert "backend container" in errors and checked < 20, broken.result.output


def test_after_a_broken_release_the_previous_serves_with_its_data_and_the_lock_is_free(
        testbed_env, broken):
    assert_recovered(testbed_env, broken.result.returncode, broken.result.output,
                     broken.previous, broken.row)


def test_a_routes_change_reaches_users_with_its_release_and_fails_no_request(testbed_env, good):
    """The stand-in as an app with one entry service (testbed/one-entry.yaml: its frontend
    proxies the API, its health body reports the sha, which the deploy then checks), and back
    to the story's shape: each switch of routes under load, each route answering throughout,
    the release that is live served by its own routes until the switch."""
    one_entry = dict(testbed_env, INVOKE_RUNTIME_CONFIG=str(ROOT / "testbed" / "one-entry.yaml"))
    a, _ = good
    b = release("shape-one-entry", parent=a)
    result, stats, answers = under_load(lambda: deploy(one_entry, b))
    assert result.returncode == 0, result.output
    assert "health 200 answered by slot " in result.stdout and ", with the deployed version" in result.stdout
    assert stats.failed == 0 and stats.routes, stats.line()
    assert {x.version for x in answers} <= {a, b}
    assert requests.get(APP_URL + "/api/health", timeout=5).json()["data"]["version"] == b
    c = release("shape-story-again", parent=b)
    result, stats, answers = under_load(lambda: deploy(testbed_env, c))
    assert result.returncode == 0, result.output
    assert stats.failed == 0, stats.line()
    assert {x.version for x in answers} <= {b, c}
    assert set(requests.get(APP_URL + "/api/health", timeout=5).json()["data"]) == {"status",
                                                                                   "timestamp"}


def test_rollback_fails_no_request(testbed_env, good):
    a, _ = good
    b = deployed_good(testbed_env, "zd-rollback-b", parent=a)
    result, stats, answers = under_load(lambda: inv(testbed_env, "deploy.rollback"))
    assert result.returncode == 0, result.output
    assert stats.failed == 0, stats.line()
    assert {x.version for x in answers} <= {a, b}
    assert health()[1] == a


@contextlib.contextmanager
def busy_host(hogs=2):
    """The staging host's CPUs kept busy (one spinning shell per core of this 2-core machine, at
    normal priority, like another team's build job), for as long as the block runs."""
    spin = "trap 'exit 0' TERM; while :; do :; done"
    procs = [subprocess.Popen(["docker", "exec", testbed.HOST, "sh", "-c", spin])
             for _ in range(hogs)]
    try:
        yield
    finally:
        subprocess.run(["docker", "exec", testbed.HOST, "pkill", "-f", "while :; do :; done"],
                       check=False)
        for proc in procs:
            proc.wait(timeout=30)


@pytest.mark.serial       # its busy cores are the whole machine's: other workers' tests wait
def test_a_deploy_on_a_busy_host_fails_no_request(testbed_env, good):
    """With both cores busy and a release that has a migration (so the dump runs too), the live
    release keeps answering every request: the dump runs niced, the candidate is checked beside
    it, the switch is a graceful reload."""
    a, _ = good
    version = int(time.time())
    b = make_commit({"app/backend/RELEASE": f"busy {version}\n",
                     f"app/backend/migrations/{version}-busy.sql":
                         f"CREATE TABLE busy_{version} (id INT)"}, a)
    with busy_host():
        result, stats, answers = under_load(lambda: deploy(testbed_env, b))
    assert result.returncode == 0, result.output
    assert "(it has migrations to apply)" in result.stdout
    assert stats.failed == 0, stats.line()
    assert {x.version for x in answers} <= {a, b} and answers[-1].version == b
