"""The Swarm target (DEPLOY_TARGET=swarm) against the testbed's three-node swarm: the same
commands, the same guarantees. Releases are deployed through the same registry; load and
health go to the manager's published port (127.0.0.1:8082)."""
import json
import subprocess
import time

import pytest
import requests

import testbed
from testbed import swarm as nodes
from testbed.load import STORY_ROUTES, SteadyLoad, health_of
from tests.integration.conftest import (
    DeployProcess,
    deploy,
    deployed_good,
    inv,
    live_good,
    release,
)

SWARM_URL = f"http://127.0.0.1:{nodes.HTTP_PORT}"


@pytest.fixture(scope="module")
def swarm_env(testbed_env):
    """The swarm's settings. Its update window (WATCH_SECONDS + 5 s: each task's `monitor` and
    the `delay` before the next) is 6 s for the tests that are not about it."""
    testbed.up(swarm=True)
    env = {k: v for k, v in testbed_env.items() if k != "WATCH_SECONDS"}
    env["DEPLOY_ENV_FILE"] = str(nodes.ENV_FILE)
    env["WATCH_SECONDS"] = "1"
    return env


def health():
    return health_of(SWARM_URL + "/api/health")


def manager(*argv):
    return subprocess.run(["docker", "exec", "-u", "deploy", nodes.MANAGER, *argv],
                          capture_output=True, text=True, check=True).stdout


def nodes_running(service):
    """The nodes that run a task of the app stack's `service`."""
    out = manager("docker", "service", "ps", "--filter", "desired-state=running", "--format",
                  "{{.Node}}", f"classroom-manager-app_{service}")
    return set(out.split())


def write_row():
    name = "swarm-row-" + str(abs(hash(object())))
    assert requests.post(SWARM_URL + "/api/items", json={"name": name}, timeout=5).status_code == 201
    return name


def rows():
    return [r["name"] for r in requests.get(SWARM_URL + "/api/items", timeout=5).json()["data"]]


@pytest.fixture(scope="module")
def first(swarm_env):
    """A first release on the swarm (the stable stack comes up with it) and a row in its data."""
    return deployed_good(swarm_env, "swarm-first"), write_row()


def under_load(action):
    with SteadyLoad(SWARM_URL, paths=STORY_ROUTES, rate=20, max_seconds=600) as load:
        result = action()
        stats = load.stop()
    print(f"\nLOAD {stats.line()}")
    return result, stats, load.results


# To Swarm, a health path answering 500 and one never answering are the same: the task's
# healthcheck fails (hang: it times out, the slower of the two). health-500 is the Compose
# target's (test_zero_downtime.py); here it would cost a minute of a three-node swarm for a path
# `hang` takes already.
@pytest.mark.parametrize("fault,window", [("crash", "1"), ("hang", "1"),
                                          # a crash 8 s after start: inside a 10 s window
                                          ("crash-after:8", "5")])
def test_a_broken_release_is_rolled_back_with_no_failed_request(swarm_env, first, fault, window):
    good = live_good(swarm_env)
    bad = release("swarm-bad-" + fault, fault=fault)
    result, stats, answers = under_load(lambda: deploy(swarm_env, bad, WATCH_SECONDS=window))
    assert result.returncode == 1, result.output
    assert "Swarm gave up on the update" in result.output, result.output
    assert stats.failed == 0, stats.line()
    # The API never answered from the broken backend (a release that crashes after it started
    # served, successfully, until it crashed). Swarm updates each service on its own: the new
    # frontend's tasks, healthy, may have served pages until the deploy put the release back.
    api = {a.version for a in answers if a.path == "/api/health"}
    assert api == {good} if "after" not in fault else api <= {good, bad}, api
    assert {a.version for a in answers} <= {good, bad}
    assert answers[-1].version == good and health() == (200, good)
    history = json.loads(inv(swarm_env, "deploy.history", "--json").stdout)
    assert history[0]["sha"] == bad and history[0]["result"] == "rolled_back"


