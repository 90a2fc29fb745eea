"""`inv deploy.rollback`, database restore, the first deploy, and prune's scope on a shared host."""
import hashlib
import json
import re
import subprocess
import time

import testbed
from tests.integration.conftest import (
    deploy,
    health,
    inv,
    make_commit,
    release,
    rows,
    staging_host,
    write_row,
)

# Another team's project on the same host, on the testbed's Redis stand-in.
REDIS = f"localhost:{testbed.REGISTRY_PORT}/testbed/redis:7"
OTHER_COMPOSE = f"""services:
  cache:
    image: {REDIS}
    volumes: [otherdata:/data]
volumes:
  otherdata: {{}}
"""


def deploy_ok(env, sha, **settings):
    result = deploy(env, sha, **settings)
    assert result.returncode == 0, result.output
    return sha


def jwt_secret_digest(env):
    """What the live backend holds as JWT_SECRET (its sha256: the value is never printed)."""
    check = ("import hashlib, os; "
             "print('jwt=' + hashlib.sha256(os.environ['JWT_SECRET'].encode()).hexdigest())")
    seen = inv(env, "deploy.exec", "backend", "--", "python3", "-c", check)
    assert seen.returncode == 0, seen.output
    return seen.stdout.split("jwt=")[1].split()[0]


def test_rollback_restores_the_previous_release_with_the_registry_down_and_the_current_secrets(
        testbed_env, good):
    """A's own .env keeps no secret: after JWT_SECRET was rotated (B's deploy), the rollback
    restarts A with the rotated one, never the leaked one A was deployed with."""
    a, _ = good
    rotated = dict(testbed_env, JWT_SECRET=f"rotated-{time.time_ns()}")
    b = release("rb-b", parent=a)
    assert deploy(rotated, b).returncode == 0
    kept = staging_host("cat", f"/opt/classroom-manager/releases/{a}/.env")
    assert "JWT_SECRET" not in kept and "DB_PASSWORD" not in kept, kept
    assert staging_host("stat", "-c", "%a", "/opt/classroom-manager/secrets.env").strip() == "600"
    subprocess.run(["docker", "kill", testbed.REGISTRY], check=True, capture_output=True)
    try:   # exactly what the rollback workflow runs when no sha is given
        result = inv(rotated, "deploy.rollback", "--to", "")
    finally:
        testbed.start_registry()
    assert result.returncode == 0, result.output
    assert f"rollback SUCCEEDED: {a}" in result.stdout
    assert health()[1] == a
    assert jwt_secret_digest(rotated) == hashlib.sha256(rotated["JWT_SECRET"].encode()).hexdigest()
    history = json.loads(inv(testbed_env, "deploy.history", "--json").stdout)
    assert (history[0]["action"], history[0]["sha"], history[0]["result"]) == ("rollback", a, "succeeded")
    assert history[0]["previous"] == b


def test_rollback_with_restore_db_brings_back_the_data_from_before_the_release(testbed_env):
    a = release("db-a")
    plain = deploy(testbed_env, a)
    assert plain.returncode == 0 and "no migration to apply: no dump, no migration run" in plain.stdout
    before = write_row()
    version = int(time.time())          # a migration no earlier test run has applied
    b = make_commit({"app/backend/RELEASE": f"db-b {version}\n",
                     f"app/backend/migrations/{version}-note.sql":
                         f"ALTER TABLE items ADD COLUMN note_{version} TEXT"}, a)
    migrating = deploy(testbed_env, b)
    assert migrating.returncode == 0, migrating.output
    assert "(it has migrations to apply)" in migrating.stdout
    deploy_ok(testbed_env, release("db-c", parent=b))      # no migration: the dump before b holds
    after = write_row()
    refused = inv(testbed_env, "deploy.rollback", "--to", a, "--restore-db")   # no terminal, no --yes
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert after in rows()
    result = inv(testbed_env, "deploy.rollback", "--to", a, "--restore-db", "--yes")
    assert result.returncode == 0, result.output
    assert health()[1] == a
    assert before in rows() and after not in rows()


