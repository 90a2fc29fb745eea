"""Blue/green on one host: a release starts in the idle slot beside the live one, is checked
through the edge's candidate port (no user sees it), and only then does the edge switch to it.
The other slot is retired after the switch; in-flight requests finish first (nginx reload, then
SIGQUIT/SIGTERM with each container's grace period).

Used by the deploy (new release) and by every restore (rollback, automatic or not): putting a
retained release back is the same dance with images already on the host.
"""
import posixpath

from .compose import (
    LIVE_FILE,
    ComposeCommands,
    all_containers,
    edge_dir,
    live_conf,
    ours,
    release_dir,
    remove_containers,
    slot_project,
    stop_containers,
)
from .errors import DeployError
from .health import HEALTHY
from .host import upload
from .running import restart_counts, wait_for_slot

# After the reload, the public URL must report the new release within this many seconds.
SWITCH_DEADLINE = 15


def start_in_slot(runner, settings, sha: str, slot: str, pull_never: bool = False) -> dict:
    """`compose up` release `sha` (its kept files) in `slot`; returns restart counts from before.
    A slot already running exactly this release is left as it is."""
    before = {} if runner.dry_run else restart_counts(runner, settings)
    compose = ComposeCommands(settings, release_dir(settings, sha), slot)
    runner.run(compose.up(pull_never), f"docker compose up of {sha[:12]} in slot {slot}")
    return before


def check_candidate(runner, settings, sha: str, slot: str, reporter, before: dict,
                    timeout: float = None, on_failure=None):
    """Wait until `sha` in `slot` is healthy through the candidate port; raise if it is not
    (after `on_failure(outcome)`, which may gather what the failure report needs)."""
    outcome = wait_for_slot(runner, settings, sha, slot, reporter, before, timeout)
    if outcome.verdict.state != HEALTHY:
        if on_failure:
            on_failure(outcome)
        raise DeployError(f"release {sha[:12]} is not healthy: {outcome.verdict.reason}")
    return outcome


def switch_edge(runner, settings, sha: str, slot: str, reporter):
    """Point the edge at `slot` and wait until users get `sha` from it."""
    before = {} if runner.dry_run else restart_counts(runner, settings)
    upload(runner, posixpath.join(edge_dir(settings), LIVE_FILE), live_conf(slot), 0o644)
    runner.run(ComposeCommands(settings).reload_edge(), "reloading the edge proxy")
    if runner.dry_run:
        return None
    outcome = wait_for_slot(runner, settings, sha, slot, reporter, before, SWITCH_DEADLINE,
                            candidate=False, settle=0)
    if outcome.verdict.state != HEALTHY:
        raise DeployError(f"after the switch to slot {slot}, {sha[:12]} is not what users get: "
                          f"{outcome.verdict.reason}")
    return outcome


def retire(runner, settings, slot: str) -> int:
    """Stop (draining) and remove the containers of `slot`; returns how many there were."""
    if runner.dry_run:
        runner.echo(f"[remote] docker stop + rm the containers of {slot_project(settings, slot)}")
        return 0
    ids = ours(runner.run(all_containers(), "listing containers").stdout,
               [slot_project(settings, slot)])
    if ids:
        runner.run(stop_containers(ids), f"stopping slot {slot}")
        runner.run(remove_containers(ids), f"removing slot {slot}")
    return len(ids)
