"""Facts about what runs on the host now, read from the containers themselves (never a tag).

`observe` is one health observation of a slot: its containers and the stable ones, and the
health path asked where the caller says (the slot itself through the edge's candidate port, the
host's public port, the public URL from here); `read_running` turns the live slot's observation
into the running release: the sha its app containers were built from, their image ids, and
whether it is healthy right now.
"""
from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Set, Tuple

from ..errors import RemoteCommandError
from ..story.health import (
    HEALTHY,
    Answer,
    Expected,
    Outcome,
    Probe,
    Verdict,
    assess,
    wait_until_healthy,
    watch_window,
)
from ..story.target import RunningRelease
from ..transport.commands import cmd
from .commands import (
    EDGE_SERVICE,
    SLOTS,
    all_containers,
    edge_dir,
    health_on_host,
    inspect,
    only_vanished,
    ours,
    parse_http,
    parse_inspect,
    running_services,
    slot_project,
    stable_digest,
    stable_digest_path,
    stable_services,
    stable_text,
)
from .edge import LIVE_FILE, parse_live_conf

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner



def projects(settings: Settings) -> List[str]:
    return [settings.project] + [slot_project(settings, slot) for slot in SLOTS]


def containers(runner: Runner, settings: Settings, listing: Optional[str] = None) -> List[dict]:
    """Every container of the stable project and both slots (one-offs left out); `listing`:
    the output of `all_containers`, if the caller read it already."""
    if listing is None:
        listing = runner.run(all_containers(), "listing containers").stdout
    ids = ours(listing, projects(settings))
    if not ids:
        return []
    result = runner.run(inspect(ids), check=False)
    if not result.ok and not only_vanished(result.stderr):
        raise RemoteCommandError("docker inspect", result.tail())
    return parse_inspect(result.stdout)


def slot_containers(rows: List[dict], settings: Settings, slot: Optional[str]) -> List[dict]:
    """The app containers of `slot`, and the stable project's own services (an app container
    in the stable project is not the tool's: a stack run by hand that it takes over)."""
    stable = stable_services(settings)
    return [c for c in rows if (c["Project"] == settings.project and c["Service"] in stable)
            or (slot and c["Project"] == slot_project(settings, slot))]


def app_containers(rows: List[dict], settings: Settings, slot: Optional[str]) -> List[dict]:
    """The app containers (the services this repository builds) of `slot`."""
    app = {s.name for s in settings.services}
    return [c for c in rows if slot and c["Service"] in app
            and c["Project"] == slot_project(settings, slot)]


def live_slot(runner: Runner, settings: Settings) -> Optional[str]:
    """The slot the edge sends users to (None before the first release)."""
    path = f"{edge_dir(settings)}/{LIVE_FILE}"
    result = runner.run(cmd("cat", path), check=False)
    if not result.ok and "No such file" not in result.stderr:
        raise RemoteCommandError(f"reading {path}", result.tail())
    return parse_live_conf(result.stdout)


# Where a health observation asks: the slot itself (through the edge's candidate port), the
# host's public port, the public URL from here.
SLOT, HOST, PUBLIC = "slot", "host", "public"
CANDIDATE = (SLOT,)              # before the switch: no user reaches the slot yet
LIVE = (HOST, PUBLIC)            # what users get
WATCHED = (SLOT, HOST, PUBLIC)   # in the watch window: the slot's own answer names the cause


def observe(runner: Runner, settings: Settings, slot: Optional[str],
            via: Tuple[str, ...] = LIVE) -> Probe:
    """One look at a slot: its containers (and the stable ones), and the health path `via`."""
    probe = Probe()
    try:
        probe.containers = slot_containers(containers(runner, settings), settings, slot)
        for place in via:
            if place != PUBLIC:
                command = health_on_host(settings, slot if place == SLOT else None)
                answer = parse_http(runner.run(command, check=False, timeout=10).stdout)
                probe.answers.append(Answer(f"slot {slot}" if place == SLOT else "host", *answer))
    except RemoteCommandError as exc:
        probe.error = str(exc).splitlines()[0]
        return probe
    if PUBLIC in via:
        answer = runner.get(settings.STAGING_URL + settings.health_path, timeout=3,
                            headers={"X-Request-ID": "deploy-" + uuid.uuid4().hex[:12]})
        probe.answers.append(Answer("public URL", *answer))
    return probe


def expected(settings: Settings, sha: str, slot: Optional[str]) -> Expected:
    """Release `sha` in `slot`, healthy: its app containers and the stable ones running, every
    answer saying healthy (the app's health contract) and given by `slot` (the edge says so)."""
    built = [s.name for s in settings.services]
    return Expected(sha, built + list(settings.data_services) + [EDGE_SERVICE], built,
                    settings.health, slot)


