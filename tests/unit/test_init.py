"""`staging-deploy staging.init`: from a team's own compose file to settings that deploy, with
every decision said; compose files of several shapes, and the ones it cannot understand."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from staging_deploy.adopt.compose_file import read_compose, references
from staging_deploy.adopt.decide import adopt
from staging_deploy.adopt.files import write
from staging_deploy.adopt.render import files
from staging_deploy.config.defaults import with_tool_defaults
from staging_deploy.config.settings import load_settings
from staging_deploy.errors import DeployError
from tests.conftest import ROOT

STORY = ROOT / "examples" / "story-app"


def story_repo(tmp_path):
    repo = tmp_path / "classroom-manager"
    shutil.copytree(STORY, repo)
    return repo


def init(repo, *args):
    command = str(Path(sys.executable).parent / "staging-deploy")
    return subprocess.run([command, "staging.init", *args], cwd=repo, capture_output=True,
                          text=True, timeout=60)


def test_the_storys_staging_compose_file_becomes_settings_that_load(tmp_path, environ):
    repo = story_repo(tmp_path)
    adoption = adopt(read_compose(repo / "docker/docker-compose.staging.yml"), repo)
    deploy = adoption.deploy
    assert deploy["project"] == "classroom-manager"             # the repository's folder
    assert deploy["services"] == {
        "frontend": {"context": ".", "dockerfile": "docker/Dockerfile.frontend",
                     "args": {"VITE_API_URL": "${STAGING_API_URL}"}},
        "backend": {"context": ".", "dockerfile": "docker/Dockerfile.backend"}}
    assert deploy["routes"] == [{"path": "/api/", "service": "backend", "port": 4000},
                                {"path": "/", "service": "frontend", "port": 80}]
    assert deploy["data_services"] == ["postgres", "redis"]
    assert deploy["postgres_image"] == "postgres:16-alpine"      # the major version kept
    assert deploy["migrate_command"] == ["node", "/app/scripts/migrate.js", "deploy"]
    assert deploy["migrate_check_command"] == ["node", "/app/scripts/migrate.js", "status"]
    assert deploy["migrate_entrypoint"] == "env"                 # the entrypoint migrates, then serves
    assert deploy["ci_checks"] == ["Lint, typecheck, test, build"]
    assert deploy["app_env"] == {
        "clear": {"STAGING_API_URL": "/api", "NODE_ENV": "staging",
                  "REDIS_URL": "redis://redis:6379", "PORT": "4000", "STAGING_FRONTEND_URL": ""},
        "secret": ["JWT_SECRET"]}
    assert adoption.secrets == ["DB_PASSWORD", "JWT_SECRET"]
    # what it writes loads as settings, with nothing edited
    written = files(adoption)
    declared = yaml.safe_load(written["invoke.yaml"])["deploy"]
    settings = load_settings(with_tool_defaults(declared), environ, cwd=repo)
    assert [s.args for s in settings.services] == [(("VITE_API_URL", "/api"),), ()]
    slot = yaml.safe_load(written["deploy/app.yaml"])
    assert set(slot["services"]) == {"frontend", "backend"}
    backend = slot["services"]["backend"]
    assert "ports" not in backend and "healthcheck" not in backend    # none in their file
    assert backend["environment"]["JWT_SECRET"] == "${JWT_SECRET}"
    assert backend["environment"]["DATABASE_URL"] == "${DATABASE_URL}"   # the tool's own
    assert "&" not in written["deploy/app.yaml"]                          # no YAML anchors


DEVELOPMENT = """
services:
  web:
    build: ./web
    ports: ["127.0.0.1:8080:80/tcp"]
    environment:
      API_URL:
      DEBUG: "true"
  api:
    build:
      context: .
      dockerfile: services/api/Dockerfile
      target: runtime
      args: [NODE_VERSION=20, NPM_TOKEN]
    ports:
      - target: 8000
        published: 8000
    environment:
      - DATABASE_URL=postgresql://app:${POSTGRES_PASSWORD}@db:5432/app
      - SESSION_SECRET=dev-secret
      - MAIL_HOST=${MAIL_HOST:-smtp.example.com}
    healthcheck:
      test: ["CMD", "wget", "-qO-", "http://localhost:8000/healthz"]
  worker:
    build: {context: ., dockerfile: services/api/Dockerfile}
    command: ["node", "worker.js"]
  db:
    image: postgis/postgis:15-3.4
    environment: {POSTGRES_USER: app, POSTGRES_DB: app, POSTGRES_PASSWORD: devpass}
  mail:
    image: mailhog/mailhog
