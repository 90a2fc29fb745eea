"""Remote commands and their parsing for the Swarm target (DEPLOY_TARGET=swarm).

The stack is two Swarm stacks on the manager that STAGING_HOST names: `<project>` (stack.yaml:
postgres, redis and the `edge` proxy that owns the public port) and `<project>-app`
(stack-app.yaml: frontend, backend, pinned by digest and labelled with the release's sha). Both
join the attachable overlay network `<project>-net`, on which migrations and the database dump
run as one-off containers from the manager. Files of every release are kept, as on the compose
target, in STAGING_DIR/releases/<sha>/ on the manager.

`docker stack deploy` reads no env file: each call sources the release's .env into the
environment of its shell (`set -a`), so no value is ever on a command line.
"""
from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
from typing import TYPE_CHECKING, Dict, Iterable, List, Mapping, Optional, Sequence

from ..compose.commands import (
    ENV_FILE,
    SECRETS_FILE,
    edge_reload,
    one_off_label,
    release_dir,
    tool_file,
)
from ..compose.edge import SWARM_ROUTES_FILE, swarm_routes_conf
from ..config.declared import image_variable
from ..errors import DeployError
from ..story.images import PROJECT_LABEL, SHA_LABEL
from ..story.pins import is_pinned
from ..transport.commands import Command, cmd, whole_file

if TYPE_CHECKING:
    from ..config.settings import Settings

STABLE_FILE = "stack.yaml"
APP_FILE = "stack-app.yaml"
EDGE_CONFIG = "stack.conf"
RELEASE_FILES = (STABLE_FILE, APP_FILE, ENV_FILE)
RELEASE_LABEL = "deploy.release"
STACK_LABEL = "com.docker.stack.namespace"
STABLE_DIGEST = "stack.digest"
# UpdateStatus.State values: Swarm gave up on the update and is rolling it back, or is done.
ROLLING_BACK = "rollback_started"
GAVE_UP = ("rollback_completed", "rollback_paused", "paused")
# Task states that will not change any more (a job's task ends in one of them).
ENDED = ("Complete", "Failed", "Rejected", "Shutdown", "Orphaned", "Remove")


def app_stack(settings: Settings) -> str:
    return f"{settings.project}-app"


def network(settings: Settings) -> str:
    return f"{settings.project}-net"


def data_label(settings: Settings) -> str:
    """The node label that places postgres and redis (and their local volumes)."""
    return f"{settings.project}.data"


def service_name(settings: Settings, service: str) -> str:
    return f"{app_stack(settings)}_{service}"


def update_window(settings: Settings) -> float:
    """Swarm's `monitor` and `delay` for each task of an update, in seconds: as long as the
    compose target watches a new release, candidate check (about 5 s) and watch window
    together. A task that fails within it is rolled back while an old task still serves."""
    return round(settings.WATCH_SECONDS + 5)


# A restore goes back to a release that served, healthy, before: its tasks still replace the
# others one at a time, start-first and health-gated, but each is watched this long, not a new
# release's UPDATE_WINDOW (our own watch window follows, as after a deploy).
RESTORE_WINDOW = "2s"


def release_env(settings: Settings, sha: str, pinned: Mapping[str, str]) -> Dict[str, str]:
    """The release's .env: the compose target's variables, with the images pinned by digest and
    the network, node label and update window of the Swarm stacks."""
    env = settings.app_env(sha)
    env.update(APP_NETWORK=network(settings), DATA_LABEL=data_label(settings),
               UPDATE_WINDOW=f"{update_window(settings):.0f}s")
    for service, ref in pinned.items():
        env[image_variable(service)] = ref
    return env


def edge_files(settings: Settings) -> Dict[str, str]:
    """The edge's config files (in STAGING_DIR/edge): nginx's own, and the routes."""
    return {EDGE_CONFIG: tool_file(settings, posixpath.join("edge", EDGE_CONFIG)),
            SWARM_ROUTES_FILE: swarm_routes_conf(settings)}


def stable_text(settings: Settings) -> str:
    """Everything the stable stack runs from: its stack file and the edge's config."""
    return tool_file(settings, STABLE_FILE) + "".join(edge_files(settings).values())


