"""Remote commands for the app's compose projects on the staging host.

The stack is three compose projects: `<project>` (compose.yaml: postgres, redis and the `edge`
proxy that owns the public port) and two app slots, `<project>-blue` and `<project>-green`
(app.yaml: frontend, backend). A release starts in the idle slot beside the live one; the edge
is switched to it once it is healthy. Which slot is live is written in `edge/live.conf`.

Every compose call names the project, the compose file and the env file explicitly with
absolute paths, so it never depends on the remote working directory. The files of every
release are kept in `STAGING_DIR/releases/<sha>/`; the pair at the top of STAGING_DIR is what
the stable project runs with.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from ..config.declared import image_variable
from ..config.definitions import sha_or_empty
from ..story.health import SLOT_HEADER
from ..transport.commands import Command, Result, cmd

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..transport.runner import Runner

BASE_FILE = "compose.yaml"
APP_FILE = "app.yaml"
ENV_FILE = ".env"
# The secrets of the app's environment, at the top of STAGING_DIR (0600): written by every
# deploy from its settings, read by every release after its own .env (which keeps only its
# non-secret configuration), so a rollback or an undo never brings back a rotated secret.
SECRETS_FILE = "secrets.env"
RELEASE_FILES = (BASE_FILE, APP_FILE, ENV_FILE)
SLOTS = ("blue", "green")
EDGE_SERVICE = "edge"
EDGE_CONFIG = "nginx.conf"
STABLE_DIGEST = "stable.digest"
# Where compose.yaml mounts edge/ in the edge container, and the config nginx runs with.
EDGE_MOUNT = "/etc/nginx/deploy"
PROJECT_LABEL = "com.docker.compose.project"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
ONE_OFF_LABEL = "deploy.migration"   # on a migration's one-off container: stopped at its timeout
TOOL_FILES = Path(__file__).resolve().parent.parent / "files"


# $1 the project label, $2 the project, $3 the service, $4 the script; stdin passes through.
EXEC_IN_SERVICE = ('c=$(docker ps -q --filter "label=$1=$2" --filter '
                   '"label=com.docker.compose.service=$3" --filter status=running | head -n 1); '
                   '[ -n "$c" ] || { echo "no running $3 container in compose project $2" >&2; '
                   'exit 1; }; exec docker exec -i "$c" sh -c "$4"')


def made_by_tool(config_files: str, settings: Settings) -> bool:
    """Whether a container of the project was created from the tool's own files (the stable
    compose.yaml in STAGING_DIR, a release's files), not by hand (a stack it takes over)."""
    stable = posixpath.join(settings.STAGING_DIR, BASE_FILE)
    releases = release_dir(settings, "")
    return all(f == stable or f.startswith(releases) for f in config_files.split(",") if f)


def one_off_label(settings: Settings) -> str:
    """The label of a migration's container (or its check's), on either target."""
    return f"{ONE_OFF_LABEL}={settings.project}"


def stop_one_off(settings: Settings) -> Command:
    """Stops and removes a migration's container that outlived its timeout (none: no error)."""
    return cmd("sh", "-c", 'ids=$(docker ps -aq --filter "label=$1") && '
               '{ [ -z "$ids" ] || docker rm -f $ids >/dev/null; }', "sh", one_off_label(settings))


def release_dir(settings: Settings, sha: str) -> str:
    return posixpath.join(settings.STAGING_DIR, "releases", sha)


def edge_dir(settings: Settings) -> str:
    return posixpath.join(settings.STAGING_DIR, "edge")


def slot_project(settings: Settings, slot: str) -> str:
    return f"{settings.project}-{slot}"


def other_slot(slot: Optional[str]) -> str:
    """The slot a new release goes to: the one that is not live (blue when none is)."""
    return "green" if slot == "blue" else "blue"


def secrets_path(settings: Settings) -> str:
    return posixpath.join(settings.STAGING_DIR, SECRETS_FILE)


def ensure_secrets_file(settings: Settings) -> Command:
    """The secrets file exists (empty on a host deployed by a version before it), so that
    Compose, which refuses a missing --env-file, runs; its content is left as it is."""
    return cmd("sh", "-c", 'umask 077 && touch -- "$1"', "sh", secrets_path(settings))


