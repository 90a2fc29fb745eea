"""`staging.*`: making a project and a server ready for deploys."""
from pathlib import Path
from typing import List, Optional

from invoke import Collection, Context, task

from ..adopt.compose_file import read_compose
from ..adopt.decide import adopt
from ..adopt.files import write
from ..adopt.render import files
from ..errors import ConfigError
from ..ops.provision import setup_host
from ..transport.session import HostSession
from .boundary import reporter_for, user_errors
from .project import project_root, settings_for


@task(name="setup", help={
    "compose-deb": "a docker-compose-plugin .deb to install where apt has no Compose v2 "
                   "(Debian bookworm)",
    "nodes": "Swarm target: comma-separated hostnames that must be in the swarm and Ready "
             "(setup fails naming any that is not, and how to fix it)",
})
@user_errors
def setup(c: Context, compose_deb: Optional[str] = None, nodes: str = "") -> None:
    """Provision a fresh Debian/Ubuntu server (Docker, deploy user, STAGING_DIR); idempotent.
    With DEPLOY_TARGET=swarm: this server a swarm manager, a node labelled for the data, and
    every node's state."""
    settings = settings_for(c.config.get("deploy", {}), ("host", "setup"))
    if compose_deb and not Path(compose_deb).is_file():
        raise ConfigError([f"--compose-deb {compose_deb} is not a file"])
    wanted = [n.strip() for n in nodes.split(",") if n.strip()]
    if wanted and not settings.on_swarm:
        raise ConfigError(["--nodes is for the swarm target: set DEPLOY_TARGET=swarm"])
    reporter = reporter_for(settings)
    with HostSession(settings, reporter, settings.SETUP_USER, settings.SETUP_SSH_KEY) as host:
        line = setup_host(settings, host.runner, reporter, compose_deb, wanted)
    reporter.say(f"ready for deploys as {settings.STAGING_USER}. Pin this host key "
                 f"(STAGING_KNOWN_HOSTS), after checking its fingerprint on the server:\n{line}")


# The compose files init looks for, in this order (a staging file first: its environment is
# staging's; Dockerfiles are found by name when it names only images).
COMPOSE_FILES = ("docker/docker-compose.staging.yml", "docker-compose.staging.yml",
                 "compose.staging.yaml", "docker/docker-compose.yml", "docker-compose.yml",
                 "compose.yaml", "compose.yml", "docker/compose.yaml")


@task(name="init", iterable=["dockerfile"], help={
    "from": "your compose file (default: the first of docker/docker-compose.staging.yml, "
            "docker-compose.staging.yml, ..., docker-compose.yml, compose.yaml)",
    "dockerfile": "SERVICE=PATH: the Dockerfile of a service that has only an image: (repeatable)",
    "project": "the compose project name on the server (default: the compose file's name:, "
               "else the repository folder's name)",
    "force": "replace files init wrote before even if you changed them",
    "tasks-py": "also write a tasks.py of two lines, for `inv deploy.staging`",
})
@user_errors
def init(c: Context, from_: Optional[str] = None, dockerfile: Optional[List[str]] = None,
         project: str = "", force: bool = False, tasks_py: bool = False) -> None:
    """Write what the tool needs from your own compose file: settings, slot file, workflows."""
    root = project_root()
    source = Path(from_) if from_ else next((root / name for name in COMPOSE_FILES
                                             if (root / name).is_file()), None)
    if source is None:
        raise ConfigError([f"no compose file found in {root} (looked for "
                           f"{', '.join(COMPOSE_FILES)}): pass --from PATH"])
    given = {}
    for item in dockerfile or []:
        service, sep, path = item.partition("=")
        if not sep or not service or not path:
            raise ConfigError([f"--dockerfile {item!r} must be SERVICE=PATH"])
        given[service] = path
    adoption = adopt(read_compose(source if source.is_absolute() else Path.cwd() / source), root,
                     project, given)
    print(f"from {source}:")
    for line in adoption.decided:
        print(f"  - {line}")
    for line in write(root, files(adoption, tasks_py), force):
        print(line)
    if adoption.confirm:
        print("confirm:")
        for line in adoption.confirm:
            print(f"  - {line}")
    print("next: fill in .env (deploy/env.example says what), then "
          "`staging-deploy deploy.staging --sha $(git rev-parse HEAD)`; docs/ADOPTING.md")


def collection() -> Collection:
    """The `staging` tasks, as a collection of their own."""
    return Collection("staging", setup, init)