def stable_digest(stack_text: str, env: Mapping[str, str]) -> str:
    """What the stable stack runs with: its file and every variable it reads."""
    names = sorted(set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", stack_text)))
    material = stack_text + "".join(f"\0{n}={env.get(n, '')}" for n in names)
    return hashlib.sha256(material.encode()).hexdigest()


def with_env(directory: str, command: str, overrides: Mapping[str, str] = {}) -> Command:
    """`command` (shell text of our own making) with the release's .env in its environment,
    `overrides` (values of our own making, never a secret) set after it."""
    assigned = "".join(f"{name}={shlex.quote(value)} && " for name, value in overrides.items())
    return cmd("sh", "-c", f"set -a && {sourced(directory)} && {assigned}set +a && exec {command}")


def sourced(directory: str) -> str:
    """Shell text that sources the .env of the release in `directory` (STAGING_DIR/releases/
    <sha>), then the host's current secrets over it (compose.commands.SECRETS_FILE, in STAGING_DIR;
    absent on a host staged before it: the release's own then count)."""
    env = shlex.quote(posixpath.join(directory, ENV_FILE))
    secrets = shlex.quote(posixpath.join(posixpath.dirname(posixpath.dirname(directory)),
                                         SECRETS_FILE))
    return f". {env} && if [ -f {secrets} ]; then . {secrets}; fi"


def stack_deploy(directory: str, file: str, stack: str, window: Optional[str] = None) -> Command:
    """Bring `stack` to `file` (only services whose spec changed are updated). Images are
    pinned by digest: no registry lookup (--resolve-image never), so a restore works with the
    registry down, from the images the nodes kept. `window`: the update's monitor and delay
    per task instead of the release's UPDATE_WINDOW (a restore's RESTORE_WINDOW)."""
    path = shlex.quote(posixpath.join(directory, file))
    return with_env(directory, "docker stack deploy --with-registry-auth --resolve-image never "
                               f"--prune -c {path} {shlex.quote(stack)}",
                    {"UPDATE_WINDOW": window} if window else {})


def log_options(settings: Settings) -> List[str]:
    """`docker run`/`service create` flags that bound a container's logs, as the stack files
    do for their services (invoke.yaml log_max_*)."""
    return ["--log-driver", "json-file", "--log-opt", f"max-size={settings.LOG_MAX_SIZE}",
            "--log-opt", f"max-file={settings.LOG_MAX_FILE}"]


def one_off(settings: Settings, directory: str, image_var: str, argv: Sequence[str],
            env_names: Sequence[str], network_name: str) -> Command:
    """`argv` as the command of a container of the image named by `image_var` in the release's
    .env (its entrypoint kept, as `compose run` does on the compose target), on the overlay
    network, with the named variables passed through from that .env (by name: no values on the
    command line)."""
    words = ["docker", "run", "--rm", "--label", shlex.quote(one_off_label(settings)),
             *map(shlex.quote, log_options(settings)), "--network", shlex.quote(network_name)]
    if settings.migrate_entrypoint:
        words += ["--entrypoint", shlex.quote(settings.migrate_entrypoint)]
    words += [f"-e {shlex.quote(n)}" for n in env_names]
    words += [f'"${image_var}"'] + [shlex.quote(a) for a in argv]
    return with_env(directory, " ".join(words))


def dump_database(settings: Settings, directory: str, path: str) -> Command:
    """pg_dump through the overlay network from a one-off postgres container on the manager
    (wherever the database runs), at the lowest CPU priority, into `path` on the manager."""
    script = ("PGPASSWORD=\"$DB_PASSWORD\" docker run --rm -e PGPASSWORD "
              f"{shlex.join(log_options(settings))} --network "
              f"{shlex.quote(network(settings))} \"$POSTGRES_IMAGE\" nice -n 19 pg_dump "
              f"-h {shlex.quote(settings.database_service)} -U \"$DB_USER\" -d \"$DB_NAME\" "
              "--format=custom")
    return cmd("sh", "-c", f"set -a && {sourced(directory)} && set +a && "
                           f"{{ {whole_file(script, path)}; }}")


def network_exists(name: str) -> Command:
    return cmd("docker", "network", "inspect", "--format", "{{.Driver}}", name)


def create_network(settings: Settings) -> Command:
    return cmd("docker", "network", "create", "--driver", "overlay", "--attachable",
               "--label", f"deploy.project={settings.project}", network(settings))


def list_services(stack: str) -> Command:
    return cmd("docker", "service", "ls", "--filter", f"label={STACK_LABEL}={stack}",
               "--format", "{{.Name}}")


def inspect_services(names: Sequence[str]) -> Command:
    return cmd("docker", "service", "inspect", *names)


def list_tasks(names: Sequence[str]) -> Command:
    return cmd("docker", "service", "ps", "--no-trunc", "--format", "{{json .}}", *names)


def force_update(name: str) -> Command:
    """Start the service's update again, same spec (a new update replaces one that hangs)."""
    return cmd("docker", "service", "update", "--force", "--detach", "--no-resolve-image", name)


def list_nodes() -> Command:
    return cmd("docker", "node", "ls", "--format", "{{json .}}")


def service_logs(names: Sequence[str], tail: str, since: Optional[str], follow: bool) -> Command:
    """`docker service logs` of each service (at once, when several), as deploy.logs shows them."""
    flags = ["--tail", tail] + (["--since", since] if since else []) + (["--follow"] if follow else [])
    calls = [" ".join(shlex.quote(a) for a in ("docker", "service", "logs", "--no-task-ids",
                                                 *flags, name)) for name in names]
    if len(calls) == 1:
        return cmd(*shlex.split(calls[0]))
    return cmd("sh", "-c", " & ".join(calls) + " & wait")


def prefetch_job(settings: Settings, name: str, ref: str) -> Command:
    """A job with one task on every node that pulls `ref` there and ends: so every node holds
    every release's images, and a restore needs no registry, wherever Swarm places its tasks."""
    return node_job(settings, name, ref, "true")


def node_job(settings: Settings, name: str, image: str, *command: str,
             docker_socket: bool = False) -> Command:
    """A job with one task on every node, that runs `command` in `image` once and ends. One
    given the Docker socket (root on every node) runs only an image named by digest."""
    if docker_socket and not is_pinned(image):
        raise DeployError(f"{image} is not named by digest: a job that mounts the Docker socket "
                          "runs only by digest (pins.py pins DOCKER_CLI_IMAGE on deploy)")
    socket = ("--mount", "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock") \
        if docker_socket else ()
    return cmd("docker", "service", "create", "--detach", "--quiet", "--name", name,
               "--mode", "global-job", "--restart-condition", "none", "--with-registry-auth",
               *log_options(settings),
               "--label", f"deploy.project={settings.project}",
               "--container-label", f"deploy.project={settings.project}", *socket,
               "--entrypoint", command[0], image, *command[1:])


def node_prune_script(settings: Settings, keep: Iterable[str]) -> str:
    """What the prune job runs on each node (sh; every value quoted). First the containers of
    this project that ended (old tasks that Swarm keeps as history, the jobs'; a container
    carries its image's labels, and the jobs' are labelled too): they hold old images. Then
    each reference in one of our repositories of each image the build labelled with this
    project and built from a release not in `keep` (an image built FROM ours carries the
    labels too, and another tag of the same image is not ours: neither is named), then the
    image itself if no tag is left on it. Never --force: an image a container uses stays.
    Volumes, and everything of other projects, are never named."""
    project = shlex.quote(f"label={PROJECT_LABEL}={settings.project}")
    sha_of = shlex.quote('{{index .Config.Labels "%s"}}' % SHA_LABEL)
    refs_of = shlex.quote("{{range .RepoTags}}{{.}} {{end}}{{range .RepoDigests}}{{.}} {{end}}")
    kept = shlex.quote(" %s " % " ".join(sorted(keep)))
    tags_of = shlex.quote("{{len .RepoTags}}")
    ours = "|".join(f"{shlex.quote(settings.image_repo(s.name))}[:@]*" for s in settings.services)
    return "\n".join([
        f"docker ps -aq --filter {project} --filter status=exited --filter status=created "
        "--filter status=dead | xargs -r docker rm >/dev/null",
        f"for id in $(docker image ls -q --no-trunc --filter {project} | sort -u); do",
        f"  sha=$(docker image inspect --format {sha_of} \"$id\") || continue",
        f"  case {kept} in *\" $sha \"*) continue;; esac",
        f"  for ref in $(docker image inspect --format {refs_of} \"$id\"); do",
        f"    case \"$ref\" in {ours}) docker image rm \"$ref\" >/dev/null 2>&1 && "
        "echo \"removed $ref\";; esac",
        "  done",
        # left with no tag at all (only digests of ours, or none): nothing names it any more
        f"  [ \"$(docker image inspect --format {tags_of} \"$id\" 2>/dev/null)\" = 0 ] && "
        "docker image rm \"$id\" >/dev/null 2>&1 && echo \"removed $id\"",
        "done",
        "true",
    ])


def remove_service(name: str) -> Command:
    return cmd("docker", "service", "rm", name)


def local_tasks(service: str) -> Command:
    """The containers of `service`'s tasks on this node (the manager: the edge runs there)."""
    return cmd("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}")


def reload_edge(container: str) -> Command:
    return edge_reload(container, f"/etc/nginx/deploy/{EDGE_CONFIG}")


def remove_stack(stack: str) -> Command:
    return cmd("docker", "stack", "rm", stack)


def release_files(settings: Settings, sha: str) -> List[str]:
    return [posixpath.join(release_dir(settings, sha), name) for name in RELEASE_FILES]
