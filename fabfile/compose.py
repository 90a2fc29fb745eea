"""Remote commands for the app's compose project on the staging host.

Every compose call names the project, the compose file and the env file explicitly with
absolute paths, so it never depends on the remote working directory. The files of every
release are kept in `STAGING_DIR/releases/<sha>/`; the pair at the top of STAGING_DIR is the
release that should be running.
"""
import json
import posixpath
import re

from .shell import Command, cmd

COMPOSE_FILE = "compose.yaml"
ENV_FILE = ".env"
RELEASE_FILES = (COMPOSE_FILE, ENV_FILE)


def release_dir(settings, sha: str) -> str:
    return posixpath.join(settings.STAGING_DIR, "releases", sha)


class ComposeCommands:
    """Compose commands for the files in `directory` (default: the active pair in STAGING_DIR)."""

    def __init__(self, settings, directory: str = None):
        self.settings = settings
        self.dir = directory or settings.STAGING_DIR
        self.compose_path = posixpath.join(self.dir, COMPOSE_FILE)
        self.env_path = posixpath.join(self.dir, ENV_FILE)

    def _compose(self, *args) -> Command:
        return cmd("docker", "compose", "-p", self.settings.project, "-f", self.compose_path,
                   "--env-file", self.env_path, *args)

    def prepare_dir(self) -> Command:
        """The directory, readable by the deploy user only (it holds a .env)."""
        return cmd("install", "-d", "-m", "0700", self.dir)

    def pull(self) -> Command:
        return self._compose("pull", "--quiet")

    def start_data_services(self) -> Command:
        """Start (or leave running, if unchanged) the stateful services and wait until healthy."""
        return self._compose("up", "-d", "--wait", *self.settings.data_services)

    def migrate(self) -> Command:
        """Migrations as a one-off container of the new image, before the switch."""
        return self._compose("run", "--rm", "-T", "--no-deps", self.settings.migrate_service,
                             *self.settings.migrate_command)

    def up(self, pull_never: bool = False) -> Command:
        """Bring the stack to these files; with pull_never, only images already on the host."""
        extra = ("--pull", "never") if pull_never else ()
        return self._compose("up", "-d", "--remove-orphans", *extra)

    def stop(self, *services) -> Command:
        return self._compose("stop", *services)

    def container_ids(self) -> Command:
        return cmd("docker", "ps", "-a", "-q", "--no-trunc", "--filter",
                   f"label=com.docker.compose.project={self.settings.project}")

    def logs(self, service: str, tail: int = 15) -> Command:
        return self._compose("logs", "--no-color", "--no-log-prefix", "--tail", str(tail), service)

    def exec_in(self, service: str, script: str) -> Command:
        """A shell script inside a running service container (its env vars, not our argv)."""
        return self._compose("exec", "-T", service, "sh", "-c", script)

    def health_on_host(self) -> Command:
        """The health endpoint through the host's loopback: body, then the HTTP code on its own line."""
        url = f"http://127.0.0.1:{self.settings.APP_PORT}{self.settings.health_path}"
        return cmd("curl", "-sS", "-m", "3", "-w", r"\n%{http_code}", url)

    def registry_login(self) -> Command:
        return cmd("docker", "login", self.settings.REGISTRY, "--username",
                   self.settings.REGISTRY_PULL_USER, "--password-stdin",
                   stdin=self.settings.REGISTRY_PULL_PASSWORD)


def inspect(ids) -> Command:
    return cmd("docker", "inspect", *ids)


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
            "State": state.get("Status", ""),
            "Health": (state.get("Health") or {}).get("Status", ""),
            "ExitCode": state.get("ExitCode"),
            "RestartCount": item.get("RestartCount", 0),
            "Image": item.get("Image", ""),
            "ImageRef": item.get("Config", {}).get("Image", ""),
            "Revision": labels.get("org.opencontainers.image.revision", ""),
        })
    return rows


def strip_terminal_codes(text: str) -> str:
    """compose writes terminal control sequences even with --no-color; drop them from logs."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def parse_http(output: str):
    """Split curl's `-w '\\n%{http_code}'` output into (status or None, body)."""
    body, _, code = output.rstrip("\n").rpartition("\n")
    return (int(code) if code.isdigit() and code != "000" else None), body
