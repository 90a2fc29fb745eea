"""`deploy.logs` and `deploy.exec`: looking into, and acting on, the live release in an incident.

Both find the live release from its containers (the slot the edge names, the sha its app
containers were built from) and use that release's own compose files and .env on the host, so a
log or a one-off container is exactly the live release's. Neither takes the deploy lock; exec
refuses while someone holds it unless forced. Their output is written through a
`report.RedactingStream`.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable, List, Optional

from ..compose.commands import (
    EDGE_SERVICE,
    ComposeCommands,
    ensure_secrets_file,
    release_dir,
    strip_terminal_codes,
)
from ..compose.running import live_release
from ..errors import DeployError
from ..story.lock import lock_holders
from ..swarm.stacks import app_stack, service_logs
from ..transport.commands import TextSink
from ..transport.runner import Runner

if TYPE_CHECKING:
    from ..config.settings import Settings

# What `docker compose logs --since` takes: a duration (10m, 1h30m), a date or time, a Unix time.
SINCE = re.compile(r"(\d+(\.\d+)?(ms|s|m|h))+|\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?"
                   r"|\d+(\.\d+)?")


def stable_services(settings: Settings) -> List[str]:
    return sorted(set(settings.data_services) | {EDGE_SERVICE})


def app_services(settings: Settings) -> List[str]:
    return [s.name for s in settings.services]


def log_problems(settings: Settings, service: Optional[str], since: Optional[str], tail: str) -> List[str]:
    """What is wrong with deploy.logs' arguments (checked before connecting)."""
    problems = []
    known = app_services(settings) + stable_services(settings)
    if service and service not in known:
        problems.append(f"unknown service {service!r}: one of {', '.join(known)}")
    if since and not SINCE.fullmatch(since):
        problems.append(f"--since {since!r} must be a duration such as 10m or 1h30m, or a time "
                        "such as 2026-11-27T10:00:00Z")
    if tail != "all" and not str(tail).isdigit():
        problems.append(f"--tail {tail!r} must be a number of lines, or all")
    return problems


def exec_problems(settings: Settings, service: Optional[str], argv: List[str]) -> List[str]:
    """What is wrong with deploy.exec's arguments (checked before connecting)."""
    problems = []
    if service not in app_services(settings):
        problems.append(f"deploy.exec needs one of the app's services ({', '.join(app_services(settings))}), "
                        f"not {service!r}: a second container of a data service could write to "
                        "its data")
    if not argv:
        problems.append("give the command after --, as in: inv deploy.exec backend -- sh")
    if settings.on_swarm:
        problems.append("deploy.exec is not available on the swarm target yet: `docker exec` into "
                        "a task's container on its node (`docker service ps` names the node)")
    return problems


def live_compose(runner: Runner, settings: Settings, service: Optional[str]) -> ComposeCommands:
    """The compose project that runs `service` (the app's, when None) for the live release."""
    runner.run(ensure_secrets_file(settings))   # a host staged before the secrets file
    if service in stable_services(settings):
        return ComposeCommands(settings)
    live = live_release(runner, settings)
    if not live.sha:
        raise DeployError("no release is live on the host (inv deploy.status says what runs)")
    return ComposeCommands(settings, release_dir(settings, live.sha), live.slot)


def show_logs(runner: Runner, settings: Settings, service: Optional[str], since: Optional[str], tail: str,
              follow: bool, out: TextSink) -> int:
    """The live release's logs (its app services, or one service) into `out`."""
    services = [service] if service else app_services(settings)
    if settings.on_swarm:
        stacks = {s: settings.project if s in stable_services(settings) else app_stack(settings)
                  for s in services}
        command = service_logs([f"{stacks[s]}_{s}" for s in services], tail, since, follow)
    else:
        command = live_compose(runner, settings, service).logs(
            *services, tail=tail, since=since, follow=follow, prefix=len(services) > 1)
    # following ends with Ctrl-C, which must reach the remote `logs`: a pty carries it
    return runner.stream(command, PlainText(out), pty=follow)


class PlainText:
    """Writes to `out` without terminal control codes (compose adds some even to a pipe) and
    with a pty's line ends made plain."""

    def __init__(self, out: TextSink) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write(strip_terminal_codes(text).replace("\r\n", "\n"))

    def flush(self) -> None:
        self.out.flush()


def exec_in_live(runner: Runner, settings: Settings, service: str, argv: List[str], out: TextSink,
                 force: bool, interactive: bool, stdin: Optional[str],
                 say: Callable[[str], None]) -> int:
    """`argv` in a new container of the live release's `service`; returns its exit code."""
    if not force and lock_holders(runner, settings):
        raise DeployError("a deploy or rollback holds the deploy lock (`inv deploy.status` says "
                          "which): wait for it, or add --force to run anyway")
    compose = live_compose(runner, settings, service)
    say(f"running in a new {service} container of the live release ({compose.project}): "
        f"{' '.join(argv)}")
    return runner.stream(compose.run_one_off(service, argv, interactive, stdin), out,
                         pty=interactive, keys=interactive)