def test_first_deploy_failure_says_so_and_removes_the_failed_release(testbed_env):
    for project in ("classroom-manager", "classroom-manager-blue", "classroom-manager-green"):
        staging_host("sh", "-c", "docker ps -aq --filter label=com.docker.compose.project=" + project
                     + " | xargs -r docker rm -f")                   # volumes stay
    staging_host("rm", "-f", "/opt/classroom-manager/ledger.jsonl",
                 "/opt/classroom-manager/edge/live.conf")
    result = deploy(testbed_env, release("first-bad", fault="health-500"), HEALTH_TIMEOUT="8")
    assert result.returncode == 1
    assert "first deploy: nothing to roll back to; the failed release is removed" in result.stderr
    assert staging_host("docker", "ps", "-a", "-q", "--filter",
                        "label=com.docker.compose.service=backend") == ""
    good = deploy_ok(testbed_env, release("first-good"))
    assert health()[1] == good


KEEP = 2   # KEEP_RELEASES for the prune test: KEEP + 3 deploys leave 3 releases to prune


def test_prune_keeps_other_projects_and_only_the_expected_images(testbed_env):
    staging_host("mkdir", "-p", "/tmp/other")
    staging_host("tee", "/tmp/other/compose.yaml", input=OTHER_COMPOSE)
    other = ["docker", "compose", "-p", "otherapp", "-f", "/tmp/other/compose.yaml"]
    staging_host(*other, "up", "-d", "--wait")
    staging_host(*other, "exec", "-T", "cache", "redis-cli", "set", "marker", "42")
    staging_host("docker", "build", "-q", "-t", "otherapp/tool:1", "--label",
                 "deploy.project=otherapp", "-", input=f"FROM {REDIS}\n")
    staging_host("docker", "create", "--name", "otherapp-stopped", REDIS, "true", check=False)
    try:
        shas, parent = [], "HEAD"
        for i in range(KEEP + 3):
            shas.append(deploy_ok(testbed_env, release(f"prune-{i}", parent=parent),
                                  KEEP_RELEASES=str(KEEP)))
            parent = shas[-1]
        rolled = inv(testbed_env, "deploy.rollback", "--to", shas[-KEEP])
        assert rolled.returncode == 0, rolled.output
        gone = inv(testbed_env, "deploy.rollback", "--to", shas[0])
        assert gone.returncode == 1 and "not retained on the host" in gone.stderr

        assert staging_host(*other, "exec", "-T", "cache", "redis-cli", "get", "marker").strip() == "42"
        assert "otherapp_otherdata" in staging_host("docker", "volume", "ls", "-q").split()
        assert staging_host("docker", "image", "ls", "-q", "otherapp/tool:1").strip()
        assert "otherapp-stopped" in staging_host("docker", "ps", "-a", "--format", "{{.Names}}")

        tags = staging_host("docker", "image", "ls", "--filter",
                            "label=deploy.project=classroom-manager", "--format",
                            "{{.Repository}}:{{.Tag}}").split()
        kept = {m.group(1) for t in tags if (m := re.search(r":(?:staging|release)-([0-9a-f]{40})$", t))}
        # the last KEEP good releases (one of them restored by the rollback) and the rollback set
        assert kept <= set(shas[-KEEP - 1:]), kept
        assert shas[-KEEP] in kept and shas[-1] in kept
        assert all(re.search(r":(staging-|release-)[0-9a-f]{40}$|:rollback$", t) for t in tags), tags
        dirs = staging_host("ls", "/opt/classroom-manager/releases").split()
        assert set(dirs) <= set(shas[-KEEP - 1:])
    finally:
        staging_host(*other, "down", check=False)
        staging_host("docker", "rm", "-f", "otherapp-stopped", check=False)
