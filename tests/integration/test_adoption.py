"""A team adopts the tool, as the story's team would (issue 28): from a copy of
examples/story-app alone (the story's repository in miniature: Node, Prisma-shaped migrations,
Dockerfiles under docker/ with the repository as context, an entrypoint that migrates then
serves), in a fresh virtualenv with the tool installed from this repository, onto a staging
host where their stack already runs by hand (the story's pipeline), with rows in its database.

One scenario, in order (module fixtures, each step a test): the stack by hand with rows;
`staging-deploy staging.init`; a volume of another PostgreSQL major version refused before
anything changes; the first deploy takes the stack over (the rows there, their app stopped not
removed, their .env kept); a release with a migration and a rollback, under load on both
routes, with 0 failed requests."""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest
import requests
from dotenv import dotenv_values

import testbed
from testbed.load import STORY_ROUTES, SteadyLoad
from tests.conftest import ROOT
from tests.integration.conftest import APP_URL, staging_host

PROJECT = "classroom"                  # the story's project on this host (the stand-in's is
STAGING_DIR = f"/opt/{PROJECT}"        # classroom-manager: both live on the testbed's host)
RATE = 20


def readme_commands():
    """The README's three commands for adopting the tool: install, init, deploy."""
    text = (ROOT / "README.md").read_text().split("## Adopt it in your repository", 1)[1]
    lines = [line.strip() for line in text.split("\n\n", 3)[2].splitlines()]
    assert len(lines) == 3 and lines[1] == "staging-deploy staging.init", lines
    return lines