def write_secrets(runner: Runner, settings: Settings, render: Callable[[Mapping[str, str]], str]) -> bool:
    """The host's secrets file from these settings, if they carry every secret (a deploy's
    do; a rollback from a shell may not: then the host's current ones stay). Whether written."""
    if not settings.carries_secrets():
        runner.run(ensure_secrets_file(settings))
        return False
    runner.put(secrets_path(settings), render(settings.split_secrets(settings.app_env("0" * 40))[1]))
    return True


class ComposeCommands:
    """Compose commands for the stable project (slot None) or an app slot, using the files in
    `directory` (default: the pair at the top of STAGING_DIR)."""

    def __init__(self, settings: Settings, directory: Optional[str] = None, slot: Optional[str] = None):
        self.settings = settings
        self.slot = slot
        self.dir = directory or settings.STAGING_DIR
        self.project = slot_project(settings, slot) if slot else settings.project
        self.compose_path = posixpath.join(self.dir, APP_FILE if slot else BASE_FILE)
        self.env_path = posixpath.join(self.dir, ENV_FILE)

    def _compose(self, *args: str) -> Command:
        slot = ("env", f"DEPLOY_SLOT={self.slot}") if self.slot else ()
        return cmd(*slot, "docker", "compose", "-p", self.project, "-f", self.compose_path,
                   "--env-file", self.env_path, "--env-file", secrets_path(self.settings), *args)

    def prepare_dir(self) -> Command:
        """The directory, readable by the deploy user only (it holds a .env)."""
        return cmd("install", "-d", "-m", "0700", "--", self.dir)

    def pull(self) -> Command:
        return self._compose("pull", "--quiet")

    def up_stable(self) -> Command:
        """Start (or leave running, if unchanged) the stable services the app uses (the edge and
        its data_services: an app without Redis runs none) and wait until healthy. No orphan is
        removed: containers of the project the tool did not start are the team's (takeover.py)."""
        return self._compose("up", "-d", "--wait", *sorted(stable_services(self.settings)))

    def migrate(self) -> Command:
        """Migrations as a one-off container of the new image, before it gets traffic."""
        return self._one_off(self.settings.migrate_command)

    def migrate_check(self) -> Command:
        """Asks the new image whether it has migrations to apply (exit 0: none)."""
        return self._one_off(self.settings.migrate_check_command)

    def _one_off(self, argv: Sequence[str]) -> Command:
        """A container of the migrate service's image, labelled (so that one still running at
        migrate_timeout can be stopped), through its ENTRYPOINT or migrate_entrypoint."""
        entrypoint = self.settings.migrate_entrypoint
        return self._compose("run", "--rm", "-T", "--no-deps", "--label", one_off_label(self.settings),
                             *(("--entrypoint", entrypoint) if entrypoint else ()),
                             self.settings.migrate_service, *argv)

    def up(self, pull_never: bool = False) -> Command:
        """Bring the project to these files; with pull_never, only images already on the host."""
        extra = ("--pull", "never") if pull_never else ()
        return self._compose("up", "-d", "--remove-orphans", *extra)

    def reload_edge(self) -> Command:
        """nginx checks, then re-reads its config (edge_reload), in the stable project's edge
        container, named as Compose v2 names it (`docker exec`: a third of the time of
        `docker compose exec`, which reads the project first)."""
        return edge_reload(f"{self.project}-{EDGE_SERVICE}-1", f"{EDGE_MOUNT}/{EDGE_CONFIG}")

    def logs(self, *services: str, tail: str = "15", since: Optional[str] = None, follow: bool = False,
             prefix: bool = False) -> Command:
        """The services' logs (all of the project's when none is named), each line prefixed
        with its container's name if `prefix`."""
        return self._compose("logs", "--no-color", *(() if prefix else ("--no-log-prefix",)),
                             "--tail", str(tail), *(("--since", since) if since else ()),
                             *(("--follow",) if follow else ()), *services)

    def run_one_off(self, service: str, argv: Sequence[str], interactive: bool = False,
                    stdin: Optional[str] = None) -> Command:
        """`argv` in a new container of `service` (its image, its environment; the image's
        entrypoint replaced, as with docker exec), removed after. No dependency is started and
        it has no network alias, so it never gets a request."""
        tty = () if interactive else ("-T",)
        command = self._compose("run", "--rm", "--no-deps", *tty,
                                "--entrypoint", shlex.quote(argv[0]), service, *argv[1:])
        return replace(command, stdin=stdin)

    def exec_in(self, service: str, script: str) -> Command:
        """A shell script inside the running container of `service` of this project (its env
        vars, not our argv), found by its labels: it needs none of the tool's files, so it also
        reaches a stack the tool takes over (a database started by hand)."""
        return cmd("sh", "-c", EXEC_IN_SERVICE, "sh", PROJECT_LABEL, self.project, service, script)