def release_from(probe: Probe, settings: Settings, slot: Optional[str]) -> RunningRelease:
    """Which release the live slot's app containers belong to, and whether it is healthy."""
    rows = app_containers(probe.containers, settings, slot)
    shas = {c["Revision"] for c in rows if c["Revision"]}
    if not rows:
        return RunningRelease(None, False, "no live app containers", slot,
                              containers=probe.containers)
    if len(shas) != 1:
        return RunningRelease(None, False, f"app containers disagree on their sha: {sorted(shas)}",
                              slot, containers=probe.containers)
    sha = shas.pop()
    # Restarts are history for this observation (a data service may have restarted long ago)...
    restarts = {c["Id"]: c["RestartCount"] for c in probe.containers}
    verdict = assess(probe, expected(settings, sha, slot), restarts)
    healthy, reason = verdict.state == HEALTHY, verdict.reason
    # ...but an app container is new with its release, and the engine counts from its last start
    # (a reboot resets the count): any restart is the release crashing since it went live.
    crashes = [f"{c['Service']} restarted {c['RestartCount']} time(s) since it went live "
               "(crashing)" for c in rows if c["RestartCount"]]
    if crashes:
        healthy = False
        reason = "; ".join(crashes + ([] if verdict.state == HEALTHY else [reason]))
    return RunningRelease(sha, healthy, reason, slot, {c["Service"]: c["Image"] for c in rows},
                          probe.containers)


def live_release(runner: Runner, settings: Settings) -> RunningRelease:
    """The live slot and the sha of its app containers, from the containers alone (no health
    check): for looking into the live release, not for judging it."""
    slot = live_slot(runner, settings)
    rows = app_containers(containers(runner, settings), settings, slot)
    shas = {c["Revision"] for c in rows if c["Revision"]}
    return RunningRelease(shas.pop() if len(shas) == 1 else None, False, "not checked", slot,
                          containers=rows)


def read_running(runner: Runner, settings: Settings) -> RunningRelease:
    """The live release, healthy or not; raises when the host cannot tell (its engine did not
    answer): a rollback or a deploy must not mistake that for "nothing runs"."""
    slot = live_slot(runner, settings)
    probe = observe(runner, settings, slot)
    if probe.error:
        raise RemoteCommandError("reading what runs on the host", probe.error)
    return release_from(probe, settings, slot)


class StableState(NamedTuple):
    running: Set[str]        # the stable services that have a running container
    unchanged: bool          # all of them run, last brought up with `digest`: no pull, no `up`
    digest: Optional[str]    # of the tool's compose.yaml, the edge's config and the values
                             # they read (stable_digest)


def stable_state(runner: Runner, settings: Settings) -> StableState:
    """The stable services running now, and whether they run exactly what the tool would bring
    up (the digest recorded at their last `up` is the current one)."""
    digest = stable_digest(settings, stable_text(settings))
    running = set(runner.run(running_services(settings.project)).stdout.split())
    unchanged = bool(digest) and running >= stable_services(settings) and digest == runner.run(
        cmd("cat", stable_digest_path(settings)), check=False).stdout.strip()
    return StableState(running, unchanged, digest)


def restart_counts(runner: Runner, settings: Settings) -> Dict[str, int]:
    """container id -> restart count, taken before containers start (see health.assess)."""
    return {c["Id"]: c["RestartCount"] for c in containers(runner, settings)}


def wait_for_slot(runner: Runner, settings: Settings, sha: str, slot: str, reporter: Reporter,
                  restarts_before: Dict[str, int], timeout: Optional[float] = None,
                  via: Tuple[str, ...] = CANDIDATE, settle: Optional[float] = None,
                  interval: Optional[float] = None) -> Outcome:
    """Poll (every `interval`, default HEALTH_INTERVAL) until release `sha` in `slot` is healthy
    and stays so for the settle window, or fails. As a candidate it is asked through the edge's
    candidate port; once live, through the public port on the host and the public URL from here."""
    last_note = [0.0]

    def on_wait(waited: float, verdict: Verdict) -> None:
        if waited - last_note[0] >= 5:
            last_note[0] = waited
            reporter.note(f"still waiting ({waited:.0f}s): {verdict.reason}")

    return wait_until_healthy(
        lambda: observe(runner, settings, slot, via), expected(settings, sha, slot),
        timeout or settings.HEALTH_TIMEOUT,
        interval or settings.health_interval,
        settings.HEALTH_SETTLE if settle is None else settle, restarts_before, on_wait,
        clock=runner.clock, sleep=runner.sleep)


def watch_slot(runner: Runner, settings: Settings, sha: str, slot: str, went_live: float,
               restarts_before: Dict[str, int]) -> Outcome:
    """The watch window: `sha`, live in `slot`, observed every second (its slot, the public
    port, the public URL) until WATCH_SECONDS after it went live."""
    return watch_window(lambda: observe(runner, settings, slot, WATCHED),
                        expected(settings, sha, slot), settings.WATCH_SECONDS, went_live,
                        settings.health_interval, restarts_before, clock=runner.clock,
                        sleep=runner.sleep)
