"""Blue/green on one host: a release starts in the idle slot beside the live one, is checked
through the edge's candidate port (no user sees it), and only then does the edge switch to it.
For the watch window after the switch the previous slot keeps running and the edge hands it any
request the new one fails; a failure in the window switches back to it. Once the window passes,
the previous slot is retired; in-flight requests finish first (nginx reload, then
SIGQUIT/SIGTERM with each container's grace period).

Used by the deploy (new release) and by every restore (rollback, automatic or not): putting a
retained release back is the same dance with images already on the host.
"""
from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Callable, Dict, Optional

from ..errors import DeployError
from ..story.health import HEALTHY, Outcome, assess
from ..story.undo import Compensation
from ..transport.commands import chain, cmd
from .commands import (
    ComposeCommands,
    all_containers,
    edge_dir,
    ours,
    release_dir,
    remove_containers,
    slot_project,
    stop_containers,
)
from .edge import LIVE_FILE, ROUTES_FILE, live_conf, routes_conf, routes_file
from .running import CANDIDATE, LIVE, expected, observe, restart_counts, wait_for_slot, watch_slot

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner

# After the reload, the public URL must report the new release within this many seconds; it is
# asked this often (the old nginx workers may answer a moment after the reload returns).
SWITCH_DEADLINE = 15
SWITCH_INTERVAL = 0.2


def start_in_slot(runner: Runner, settings: Settings, sha: str, slot: str, pull_never: bool = False) -> dict:
    """`compose up` release `sha` (its kept files) in `slot`, then the slot's server in the edge
    takes the release's routes; returns restart counts from before. A slot already running
    exactly this release is left as it is."""
    before = restart_counts(runner, settings)
    routes = posixpath.join(edge_dir(settings), routes_file(slot))
    kept = posixpath.join(release_dir(settings, sha), ROUTES_FILE)
    if not runner.run(cmd("cp", "--", kept, routes), check=False).ok:
        # kept by a version before routes: the routes of today's settings
        runner.put(routes, routes_conf(settings.routes), 0o644)
    compose = ComposeCommands(settings, release_dir(settings, sha), slot)
    runner.run(chain(compose.up(pull_never), ComposeCommands(settings).reload_edge()),
               f"docker compose up of {sha[:12]} in slot {slot}")
    return before


def check_candidate(runner: Runner, settings: Settings, sha: str, slot: str, reporter: Reporter,
                    before: Dict[str, int], timeout: Optional[float] = None,
                    on_failure: Optional[Callable[[Outcome], None]] = None) -> Outcome:
    """Wait until `sha` in `slot` is healthy through the candidate port; raise if it is not
    (after `on_failure(outcome)`, which may gather what the failure report needs)."""
    outcome = wait_for_slot(runner, settings, sha, slot, reporter, before, timeout)
    if outcome.verdict.state != HEALTHY:
        if on_failure:
            on_failure(outcome)
        raise DeployError(f"release {sha[:12]} is not healthy: {outcome.verdict.reason}")
    return outcome


def standing_by(runner: Runner, settings: Settings, sha: str, slot: str) -> bool:
    """Is `sha` running and healthy in `slot` right now (one look, through the candidate port)?"""
    probe = observe(runner, settings, slot, CANDIDATE)
    restarts = {c["Id"]: c["RestartCount"] for c in probe.containers}  # earlier ones are history
    return assess(probe, expected(settings, sha, slot), restarts).state == HEALTHY


def switch_edge(runner: Runner, settings: Settings, sha: str, slot: str, reporter: Reporter,
                fallback: Optional[str] = None, seen: Optional[Outcome] = None) -> float:
    """Point the edge at `slot` and wait until users get `sha` from it; returns when it went
    live (runner.clock()). With `fallback` (the slot it replaces, still running), the edge
    hands that slot any request the new one fails, until `confirm_switch`. `seen`: the check
    that just passed, whose restart counts count as before (saves reading them again)."""
    before = ({c["Id"]: c["RestartCount"] for c in seen.probe.containers} if seen
              else restart_counts(runner, settings))
    point_edge(runner, settings, slot, fallback)
    went_live = runner.clock()
    outcome = wait_for_slot(runner, settings, sha, slot, reporter, before, SWITCH_DEADLINE,
                            via=LIVE, settle=0, interval=SWITCH_INTERVAL)
    if outcome.verdict.state != HEALTHY:
        raise DeployError(f"after the switch to slot {slot}, {sha[:12]} is not what users get: "
                          f"{outcome.verdict.reason}")
    return went_live


def point_edge(runner: Runner, settings: Settings, slot: str, fallback: Optional[str] = None) -> None:
    """Write edge/live.conf and reload the edge (graceful: in-flight requests finish)."""
    runner.put(posixpath.join(edge_dir(settings), LIVE_FILE), live_conf(slot, fallback), 0o644)
    reload_edge(runner, settings)


def reload_edge(runner: Runner, settings: Settings) -> None:
    """The edge re-reads its config (nginx -t first; graceful: in-flight requests finish)."""
    runner.run(ComposeCommands(settings).reload_edge(), "reloading the edge proxy")


def watch_live(runner: Runner, settings: Settings, sha: str, slot: str, went_live: float,
               restarts_before: Dict[str, int],
               on_failure: Optional[Callable[[Outcome], None]] = None) -> Outcome:
    """The watch window: `sha`, live in `slot`, must stay healthy until WATCH_SECONDS after it
    went live. Raises (after `on_failure(outcome)`) on the first crash or lasting failure."""
    outcome = watch_slot(runner, settings, sha, slot, went_live, restarts_before)
    if outcome.verdict.state != HEALTHY:
        if on_failure:
            on_failure(outcome)
        raise DeployError(f"release {sha[:12]} failed in its watch window: {outcome.verdict.reason}")
    return outcome


def confirm_switch(runner: Runner, settings: Settings, slot: str, retired: Optional[str] = None) -> None:
    """After a clean window: the edge stops handing failures to the previous slot, which is
    then retired."""
    point_edge(runner, settings, slot)
    if retired:
        retire(runner, settings, retired)


def retire(runner: Runner, settings: Settings, slot: str) -> int:
    """Stop (draining) and remove the containers of `slot`; returns how many there were."""
    ids = ours(runner.run(all_containers(), "listing containers").stdout,
               [slot_project(settings, slot)])
    if ids:
        runner.run(chain(stop_containers(ids), remove_containers(ids)),
                   f"stopping and removing slot {slot}")
    return len(ids)


def remove_slot(runner: Runner, settings: Settings, slot: str) -> Compensation:
    """Undoes starting a release in `slot`: its containers go (users never had it)."""
    def run() -> bool:
        retire(runner, settings, slot)
        return False
    return Compensation(f"remove slot {slot}", run)


def switch_back(runner: Runner, settings: Settings, sha: str, slot: str,
                reporter: Reporter) -> Compensation:
    """Undoes a switch away from `sha` in `slot`: the edge goes back to it if it still runs
    healthy there (it stood by); if it does not, there is nothing better to switch to."""
    def run() -> bool:
        if not standing_by(runner, settings, sha, slot):
            reporter.note(f"{sha[:12]} no longer runs healthy in slot {slot}: cannot switch back")
            return False
        reporter.note(f"{sha[:12]} still runs healthy in slot {slot}: switching back at once")
        switch_edge(runner, settings, sha, slot, reporter)
        return True
    return Compensation(f"switch the edge back to {sha[:12]} in slot {slot}", run)
