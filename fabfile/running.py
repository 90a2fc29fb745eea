"""Facts about what runs on the host now, read from the containers themselves (never a tag).

`observe` is one health observation (containers, host loopback, public URL); `read_running`
turns it into the running release: the sha its app containers were built from, their image
ids, and whether it is healthy right now.
"""
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import requests

from .compose import ComposeCommands, inspect, parse_http, parse_inspect
from .errors import RemoteCommandError
from .health import HEALTHY, Outcome, Probe, assess, wait_until_healthy


@dataclass
class RunningRelease:
    sha: Optional[str]                 # None: no app container of this project exists
    healthy: bool
    reason: str
    images: Dict[str, str] = field(default_factory=dict)      # service -> image id
    containers: List[dict] = field(default_factory=list)


def containers(runner, compose: ComposeCommands) -> List[dict]:
    ids = runner.run(compose.container_ids(), "listing containers").stdout.split()
    if not ids:
        return []
    return parse_inspect(runner.run(inspect(ids), "docker inspect").stdout)


def observe(runner, compose: ComposeCommands, public_url: str, session=None) -> Probe:
    """One look at the release: containers and health on the host, health from here."""
    probe = Probe()
    try:
        probe.containers = containers(runner, compose)
        probe.host_status, probe.host_body = parse_http(
            runner.run(compose.health_on_host(), check=False, timeout=10).stdout)
    except RemoteCommandError as exc:
        probe.error = str(exc).splitlines()[0]
    try:
        response = (session or requests).get(
            public_url, timeout=3, headers={"X-Request-ID": "deploy-" + uuid.uuid4().hex[:12]})
        probe.public_status, probe.public_body = response.status_code, response.text
    except requests.RequestException as exc:
        probe.public_body = f"({type(exc).__name__})"
    return probe


def release_from(probe: Probe, settings) -> RunningRelease:
    """Which release the app containers belong to, and whether it is healthy."""
    app = [s.name for s in settings.services]
    rows = [c for c in probe.containers if c["Service"] in app]
    shas = {c["Revision"] for c in rows if c["Revision"]}
    if not rows:
        return RunningRelease(None, False, "no app containers", containers=probe.containers)
    if len(shas) != 1:
        return RunningRelease(None, False, f"app containers disagree on their sha: {sorted(shas)}",
                              containers=probe.containers)
    sha = shas.pop()
    # Restarts before now are history, not this observation's business.
    restarts = {c["Id"]: c["RestartCount"] for c in probe.containers}
    verdict = assess(probe, sha, app + list(settings.data_services), restarts)
    return RunningRelease(sha, verdict.state == HEALTHY, verdict.reason,
                          {c["Service"]: c["Image"] for c in rows}, probe.containers)


def read_running(runner, settings) -> RunningRelease:
    compose = ComposeCommands(settings)
    return release_from(observe(runner, compose, settings.STAGING_URL + settings.health_path),
                        settings)


def restart_counts(runner, settings) -> Dict[str, int]:
    """container id -> restart count, taken before a switch (see health.assess)."""
    return {c["Id"]: c["RestartCount"] for c in containers(runner, ComposeCommands(settings))}


def wait_for_release(runner, settings, sha: str, reporter, restarts_before: Dict[str, int],
                     timeout: float = None) -> Outcome:
    """Poll until release `sha` is healthy and stays so for the settle window, or fails."""
    compose = ComposeCommands(settings)
    session = requests.Session()
    public_url = settings.STAGING_URL + settings.health_path
    last_note = [0.0]

    def on_wait(waited, verdict):
        if waited - last_note[0] >= 5:
            last_note[0] = waited
            reporter.note(f"still waiting ({waited:.0f}s): {verdict.reason}")

    services = [s.name for s in settings.services] + list(settings.data_services)
    return wait_until_healthy(lambda: observe(runner, compose, public_url, session), sha, services,
                              timeout or settings.HEALTH_TIMEOUT, settings.health_interval,
                              settings.HEALTH_SETTLE, restarts_before, on_wait)
