"""Facts about what runs on the host now, read from the containers themselves (never a tag).

`observe` is one health observation of a slot (its containers and the stable ones, health on
the host, and for the live slot health from here too); `read_running` turns the live slot's
observation into the running release: the sha its app containers were built from, their image
ids, and whether it is healthy right now.
"""
import uuid
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import requests

from .compose import (
    EDGE_SERVICE,
    LIVE_FILE,
    SLOTS,
    ComposeCommands,
    all_containers,
    edge_dir,
    inspect,
    ours,
    parse_http,
    parse_inspect,
    parse_live_conf,
    slot_project,
)
from .errors import RemoteCommandError
from .health import HEALTHY, Outcome, Probe, assess, wait_until_healthy
from .shell import cmd


@dataclass
class RunningRelease:
    sha: Optional[str]                 # None: no app container is live
    healthy: bool
    reason: str
    slot: Optional[str] = None
    images: Dict[str, str] = field(default_factory=dict)      # service -> image id
    containers: List[dict] = field(default_factory=list)


def projects(settings) -> List[str]:
    return [settings.project] + [slot_project(settings, slot) for slot in SLOTS]


def containers(runner, settings) -> List[dict]:
    """Every container of the stable project and both slots (one-offs left out)."""
    ids = ours(runner.run(all_containers(), "listing containers").stdout, projects(settings))
    if not ids:
        return []
    return parse_inspect(runner.run(inspect(ids), "docker inspect").stdout)


def slot_containers(rows: List[dict], settings, slot: Optional[str]) -> List[dict]:
    """The app containers of `slot`, and the stable project's."""
    wanted = {settings.project, slot_project(settings, slot) if slot else None}
    return [c for c in rows if c["Project"] in wanted]


def live_slot(runner, settings) -> Optional[str]:
    """The slot the edge sends users to (None before the first release)."""
    path = f"{edge_dir(settings)}/{LIVE_FILE}"
    return parse_live_conf(runner.run(cmd("cat", path), check=False).stdout)


def observe(runner, settings, slot: Optional[str], candidate: bool = False,
            session=None) -> Probe:
    """One look at a slot: its containers and health on the host; unless it is a candidate
    (no user traffic yet), also health through the public URL from here."""
    probe = Probe(public_checked=not candidate)
    compose = ComposeCommands(settings, slot=slot if candidate else None)
    try:
        probe.containers = slot_containers(containers(runner, settings), settings, slot)
        probe.host_status, probe.host_body = parse_http(
            runner.run(compose.health_on_host(), check=False, timeout=10).stdout)
    except RemoteCommandError as exc:
        probe.error = str(exc).splitlines()[0]
    if candidate:
        return probe
    try:
        response = (session or requests).get(
            settings.STAGING_URL + settings.health_path, timeout=3,
            headers={"X-Request-ID": "deploy-" + uuid.uuid4().hex[:12]})
        probe.public_status, probe.public_body = response.status_code, response.text
    except requests.RequestException as exc:
        probe.public_body = f"({type(exc).__name__})"
    return probe


def checked_services(settings) -> List[str]:
    return [s.name for s in settings.services] + list(settings.data_services) + [EDGE_SERVICE]


def release_from(probe: Probe, settings, slot: Optional[str]) -> RunningRelease:
    """Which release the live slot's app containers belong to, and whether it is healthy."""
    app = [s.name for s in settings.services]
    rows = [c for c in probe.containers if c["Service"] in app and slot
            and c["Project"] == slot_project(settings, slot)]
    shas = {c["Revision"] for c in rows if c["Revision"]}
    if not rows:
        return RunningRelease(None, False, "no live app containers", slot,
                              containers=probe.containers)
    if len(shas) != 1:
        return RunningRelease(None, False, f"app containers disagree on their sha: {sorted(shas)}",
                              slot, containers=probe.containers)
    sha = shas.pop()
    # Restarts before now are history, not this observation's business.
    restarts = {c["Id"]: c["RestartCount"] for c in probe.containers}
    verdict = assess(probe, sha, checked_services(settings), restarts)
    return RunningRelease(sha, verdict.state == HEALTHY, verdict.reason, slot,
                          {c["Service"]: c["Image"] for c in rows}, probe.containers)


def read_running(runner, settings) -> RunningRelease:
    slot = live_slot(runner, settings)
    return release_from(observe(runner, settings, slot), settings, slot)


def restart_counts(runner, settings) -> Dict[str, int]:
    """container id -> restart count, taken before containers start (see health.assess)."""
    return {c["Id"]: c["RestartCount"] for c in containers(runner, settings)}


def wait_for_slot(runner, settings, sha: str, slot: str, reporter,
                  restarts_before: Dict[str, int], timeout: float = None,
                  candidate: bool = True, settle: float = None) -> Outcome:
    """Poll until release `sha` in `slot` is healthy and stays so for the settle window, or
    fails. As a candidate it is checked through the edge's candidate port; once live, through
    the public port on the host and the public URL from here."""
    session = requests.Session()
    last_note = [0.0]

    def on_wait(waited, verdict):
        if waited - last_note[0] >= 5:
            last_note[0] = waited
            reporter.note(f"still waiting ({waited:.0f}s): {verdict.reason}")

    return wait_until_healthy(
        lambda: observe(runner, settings, slot, candidate, session), sha,
        checked_services(settings), timeout or settings.HEALTH_TIMEOUT, settings.health_interval,
        settings.HEALTH_SETTLE if settle is None else settle, restarts_before, on_wait)
