"""Remote commands for the app's compose project on the staging host.

Every compose call names the project, the compose file and the env file explicitly with
absolute paths, so it never depends on the remote working directory.
"""
import json
import re
import posixpath

from .shell import Command, cmd

COMPOSE_FILE = "compose.yaml"
ENV_FILE = ".env"


class ComposeCommands:
    def __init__(self, settings):
        self.settings = settings
        self.dir = settings.STAGING_DIR
        self.compose_path = posixpath.join(self.dir, COMPOSE_FILE)
        self.env_path = posixpath.join(self.dir, ENV_FILE)

    def _compose(self, *args) -> Command:
        return cmd("docker", "compose", "-p", self.settings.project, "-f", self.compose_path,
                   "--env-file", self.env_path, *args)

    def prepare_dir(self) -> Command:
        """The deploy directory, readable by the deploy user only (it holds the .env)."""
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

    def up(self) -> Command:
        return self._compose("up", "-d", "--remove-orphans")

    def ps(self) -> Command:
        return self._compose("ps", "-a", "--format", "json")

    def logs(self, service: str, tail: int = 15) -> Command:
        return self._compose("logs", "--no-color", "--no-log-prefix", "--tail", str(tail), service)

    def health_on_host(self) -> Command:
        """The health endpoint through the host's loopback: body, then the HTTP code on its own line."""
        url = f"http://127.0.0.1:{self.settings.APP_PORT}{self.settings.health_path}"
        return cmd("curl", "-sS", "-m", "3", "-w", r"\n%{http_code}", url)

    def registry_login(self) -> Command:
        return cmd("docker", "login", self.settings.REGISTRY, "--username",
                   self.settings.REGISTRY_PULL_USER, "--password-stdin",
                   stdin=self.settings.REGISTRY_PULL_PASSWORD)


def parse_ps(output: str) -> list:
    """`docker compose ps --format json`: a JSON list (older v2) or one object per line (newer)."""
    text = output.strip()
    if not text:
        return []
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def strip_terminal_codes(text: str) -> str:
    """compose writes terminal control sequences even with --no-color; drop them from logs."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def parse_http(output: str):
    """Split curl's `-w '\\n%{http_code}'` output into (status or None, body)."""
    body, _, code = output.rstrip("\n").rpartition("\n")
    return (int(code) if code.isdigit() and code != "000" else None), body