def health_on_host(settings: Settings, slot: Optional[str] = None) -> Command:
    """The health endpoint through the host's loopback: response headers, body, then the HTTP
    code on its own line (parse_http). Through the public port, or, for `slot`, straight to
    that slot through the edge's candidate port (whether or not it is live)."""
    url = f"http://127.0.0.1:{settings.APP_PORT}"
    headers: Tuple[str, ...] = ()
    if slot:
        url, headers = f"http://127.0.0.1:{settings.PREVIEW_PORT}", ("-H", f"{SLOT_HEADER}: {slot}")
    elif settings.EDGE_TLS == "acme":
        # plain HTTP is redirected: the HTTPS port, its certificate checked from here (PUBLIC)
        url, headers = f"https://127.0.0.1:{settings.HTTPS_PORT}", ("-k",)
    return cmd("curl", "-sS", "-m", "3", "-D", "-", "-w", r"\n%{http_code}", *headers,
               url + settings.health_path)


# The oldest Compose whose .env parser reads what config/envfile.py writes: compose-go 1.16
# (Compose 2.20) reads `"x\\"` as `x\`; up to 2.19 a quote after a backslash does not end
# a value, so a secret ending in `\` breaks every compose call and a crafted one adds a variable.
COMPOSE_MIN = (2, 20, 0)


def compose_version() -> Command:
    return cmd("docker", "compose", "version", "--short")


def compose_too_old(answer: Result) -> Optional[str]:
    """One line when the host's Compose (as `compose_version` answered) cannot be used: absent,
    or older than COMPOSE_MIN. A version it cannot read (a development build) is let through."""
    need = ".".join(map(str, COMPOSE_MIN))
    if not answer.ok:
        return (f"Docker Compose v2 is not installed on the host (this tool needs {need} or "
                "newer): run `inv staging.setup`")
    found = re.match(r"v?(\d+)\.(\d+)\.(\d+)", answer.stdout.strip())
    if found and tuple(map(int, found.groups())) < COMPOSE_MIN:
        return (f"Docker Compose {'.'.join(found.groups())} on the host is older than {need}, "
                "whose .env parser this tool writes for (a value ending in a backslash would "
                "be read differently): upgrade the host's docker-compose-plugin (Docker's apt "
                "repository, or `inv staging.setup --compose-deb FILE`)")
    return None


def engine_version() -> Command:
    """Answers (exit 0) once the host's Docker engine is up."""
    return cmd("docker", "version", "--format", "{{.Server.Version}}")


def app_file(settings: Settings, name: str) -> str:
    """A file of the app's own compose folder (its slot file: app.yaml, stack-app.yaml)."""
    with open(posixpath.join(settings.compose_dir, name), encoding="utf-8") as handle:
        return handle.read()


# Lines of the tool's files that belong only to an edge serving HTTPS (EDGE_TLS=acme): without
# it, the edge publishes no port 443 (a proxy on the host may own it).
HTTPS_ONLY = "# with EDGE_TLS=acme"


def tool_file(settings: Settings, name: str) -> str:
    """A file the tool ships (files/: the stable project's compose.yaml, stack.yaml, the edge's
    nginx config), as uploaded for these settings."""
    text = (TOOL_FILES / name).read_text(encoding="utf-8")
    if settings.EDGE_TLS != "acme":
        text = "".join(line for line in text.splitlines(keepends=True)
                       if not line.rstrip().endswith(HTTPS_ONLY))
    return text


def stable_services(settings: Settings) -> Set[str]:
    return set(settings.data_services) | {EDGE_SERVICE}


def stable_text(settings: Settings) -> str:
    """Everything the stable project runs from: compose.yaml and the edge's own config (the
    routes belong to each release, live.conf to each switch)."""
    return tool_file(settings, BASE_FILE) + tool_file(settings, posixpath.join("edge", EDGE_CONFIG))


