"""Where releases run: one module per kind of host, behind one small interface.

deploy.py and rollback.py tell the story both share (images, lock, ledger, refusing an older
sha, undoing a failure, the summary); a target says how a release is read, started, checked,
switched, restored and pruned (DEPLOY_TARGET, invoke.yaml `target`):

- compose/target.py  one server: Docker Compose, blue/green slots behind an nginx edge
- swarm/target.py    a Docker Swarm: a stable stack and an app stack, start-first updates
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Protocol

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter, Summary
    from ..transport.runner import Runner
    from .undo import Compensation, Journal


@dataclass
class RunningRelease:
    """The live release, as a target reads it from what runs (never from a tag)."""
    sha: Optional[str]                 # None: no app container is live
    healthy: bool
    reason: str
    slot: Optional[str] = None
    images: Dict[str, str] = field(default_factory=dict)      # service -> image id
    containers: List[dict] = field(default_factory=list)


@dataclass
class Published:
    """What the deploy pushed: each service's digest (None when the local engine does not know
    it), and what may start once the host holds the images. staging-latest's push waits for that:
    pushed while the host pulled the same repository, the testbed's registry (distribution, on
    its filesystem driver) once answered the pull with a 500."""
    digests: Dict[str, Optional[str]]
    pulled: Callable[[], None] = lambda: None
    sizes: Dict[str, int] = field(default_factory=dict)   # unpacked, as the local engine says


class Target(Protocol):
    settings: Settings

    def preflight(self, runner: Runner) -> None:
        """Refuse, in one line (DeployError), a host this target cannot deploy to, before
        anything on it changes."""

    def secure_edge(self, runner: Runner, reporter: Reporter) -> str:
        """HTTPS as STAGING_URL asks (certificate.py), before what runs is judged through it;
        a line for the summary ("" when there is nothing to say)."""

    def read_running(self, runner: Runner) -> RunningRelease:
        """The live release, from what runs (never a tag), and whether it is healthy now."""

    def keep(self, runner: Runner, running: RunningRelease) -> None:
        """Protect the running release from any prune (it is what a failure goes back to)."""

    def release(self, sha: str, runner: Runner, reporter: Reporter, summary: Summary,
                published: Published, running: RunningRelease, journal: Journal) -> None:
        """Make `sha` the live release, checked and watched; each step that changes what runs
        registers its undo in `journal` before it runs; `published.pulled()` once every host
        holds the images. Raises DeployError on failure."""

    def ensure_serving(self, runner: Runner, sha: str, reporter: Reporter) -> Compensation:
        """The last undo of every deploy: retained release `sha` serves, healthy."""

    def retained(self, runner: Runner, sha: str) -> bool:
        """Are this release's files and images still on the host?"""

    def restore(self, runner: Runner, sha: str, reporter: Reporter,
                journal: Optional[Journal] = None) -> bool:
        """Make retained release `sha` live again (no registry); returns whether users were
        switched. With `journal`, its steps register their undo (a rollback)."""

    def restore_database(self, runner: Runner, dump: str, reporter: Reporter) -> None:
        """`deploy.rollback --restore-db`: load `dump` with the app stopped."""

    def prune(self, runner: Runner, sha: str, previous: Optional[str], reporter: Reporter) -> None:
        """After success: remove what no retained release needs (a failure only warns)."""