"""


def test_a_development_file_with_build_sections(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "Dockerfile").write_text("FROM nginx:1.27\nCOPY . /usr/share/nginx/html\n")
    (tmp_path / "services" / "api").mkdir(parents=True)
    (tmp_path / "services" / "api" / "Dockerfile").write_text(
        "FROM node:20 AS runtime\nARG NODE_VERSION\n")
    (tmp_path / "manage.py").write_text("")        # in the api's context: Django's migrations
    (tmp_path / "compose.yaml").write_text(DEVELOPMENT)
    adoption = adopt(read_compose(tmp_path / "compose.yaml"), tmp_path, project="shop")
    deploy = adoption.deploy
    assert deploy["services"]["web"] == {"context": "web", "dockerfile": "Dockerfile"}
    assert deploy["services"]["api"] == {"context": ".", "dockerfile": "services/api/Dockerfile",
                                         "args": {"NODE_VERSION": "20"}, "target": "runtime"}
    assert any("NPM_TOKEN looks secret" in line for line in adoption.confirm)
    # long and short port syntax; the static server gets /, the API /api/, the worker nothing
    assert deploy["routes"] == [{"path": "/api/", "service": "api", "port": 8000},
                                {"path": "/", "service": "web", "port": 80}]
    assert deploy["health_path"] == "/healthz"                  # from their own healthcheck
    assert deploy["data_services"] == ["postgres"]
    assert deploy["postgres_image"] == "postgis/postgis:15-3.4"
    assert deploy["db_user"] == "app" and deploy["db_name"] == "app"
    assert deploy["migrate_command"] == ["python", "manage.py", "migrate"]
    assert deploy["migrate_check_command"] == ["python", "manage.py", "migrate", "--check"]
    clear, secret = deploy["app_env"]["clear"], deploy["app_env"]["secret"]
    assert clear["MAIL_HOST"] == "smtp.example.com" and clear["DEBUG"] == "true"
    assert "SESSION_SECRET" in secret and "POSTGRES_PASSWORD" in secret
    assert any("mail (mailhog/mailhog) is left out" in line for line in adoption.decided)
    assert any("worker: no route" in line for line in adoption.decided)
    slot = {s.name: s for s in adoption.slot}
    assert slot["api"].healthcheck["test"][1] == "wget"          # theirs, kept as they wrote it
    assert slot["web"].healthcheck is None and slot["worker"].command == ["node", "worker.js"]
    assert slot["api"].environment["SESSION_SECRET"] == "${SESSION_SECRET}"


@pytest.mark.parametrize("text, expected", [
    ("services: [a, b]\n", "is not a compose file: it has no `services:` mapping"),
    ("version: '3'\n", "is not a compose file"),
    ("services:\n  web: nginx\n", "service 'web' is not a mapping"),
    ("services:\n  web:\n    build: .\n    ports: ['${PORT}:80x']\n", "is not a port number"),
    ("services: {web: {image: 'x'\n", "is not YAML (line"),
    ("services:\n  cache:\n    image: memcached:1\n", "no service to build among cache"),
    ("services:\n  web:\n    image: ghcr.io/${REPO}-web:staging\n", "no Dockerfile found for web"),
    ("services:\n  web:\n    build: .\n    environment: 5\n", "environment of web must be"),
])
def test_a_compose_file_it_cannot_understand_is_one_line(tmp_path, text, expected):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "compose.yaml").write_text(text)
    result = init(tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 1 and len(output.splitlines()) == 1, output
    assert expected in output and "Traceback" not in output, output


def test_init_never_overwrites_a_changed_file_and_twice_changes_nothing(tmp_path):
    repo = story_repo(tmp_path)
    first = init(repo)
    assert first.returncode == 0, first.stderr
    assert "wrote      invoke.yaml" in first.stdout and "confirm:" in first.stdout
    again = init(repo)
    assert again.stdout.count("unchanged") == 8 and "wrote" not in again.stdout
    (repo / "deploy" / "app.yaml").write_text("# mine\n")
    kept = init(repo)
    assert "kept       deploy/app.yaml" in kept.stdout
    assert (repo / "deploy" / "app.yaml").read_text() == "# mine\n"
    forced = init(repo, "--force", "--tasks-py")
    assert "wrote      deploy/app.yaml" in forced.stdout and "wrote      tasks.py" in forced.stdout
    listed = subprocess.run([sys.executable, "-m", "invoke", "--list"], cwd=repo,
                            capture_output=True, text=True, timeout=60)
    assert "deploy.staging" in listed.stdout


def test_a_dockerfile_given_by_hand(tmp_path):
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "api.Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "compose.yaml").write_text("services:\n  api:\n    image: ghcr.io/x/api:staging\n"
                                           "    expose: ['3000']\n")
    adoption = adopt(read_compose(tmp_path / "compose.yaml"), tmp_path, "x",
                     {"api": "build/api.Dockerfile"})
    assert adoption.deploy["services"]["api"] == {"context": ".", "dockerfile": "build/api.Dockerfile"}
    assert adoption.deploy["routes"] == [{"path": "/", "service": "api", "port": 3000}]
    with pytest.raises(DeployError, match="a path inside the repository"):
        adopt(read_compose(tmp_path / "compose.yaml"), tmp_path, "x", {"api": "../Dockerfile"})


def test_references_read_every_form_compose_has():
    assert references("${A}-${B:-x}-${C-y}-${D:?no}-$E") == [
        ("A", ""), ("B", "x"), ("C", "y"), ("D", ""), ("E", "")]


def test_the_generated_workflows_are_valid_and_call_the_teams_ci(tmp_path):
    repo = story_repo(tmp_path)
    assert init(repo).returncode == 0
    deploy = yaml.safe_load((repo / ".github/workflows/deploy-staging.yml").read_text())
    assert deploy["jobs"]["ci"]["uses"] == "./.github/workflows/ci.yml"
    assert deploy["jobs"]["deploy"]["needs"] == "ci"
    step = deploy["jobs"]["deploy"]["steps"][-1]
    assert step["run"] == 'staging-deploy deploy.staging --sha "$DEPLOY_SHA"'
    assert step["env"]["JWT_SECRET"] == "${{ secrets.JWT_SECRET }}"
    schema = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    checked = subprocess.run([schema, "--builtin-schema", "vendor.github-workflows",
                              *map(str, (repo / ".github/workflows").glob("*.yml"))],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    audited = subprocess.run([str(Path(sys.executable).parent / "zizmor"), "--offline", "--persona",
                              "pedantic", str(repo / ".github")], capture_output=True, text=True)
    assert audited.returncode == 0, audited.stdout + audited.stderr


def test_build_args_read_only_non_secret_values(defaults, environ):
    """A build arg stays in the image's history: it may read a clear app variable or a
    non-secret setting, never a secret; build secrets come from the environment by name."""
    declared = dict(defaults, services={"web": {
        "context": ".", "dockerfile": "docker/Dockerfile.web", "target": "prod",
        "args": {"API": "${STAGING_URL}/api", "MODE": "${NODE_ENV}", "N": 3},
        "secrets": ["NPM_TOKEN"]}})
    settings = load_settings(declared, dict(environ, NPM_TOKEN="npm-token-value"))
    (web,) = settings.services
    assert web.args == (("API", "https://staging.example.com/api"), ("MODE", "staging"), ("N", "3"))
    assert "npm-token-value" in settings.secrets
    from staging_deploy.story.images import build
    command = build(settings, web, "a" * 40)
    text = command.render()
    assert "--target prod" in text and "--secret id=NPM_TOKEN,env=NPM_TOKEN" in text
    assert "npm-token-value" not in text and text.startswith("set -o pipefail; git archive")
    assert "env DOCKER_BUILDKIT=1 docker build" in text
    assert command.environment == (("NPM_TOKEN", "npm-token-value"),)
    for args, expected in (({"X": "${JWT_SECRET}"}, "JWT_SECRET is a secret"),
                           ({"X": "${DB_PASSWORD}"}, "DB_PASSWORD is a secret"),
                           ({"X": "${NOPE}"}, "${NOPE} is not a variable of app_env.clear")):
        bad = dict(defaults, services={"web": {"context": ".", "args": args}})
        with pytest.raises(DeployError, match=r"deploy.services.web.args.X: " + expected.replace(
                "$", r"\$").replace("{", r"\{").replace("}", r"\}")):
            load_settings(bad, environ)
    missing = dict(defaults, services={"web": {"context": ".", "secrets": ["NPM_TOKEN"]}})
    with pytest.raises(DeployError, match="NPM_TOKEN \\(a build secret of web\\) must be set"):
        load_settings(missing, environ)


def test_files_are_written_once_and_kept_when_changed(tmp_path):
    assert write(tmp_path, {"a/b.yaml": "x\n"}, force=False) == ["wrote      a/b.yaml"]
    assert write(tmp_path, {"a/b.yaml": "x\n"}, force=False) == ["unchanged  a/b.yaml"]
    (tmp_path / "a" / "b.yaml").write_text("mine\n")
    assert write(tmp_path, {"a/b.yaml": "x\n"}, force=False)[0].startswith("kept       a/b.yaml")
    assert (tmp_path / "a" / "b.yaml").read_text() == "mine\n"
    assert write(tmp_path, {"a/b.yaml": "x\n"}, force=True) == ["wrote      a/b.yaml"]