def stable_digest(settings: Settings, text: str) -> Optional[str]:
    """What the stable project runs with, as one hash: its compose file (`text`) and the values
    of the variables it reads. None when that would change with every release (the file reads
    RELEASE_SHA or an app image): then the stable services are brought up on every deploy."""
    names = sorted(set(re.findall(r"\$\{(\w+)", text)))
    per_release = {"RELEASE_SHA"} | {image_variable(s.name) for s in settings.services}
    if per_release & set(names):
        return None
    env = settings.app_env("")
    material = json.dumps([settings.project, text, [env.get(name) for name in names]])
    return hashlib.sha256(material.encode()).hexdigest()


def stable_digest_path(settings: Settings) -> str:
    """Where the digest of the stable project's last successful `up` is kept on the host."""
    return posixpath.join(settings.STAGING_DIR, STABLE_DIGEST)


def running_services(project: str) -> Command:
    """The services of compose project `project` that have a running container, one a line."""
    return cmd("docker", "ps", "--filter", f"label={PROJECT_LABEL}={project}", "--filter",
               "status=running", "--format", '{{.Label "com.docker.compose.service"}}')


def all_containers() -> Command:
    """Every compose container on the host with its project; `ours` picks ours."""
    return cmd("docker", "ps", "-a", "--no-trunc", "--filter", f"label={PROJECT_LABEL}",
               "--format", "{{.ID}} {{.Label \"%s\"}}" % PROJECT_LABEL)


def ours(output: str, projects: Iterable[str]) -> List[str]:
    """Container ids (from `all_containers`) that belong to exactly these compose projects."""
    wanted = set(projects)
    rows = [line.split() for line in output.splitlines()]
    return [row[0] for row in rows if len(row) == 2 and row[1] in wanted]


def edge_reload(container: str, config: str) -> Command:
    """nginx in `container` checks `config`, then re-reads it; old workers finish their
    in-flight requests. Through `exec`, never a signal from the engine: Docker 20.10 counts
    `docker kill` as a stop by hand, and does not restart such a container when the server
    reboots."""
    return cmd("docker", "exec", container, "sh", "-c",
               f"nginx -t -q -c {config} && nginx -s reload -c {config}")


def stop_containers(ids: List[str]) -> Command:
    """Each stops with its own stop signal and grace period (nginx SIGQUIT drains)."""
    return cmd("docker", "stop", *ids)


def remove_containers(ids: List[str]) -> Command:
    return cmd("docker", "rm", *ids)


def inspect(ids: Sequence[str]) -> Command:
    return cmd("docker", "inspect", *ids)


def only_vanished(stderr: str) -> bool:
    """`docker inspect` failed only because containers listed a moment before are gone (a
    one-off `run --rm`, such as `deploy.exec`'s, ended in between): what it printed of the
    others still holds."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all(line.startswith("Error: No such object: ") for line in lines)


def parse_inspect(output: str) -> list:
    """`docker inspect` of the project's containers -> one row per service container.

    One-off containers (migrations) are left out. Container labels include the image's
    labels, so each row carries the sha the image was built from."""
    rows = []
    for item in json.loads(output or "[]"):
        labels = item.get("Config", {}).get("Labels") or {}
        if labels.get("com.docker.compose.oneoff") == "True":
            continue
        state = item.get("State", {})
        rows.append({
            "Id": item.get("Id", ""),
            "Service": labels.get("com.docker.compose.service", ""),
            "Project": labels.get(PROJECT_LABEL, ""),
            "State": state.get("Status", ""),
            "Health": (state.get("Health") or {}).get("Status", ""),
            "ExitCode": state.get("ExitCode"),
            "RestartCount": item.get("RestartCount", 0),
            "Image": item.get("Image", ""),
            "ImageRef": item.get("Config", {}).get("Image", ""),
            # what the host says is read, not trusted: a revision that is no sha is none
            "Revision": sha_or_empty(labels.get("org.opencontainers.image.revision", "")),
            "Files": labels.get(CONFIG_FILES_LABEL, ""),
        })
    return rows


def strip_terminal_codes(text: str) -> str:
    """compose writes terminal control sequences even with --no-color; drop them from logs."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def parse_http(output: str) -> Tuple[Optional[int], str, Dict[str, str]]:
    """Split curl's `-D - -w '\\n%{http_code}'` output into (status or None, body, headers with
    lower-case names)."""
    text, _, code = output.rstrip("\n").rpartition("\n")
    head, _, body = text.partition("\r\n\r\n") if text.startswith("HTTP/") else ("", "", text)
    headers = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return (int(code) if code.isdigit() and code != "000" else None), body, headers