@pytest.fixture(scope="module")
def tool(repo):
    """A fresh virtualenv with the tool installed from this repository (not editable), by the
    README's own command, with this repository checked out beside the team's (a link)."""
    venv = repo.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    (repo.parent / "staging-deploy").symlink_to(ROOT)
    path = dict(os.environ, PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    subprocess.run(["bash", "-c", readme_commands()[0] + " --quiet --disable-pip-version-check"],
                   cwd=repo, env=path, check=True, capture_output=True, timeout=600)
    return venv / "bin"


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A copy of examples/story-app alone, as its own git repository."""
    folder = tmp_path_factory.mktemp("team") / "classroom"
    shutil.copytree(ROOT / "examples" / "story-app", folder)
    assert folder.name == PROJECT
    git(folder, "init", "-q", "-b", "main")
    commit(folder, "the story's repository")
    return folder


def git(folder, *args):
    return subprocess.run(["git", "-c", "user.name=team", "-c", "user.email=team@example.com",
                           *args], cwd=folder, check=True, capture_output=True, text=True).stdout


def commit(folder, message):
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", message)
    return git(folder, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def team_env(testbed_env):
    """What the team puts in .env for the testbed: its server, registry and images, and the
    database credentials their stack already runs with."""
    values = dotenv_values(testbed.ENV_FILE)
    env = {k: v for k, v in testbed_env.items() if k != "DEPLOY_ENV_FILE"}
    for name in ("STAGING_HOST", "STAGING_PORT", "STAGING_USER", "STAGING_SSH_KEY",
                 "STAGING_KNOWN_HOSTS", "STAGING_URL", "REGISTRY", "REGISTRY_PLAIN_HTTP",
                 "REGISTRY_USER", "REGISTRY_PASSWORD", "REGISTRY_PULL_USER",
                 "REGISTRY_PULL_PASSWORD", "POSTGRES_IMAGE", "REDIS_IMAGE", "EDGE_IMAGE"):
        env[name] = values[name]
    env.update(IMAGE_NAME="testbed/classroom", DB_USER="classroom", DB_NAME="classroom",
               DB_PASSWORD="team-db-" + uuid.uuid4().hex[:12], JWT_SECRET="team-jwt-" + uuid.uuid4().hex,
               WATCH_SECONDS="3")
    return env


def run(tool, repo, env, *args, timeout=900):
    """`staging-deploy ARGS`; one string: a command line of the README, run by bash."""
    started = time.monotonic()
    env = dict(env, PATH=f"{tool}:{os.environ['PATH']}")
    argv = ["bash", "-c", args[0]] if len(args) == 1 and " " in args[0] else \
        [str(tool / "staging-deploy"), *args]
    result = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True,
                            timeout=timeout)
    result.output = result.stdout + result.stderr
    result.duration = time.monotonic() - started
    return result


@pytest.fixture(scope="module")
def by_hand(repo, team_env):
    """The story's pipeline, as it ran before: images built and pushed as staging-latest, then
    `docker compose up -d` in /opt/classroom with their .env; a row written. Afterwards: every
    container and volume of the story's projects removed, the stand-in's edge started again."""
    registry = team_env["REGISTRY"]
    subprocess.run(["docker", "login", "-u", team_env["REGISTRY_USER"], "--password-stdin", registry],
                   input=team_env["REGISTRY_PASSWORD"], text=True, env=team_env, check=True,
                   capture_output=True)
    for service in ("frontend", "backend"):
        ref = f"{registry}/testbed/classroom-{service}:staging-latest"
        subprocess.run(["docker", "build", "--quiet", "-f", f"docker/Dockerfile.{service}",
                        "-t", ref, "."], cwd=repo, check=True, capture_output=True, timeout=600)
        subprocess.run(["docker", "push", "--quiet", ref], env=team_env, check=True,
                       capture_output=True)
    compose = (repo / "docker" / "docker-compose.staging.yml").read_text()
    compose = compose.replace("ghcr.io/${GITHUB_REPO}", f"{registry}/testbed/classroom")
    compose = compose.replace("postgres:16-alpine", team_env["POSTGRES_IMAGE"])
    compose = compose.replace("redis:7-alpine", team_env["REDIS_IMAGE"])
    their_env = (f"DB_USER=classroom\nDB_PASSWORD={team_env['DB_PASSWORD']}\nDB_NAME=classroom\n"
                 f"DATABASE_URL=postgresql://classroom:{team_env['DB_PASSWORD']}@postgres:5432/classroom\n"
                 f"REDIS_URL=redis://redis:6379\nJWT_SECRET={team_env['JWT_SECRET']}\n"
                 "STAGING_API_URL=/api\n")
    for folder in (STAGING_DIR, f"{STAGING_DIR}-v16"):   # as staging.setup makes it
        staging_host("install", "-d", "-o", "deploy", "-g", "deploy", folder, user="root")
    staging_host("tee", f"{STAGING_DIR}/docker-compose.yml", input=compose)
    staging_host("tee", f"{STAGING_DIR}/.env", input=their_env)
    staging_host("docker", "login", "-u", team_env["REGISTRY_PULL_USER"], "--password-stdin",
                 registry, input=team_env["REGISTRY_PULL_PASSWORD"])
    staging_host("sh", "-c", f"cd {STAGING_DIR} && docker compose -p {PROJECT} up -d --quiet-pull")
    on_host_until("curl -fsS http://127.0.0.1:4000/api/health", "healthy")
    row = "by-hand-" + uuid.uuid4().hex[:8]
    on_host_until("curl -fsS -X POST -H 'Content-Type: application/json' "
                  f"-d '{{\"name\": \"{row}\"}}' http://127.0.0.1:4000/api/items", row)
    yield row
    for project in (PROJECT, f"{PROJECT}-blue", f"{PROJECT}-green", f"{PROJECT}-v16"):
        staging_host("sh", "-c", "ids=$(docker ps -aq --filter label=com.docker.compose.project=$0); "
                     "[ -z \"$ids\" ] || docker rm -f $ids >/dev/null", project)
    staging_host("sh", "-c", f"docker volume ls -q | grep -E '^{PROJECT}(-v16)?_' | "
                 "xargs -r docker volume rm >/dev/null")
    staging_host("rm", "-rf", STAGING_DIR, f"{STAGING_DIR}-v16", user="root")
    staging_host("docker", "start", "classroom-manager-edge-1", check=False)


def on_host_until(command, expected, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(["docker", "exec", "-u", "deploy", testbed.HOST, "sh", "-c", command],
                                capture_output=True, text=True)
        if expected in result.stdout:
            return result.stdout
        assert time.monotonic() < deadline, f"{command}: {result.stdout}{result.stderr}"
        time.sleep(1)


def items():
    return [r["name"] for r in requests.get(APP_URL + "/api/items", timeout=5).json()["data"]]


def under_load(action):
    with SteadyLoad(APP_URL, paths=STORY_ROUTES, rate=RATE, max_seconds=600) as load:
        result = action()
        stats = load.stop()
    print(f"\nLOAD {stats.line()}")
    return result, stats


def containers(project):
    listing = staging_host("docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                           "--format", "{{.Names}} {{.State}}")
    return dict(line.split() for line in listing.splitlines())


@pytest.fixture(scope="module")
def initialised(tool, repo, team_env, by_hand):
    """`staging-deploy staging.init` as the README says, committed; .env as a developer's."""
    assert not (repo / "invoke.yaml").exists() and not (repo / "tasks.py").exists()
    init = run(tool, repo, team_env, readme_commands()[1])   # the project: the folder's name
    (repo / ".env").write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in team_env.items()
                                       if k in ("IMAGE_NAME", "JWT_SECRET")))
    env = {k: v for k, v in team_env.items() if k != "JWT_SECRET"}   # read from their .env
    return init, commit(repo, "staging-deploy staging.init"), env