def test_a_good_release_rolls_out_with_no_failed_request_keeps_the_data_and_prunes_every_node(
        swarm_env, first):
    """Under load, the update fails no request and spreads the tasks over the nodes; the data
    stays. With KEEP_RELEASES=1, its prune leaves no node an image of this project built from a
    release other than the two last, unless a container uses it (the broken releases above
    left theirs); another project's image on a worker stays. (One deploy, every assertion.)"""
    _, row = first
    previous = live_good(swarm_env)
    worker = nodes.NODES[1]
    base = on_node(worker, "docker", "image", "ls", "-q", "--filter",
                   "label=deploy.project=classroom-manager").split()[0]
    subprocess.run(["docker", "exec", "-i", worker, "docker", "build", "-q", "--label",
                    "deploy.project=other", "-t", "other/app:1", "-"], input=f"FROM {base}\n",
                   text=True, check=True, capture_output=True)
    sha = release("swarm-good", parent=previous)
    result, stats, answers = under_load(lambda: deploy(swarm_env, sha, KEEP_RELEASES="1"))
    assert result.returncode == 0, result.output
    assert stats.failed == 0, stats.line()
    assert {a.version for a in answers} <= {previous, sha} and answers[-1].version == sha
    assert health() == (200, sha) and row in rows()
    assert len(nodes_running("backend")) >= 2 and len(nodes_running("frontend")) >= 2
    assert "deploy SUCCEEDED" in result.stdout
    removed = int(result.stdout.split(" image references on the nodes")[0].split()[-1])
    assert removed > 0, result.output
    for node in nodes.NODES:
        built_from, used = release_images(node)
        stale = {image_sha for image, image_sha in built_from.items() if image not in used}
        assert stale <= {previous, sha}, (node, stale)
    assert on_node(worker, "docker", "image", "ls", "-q", "other/app:1").strip()


def on_node(node, *argv):
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True,
                          check=True).stdout


def release_images(node):
    """{image id: the release it was built from} of this project's images on `node`, and the
    ids of the images its containers use."""
    ids = set(on_node(node, "docker", "image", "ls", "-q", "--no-trunc", "--filter",
                      "label=deploy.project=classroom-manager").split())
    built_from = {i: on_node(node, "docker", "image", "inspect", "--format",
                             '{{index .Config.Labels "org.opencontainers.image.revision"}}',
                             i).strip() for i in ids}
    containers = on_node(node, "docker", "ps", "-aq").split()
    used = set(on_node(node, "docker", "inspect", "--format", "{{.Image}}",
                       *containers).split()) if containers else set()
    return built_from, used


def test_rollback_and_rollback_to_work_with_the_registry_stopped_and_older_is_refused(swarm_env, first):
    a = live_good(swarm_env)
    b = deployed_good(swarm_env, "swarm-rb-b", parent=a)
    subprocess.run(["docker", "stop", testbed.REGISTRY], check=True, capture_output=True)
    try:
        back, stats, _ = under_load(lambda: inv(swarm_env, "deploy.rollback"))
        assert back.returncode == 0, back.output
        assert health() == (200, a) and stats.failed == 0, stats.line()
        forward = inv(swarm_env, "deploy.rollback", "--to", b)
        assert forward.returncode == 0, forward.output
        assert health() == (200, b)
    finally:
        testbed.start_registry()
    # as on the compose target: an older sha than the running one is refused (--force)
    refused = deploy(swarm_env, a)
    assert refused.returncode == 1 and "older than the running" in refused.stderr, refused.output
    assert health() == (200, b)


def test_status_reads_the_release_from_the_services(swarm_env, first):
    status = json.loads(inv(swarm_env, "deploy.status", "--json").stdout)
    assert status["healthy"] is True and status["sha"] == health()[1]
    assert {c["Service"] for c in status["containers"]} == {"frontend", "backend"}


