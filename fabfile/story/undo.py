"""Recovery as data: each step that changes the host says, before it runs, how to undo it; a
failure undoes the steps that ran, the last one first. A step whose effect stays (migrations
are forward-only) says that instead, and the failure report and the ledger list it.

Compensations look at the host before they act (is the old release still standing by?), so
they stay right after a reboot, and running one again does no harm: the recovery retries them
when the connection drops (deploy.ride_out), from the first one not yet done.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, List

if TYPE_CHECKING:
    from ..report import Reporter


@dataclass(frozen=True)
class Compensation:
    name: str                      # what it does, as its step line says it
    run: Callable[[], bool]        # returns whether it switched users to another release


@dataclass
class Journal:
    """The compensations of the steps that ran, and what stays if they are undone."""
    pending: List[Compensation] = field(default_factory=list)
    kept: List[str] = field(default_factory=list)
    undone: List[str] = field(default_factory=list)
    switched: bool = False

    def on_failure(self, compensation: Compensation) -> None:
        """Register the undo of the step about to run (a step may fail half done)."""
        self.pending.append(compensation)

    def keeps(self, what: str) -> None:
        """Register an effect of the step about to run that no failure undoes."""
        self.kept.append(what)

    def commit(self) -> None:
        """The steps so far succeeded for good (the release passed its watch window): a failure
        from here on undoes none of them."""
        self.pending.clear()

    def undo(self, reporter: Reporter) -> None:
        """Run the pending compensations, the last registered first. One that fails stays
        pending (and is raised), so a retry starts with it."""
        while self.pending:
            compensation = self.pending[-1]
            with reporter.step(f"undo: {compensation.name}"):
                self.switched = compensation.run() or self.switched
            self.pending.pop()
            self.undone.append(compensation.name)