@pytest.fixture(scope="module")
def taken_over(tool, repo, initialised):
    """The first deploy (the README's command, as written) onto the stack run by hand."""
    staging_host("docker", "stop", "classroom-manager-edge-1", check=False)   # the stand-in's port
    return run(tool, repo, initialised[2], readme_commands()[2])


@pytest.fixture(scope="module")
def migrated(tool, repo, initialised, taken_over):
    """A release with a migration, deployed under load on both routes, after a row was added."""
    row = "after-" + uuid.uuid4().hex[:8]
    assert requests.post(APP_URL + "/api/items", json={"name": row}, timeout=5).status_code == 201
    migration = repo / "packages/backend/prisma/migrations/20260301000000_add_note/migration.sql"
    migration.parent.mkdir(parents=True)
    migration.write_text("ALTER TABLE items ADD COLUMN note TEXT;\n")
    second = commit(repo, "a migration")
    return row, under_load(lambda: run(tool, repo, initialised[2], "deploy.staging", "--sha", second))


def test_init_writes_the_settings_from_their_compose_file(initialised):
    init = initialised[0]
    assert init.returncode == 0, init.output
    assert "wrote      invoke.yaml" in init.output and "confirm:" in init.output
    assert "migrations: `node /app/scripts/migrate.js deploy`" in init.output


def test_a_volume_of_another_major_version_is_refused_before_anything_changes(
        tool, repo, team_env, initialised):
    staging_host("sh", "-c", f"docker volume create {PROJECT}-v16_postgres_data >/dev/null && "
                 f"docker run --rm -v {PROJECT}-v16_postgres_data:/d --entrypoint sh "
                 f"{team_env['POSTGRES_IMAGE']} -c 'echo 16 > /d/PG_VERSION'")
    (repo / "v16.yaml").write_text("deploy:\n  project: classroom-v16\n")
    refused = run(tool, repo, initialised[2], "-f", "v16.yaml", "deploy.staging", "--sha",
                  initialised[1])
    assert refused.returncode == 1, refused.output
    assert ("the data volume classroom-v16_postgres_data holds PostgreSQL 16; POSTGRES_IMAGE "
            in refused.output and "is 15" in refused.output), refused.output
    assert containers(f"{PROJECT}-v16") == {} and "Traceback" not in refused.output
    assert staging_host("docker", "run", "--rm", "-v", f"{PROJECT}-v16_postgres_data:/d",
                        "--entrypoint", "cat", team_env["POSTGRES_IMAGE"], "/d/PG_VERSION") == "16\n"


def test_the_first_deploy_takes_their_stack_over_and_keeps_its_data(taken_over, by_hand):
    assert taken_over.returncode == 0, taken_over.output
    assert by_hand in items()                                        # their rows, kept
    assert requests.get(APP_URL + "/", timeout=5).status_code == 200
    before = containers(PROJECT)
    assert before.get("classroom-frontend-1") == "exited", (before, taken_over.output)
    assert before.get("classroom-backend-1") == "exited", before    # stopped, not removed
    assert "not removed" in taken_over.output
    assert staging_host("cat", f"{STAGING_DIR}/.env.before-staging-deploy").startswith("DB_USER=")
    assert "docker-compose.yml" in staging_host("ls", STAGING_DIR)   # theirs, untouched


def test_a_release_with_a_migration_fails_no_request(migrated, by_hand):
    row, (result, stats) = migrated
    assert result.returncode == 0, result.output
    assert "--> run migrations" in result.output and "back up the database" in result.output
    assert stats.failed == 0, (stats.line(), result.output)
    applied = staging_host("sh", "-c", f"docker exec {PROJECT}-postgres-1 psql -U classroom -d "
                           "classroom -Atc 'SELECT count(*) FROM _prisma_migrations'")
    assert applied.strip() == "2"
    assert {by_hand, row} <= set(items())


def test_a_rollback_fails_no_request(tool, repo, initialised, migrated, by_hand):
    result, stats = under_load(lambda: run(tool, repo, initialised[2], "deploy.rollback"))
    assert result.returncode == 0, result.output
    assert stats.failed == 0, (stats.line(), result.output)
    status = json.loads(run(tool, repo, initialised[2], "deploy.status", "--json").stdout)
    assert status["sha"] == initialised[1] and status["healthy"]
    assert {by_hand, migrated[0]} <= set(items())