def test_two_deploys_at_once_one_waits_for_the_lock_and_the_ledger_stays_true(swarm_env, first):
    a, b = release("swarm-concurrent-a"), release("swarm-concurrent-b")
    running = DeployProcess(swarm_env, a)
    running.wait_for_line("--> update the app stack")
    refused = deploy(swarm_env, b)
    assert running.finish() == 0, running.output
    assert refused.returncode == 1 and "staging is locked by deploy of" in refused.output, refused.output
    assert health() == (200, a)
    history = json.loads(inv(swarm_env, "deploy.history", "--json").stdout)
    assert history[0]["sha"] == a and history[0]["result"] == "succeeded"
    assert all(h["sha"] != b for h in history)



def test_a_worker_node_stopping_mid_deploy_leaves_the_url_answering(swarm_env, first):
    """A worker goes away (killed: its address no longer answers) while the update rolls out.
    The deploy converges on the nodes that remain (an update Swarm would leave waiting for a task
    placed on the stopped node is started again) and says the node is down; the public URL
    answers throughout, but for a request a task on that node was answering when it died (its
    connection goes with the node: the client waits out its own timeout)."""
    good = live_good(swarm_env)
    sha = release("swarm-node-stop", parent=good)
    worker = nodes.NODES[2]
    killed = []

    def deploy_while_a_worker_stops():
        running = DeployProcess(swarm_env, sha)
        running.wait_for_line("--> update the app stack")
        began = time.time()
        subprocess.run(["docker", "stop", "-t", "0", worker], check=True, capture_output=True)
        killed.extend([began, time.time()])
        return running.finish(), running.output

    try:
        (code, output), stats, answers = under_load(deploy_while_a_worker_stops)
        # in flight when the node died: sent at most a client timeout (2 s) before it was gone
        lost = [a for a in answers if not a.ok]
        assert len(lost) <= 2 and all(a.status == "ReadTimeout" and killed[0] - 2 <= a.sent
                                      <= killed[1] for a in lost), (stats.line(), killed, lost)
        assert "node swarm-3 is down" in output, output
        assert code == 0 and "deploy SUCCEEDED" in output, output
        assert health() == (200, sha) and answers[-1].version == sha, output
    finally:
        subprocess.run(["docker", "start", worker], check=True, capture_output=True)
        nodes.wait_until_ready()   # the node rejoins; the next test finds three Ready nodes


def test_setup_on_the_manager_checks_the_nodes_it_is_given(swarm_env, first):
    """`staging.setup --nodes` over SSH as a user with passwordless sudo (here the testbed's
    deploy user, given sudo for this test only): the manager's swarm, its data label, every
    node's state; a node not in the swarm fails it in one line that says how to join it."""
    grant = "/etc/sudoers.d/setup-test"
    subprocess.run(["docker", "exec", nodes.MANAGER, "sh", "-c",
                    f"echo 'deploy ALL=(ALL) NOPASSWD:ALL' > {grant}"], check=True)
    env = dict(swarm_env, SETUP_USER="deploy",
               SETUP_SSH_KEY=str(testbed.STATE / "deploy_key"))
    try:
        checked = inv(env, "staging.setup", "--nodes", "swarm-2,swarm-3")
        assert checked.returncode == 0, checked.output
        assert "swarm-1 Ready, swarm-2 Ready, swarm-3 Ready" in checked.stdout
        assert "(and their volumes) live on: swarm-1" in checked.stdout

        missing = inv(env, "staging.setup", "--nodes", "swarm-2,swarm-9")
        assert missing.returncode == 1, missing.output
        assert "not in the swarm: swarm-9 (on each, run what `docker swarm join-token worker`" \
            in missing.stderr and "Traceback" not in missing.output
        assert health()[0] == 200                      # the app was not touched
    finally:
        subprocess.run(["docker", "exec", nodes.MANAGER, "rm", "-f", grant], check=True)
