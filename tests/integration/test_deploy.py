"""Deploys through the real registry to the real SSH staging host, checked from 127.0.0.1."""
import re
import time
import uuid

import requests

import testbed
from staging_deploy.story.plan import fold_repeats
from tests.integration.conftest import (
    APP_URL,
    deploy,
    health,
    live_good,
    make_commit,
    release,
    staging_host,
)


def test_deploy_a_then_b_serves_b_and_keeps_data(testbed_env):
    a = release("A")
    result = deploy(testbed_env, a)
    assert result.returncode == 0, result.output
    assert health() == (200, a)
    body = requests.get(APP_URL + "/api/health", timeout=5).json()    # the story's shape
    assert body["success"] is True and set(body["data"]) == {"status", "timestamp"}
    assert f"deploy SUCCEEDED: {a}" in result.stdout
    assert re.search(r"backend +\S+:staging-" + a + r"@sha256:[0-9a-f]{64}", result.stdout)

    name = "row-" + uuid.uuid4().hex
    written = requests.post(APP_URL + "/api/items", json={"name": name}, timeout=5)
    assert written.status_code == 201

    b = release("B", parent=a)
    result = deploy(testbed_env, b)
    assert result.returncode == 0, result.output
    assert health() == (200, b)
    rows = requests.get(APP_URL + "/api/items", timeout=5).json()["data"]
    assert name in [row["name"] for row in rows]
    # every container of the project (stable services, both slots) has bounded logs, and the
    # infrastructure images run by the digest the first deploy pinned (pins.py)
    ids = staging_host("docker", "ps", "-q", "--filter", "name=classroom-manager").split()
    configs = staging_host("docker", "inspect", "--format", "{{.Name}} {{json .HostConfig.LogConfig}} "
                           "{{.Config.Image}}", *ids).splitlines()
    assert len(configs) >= 5, configs
    for line in configs:
        assert '{"Type":"json-file","Config":{"max-file":"3","max-size":"10m"}}' in line, line
        assert "classroom-manager-" in line or "@sha256:" in line, line


def test_redeploying_a_published_sha_skips_the_build(testbed_env):
    sha = live_good(testbed_env)          # built and pushed when it was deployed
    result = deploy(testbed_env, sha)
    assert result.returncode == 0, result.output
    assert "skipping the build" in result.stdout
    assert "--> build" not in result.stdout
    assert health()[1] == sha


def test_wrong_host_key_pin_refuses_before_any_remote_command(testbed_env):
    sha = release("pinned")
    wrong = "[127.0.0.1]:%s ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    result = deploy(testbed_env, sha, STAGING_KNOWN_HOSTS=wrong % testbed.SSH_PORT)
    assert result.returncode == 1
    assert "does NOT match STAGING_KNOWN_HOSTS" in result.stderr
    assert "ssh-keyscan -p" in result.stderr
    # nothing ran on the host: no step after the connection started
    assert "--> connect to" in result.stdout and "--> take the deploy lock" not in result.stdout


def comparable(lines, running, swap_slots=False):
    """Plan or trace lines in one vocabulary: the running release's sha, container and image ids
    and times as placeholders; repeated looks shown once (how many a poll takes depends on the
    host); what prune removes left out (it depends on what the host holds)."""
    out = []
    for line in lines:
        line = line.replace(running, "<running-sha>").split("  # depends on the host")[0]
        line = re.sub(r"'([^' ]*<[^' ]*>[^' ]*)'", r"\1", line)     # placeholders unquoted
        line = re.sub(r"<container:[^>]*>|\b[0-9a-f]{64}\b", "<container>", line)
        line = re.sub(r"<image:[^>]*>|sha256:<container>", "<image>", line)
        line = re.sub(r"\d{8}T\d{6}Z", "<time>", line)
        if swap_slots:
            line = line.replace("blue", "<b>").replace("green", "blue").replace("<b>", "green")
        # live.conf names the slot: its size differs by a letter between blue and green; .env
        # holds the infrastructure images' digests, `<digest>` in the plan
        line = re.sub(r"((live\.conf|\.env) \(mode \d+, )\d+ bytes", r"\1<n> bytes", line)
        if re.match(r"\[remote\] (docker image rm|docker rm|rm -rf) ", line) or \
                line.startswith("(the ") or moves_latest(line):
            continue
        out.append(line)
    return [line for line in fold_repeats(out) if not line.startswith("(the ")]


def moves_latest(line):
    """The staging-latest push runs in a thread beside the host's work: anywhere in a trace."""
    return line.startswith("[local] docker tag ") and ":staging-latest && docker push" in line


def test_the_dry_run_plan_is_what_a_deploy_runs(testbed_env, good):
    running, _ = good
    version = int(time.time())      # a migration, so the real deploy takes the dump the plan shows
    sha = make_commit({"app/backend/RELEASE": f"planned {version}\n",
                       f"app/backend/migrations/{version}-plan.sql":
                           f"CREATE TABLE plan_{version} (id INT)"}, running)
    plan = deploy(testbed_env, sha, "--dry-run")
    assert plan.returncode == 0, plan.output
    real = deploy(testbed_env, sha, DEPLOY_TRACE="1")
    assert real.returncode == 0, real.output
    planned = [line for line in plan.stdout.splitlines()
               if line.startswith(("[local] ", "[remote] ")) or line.startswith("(the ")]
    ran = [re.sub(r"^\[(local|remote) [\d.]+s [^\]]*\] ", r"[\1] ", line)
           for line in real.stdout.splitlines() if re.match(r"\[(local|remote) [\d.]+s ", line)]
    live_before = re.search(r"switch the edge to slot \w+ \(slot (\w+) stands by\)", real.stdout)
    swap = live_before.group(1) != "green"     # the plan assumes green was live
    assert len(ran) > 60
    assert comparable(ran, running, swap) == comparable(planned, running)
    moved = sorted(line for line in ran if moves_latest(line))
    assert len(moved) == 2 and moved == sorted(line for line in planned if moves_latest(line))


def test_an_image_in_the_registry_built_for_another_cpu_is_built_again(testbed_env, tmp_path):
    """staging-<sha> already in the registry, but its config names arm64 (a laptop of another
    CPU pushed it): the deploy builds it again for BUILD_PLATFORM instead of skipping the build,
    and the host runs what it can run."""
    sha = release("other-cpu", parent=live_good(testbed_env))
    (tmp_path / "Dockerfile").write_text("FROM scratch\nCOPY note /note\n")
    (tmp_path / "note").write_text("built for another CPU\n")
    for service in ("frontend", "backend"):
        ref = f"localhost:{testbed.REGISTRY_PORT}/testbed/classroom-manager-{service}:staging-{sha}"
        testbed.sh("docker", "build", "--quiet", "--platform", "linux/arm64", "-t", ref, tmp_path)
        testbed.sh("docker", "push", "--quiet", ref)
        testbed.sh("docker", "rmi", ref)        # the deploy finds it in the registry, not here
    result = deploy(testbed_env, sha)
    assert result.returncode == 0, result.output
    assert re.search(r"frontend \(\S+:staging-" + sha + r"\) is built for linux/arm64, not "
                     r"linux/amd64 \(BUILD_PLATFORM\): building it again for linux/amd64",
                     result.stdout), result.output
    assert "--> build backend" in result.stdout
    assert health() == (200, sha)
