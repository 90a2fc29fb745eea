"""`inv deploy.rollback`: put a retained release back (the one before the current, or --to).

A release is retained on the host as its files (`releases/<sha>/`) and its images (compose:
tagged `release-<sha>`; swarm: pinned by digest on the nodes). Restoring needs neither the
registry nor the caller's app secrets; how it is done is the target's (story/target.py). If the
restored release fails, the rollback's own steps are undone (undo.py): what ran before it serves
again.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, List, Optional

from ..errors import DeployError
from ..report import Summary
from ..targets import target_for
from ..transport.interrupts import shielded
from ..transport.session import HostSession
from . import notify
from .ledger import (
    Entry,
    ReleaseLedger,
    end_event,
    good_releases,
    latest_backup,
    read_entries,
    record_success,
    rollback_choice,
    start_event,
    unfinished,
    who_runs_this,
)
from .lock import held
from .target import Target
from .undo import Journal

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner


def close_abandoned(runner: Runner, settings: Settings, reporter: Reporter,
                    enough: Callable[[List[Entry]], bool]) -> List[Entry]:
    """Holding the lock proves every unfinished ledger entry's process is gone: record that.
    Returns the ledger's entries, as many as `enough` needs (ledger.read_entries)."""
    ledger = ReleaseLedger(settings)
    entries = read_entries(runner, settings, enough)
    for entry in unfinished(entries):
        reporter.note(f"found an unfinished {entry.action} of {entry.sha[:12]} by {entry.by} "
                      f"(started {entry.started}): its process is gone; recording it as abandoned")
        runner.run(ledger.append(end_event(
            entry.id, "abandoned", cause="the process ended before finishing (killed or lost); "
            f"noticed by {who_runs_this()}")))
    return read_entries(runner, settings, enough) if unfinished(entries) else entries


def rollback_staging(settings: Settings, reporter: Reporter, to: Optional[str] = None,
                     restore_db: bool = False, yes: bool = False,
                     wait_lock: Optional[float] = None,
                     confirm: Callable[[str], str] = input) -> Summary:
    """`inv deploy.rollback`: restore the last good release before the current one (or --to)."""
    summary = Summary("rollback", to or "?", url=settings.STAGING_URL)
    try:
        with HostSession(settings, reporter) as host, \
                held(host, settings, "rollback", to or "previous", wait_lock, reporter):
            rollback_on_host(target_for(settings), host.runner, reporter, summary, to, restore_db,
                             yes, confirm)
        summary.result = "succeeded"
        return summary
    except DeployError as exc:
        summary.result, summary.cause = "failed", str(exc).splitlines()[0]
        raise
    finally:
        summary.duration = reporter.elapsed()
        summary.publish(reporter)
        notify.send(settings.STAGING_WEBHOOK_URL, summary, reporter)


def rollback_on_host(target: Target, runner: Runner, reporter: Reporter, summary: Summary,
                     to: Optional[str], restore_db: bool, yes: bool,
                     confirm: Callable[[str], str]) -> None:
    settings = target.settings
    target.preflight(runner)
    ledger = ReleaseLedger(settings)
    entries = close_abandoned(runner, settings, reporter, lambda found: len(
        good_releases(found)) >= 2 and (latest_backup(found) is not None or not restore_db))
    running = target.read_running(runner)
    reporter.note(f"running now: {running.sha[:12] if running.sha else 'nothing'} "
                  f"({'healthy' if running.healthy else running.reason})")
    chosen = to or rollback_choice(entries, running.sha)
    if not chosen:
        raise DeployError("no earlier good release is recorded to roll back to; name one with --to SHA")
    summary.sha = chosen
    if not target.retained(runner, chosen):
        raise DeployError(f"release {chosen[:12]} is not retained on the host (pruned or never "
                          f"deployed here); `inv deploy.history` lists the releases")
    dump = latest_backup(entries) if restore_db else None
    if restore_db:
        if not dump:
            raise DeployError("no database dump is recorded (no release has applied a migration "
                              "since the first deploy); nothing to restore")
        if not yes and confirm(f"Restore the database from {dump}? Changes made since are "
                               "lost. Type 'yes': ").strip() != "yes":
            raise DeployError("database restore not confirmed; nothing was changed")
    start = start_event("rollback", chosen, running.sha, who_runs_this())
    runner.run(ledger.append(start))
    began, journal = time.monotonic(), Journal()
    try:
        with shielded(reporter.say):
            if dump:
                journal.keeps(f"the database as restored from {dump}")
                target.restore_database(runner, dump, reporter)
            target.restore(runner, chosen, reporter, journal)
    except BaseException as exc:
        cause = str(exc).splitlines()[0]
        with shielded(reporter.say):
            reporter.say(f"rollback to {chosen[:12]} failed: {cause}")
            serves = undo_rollback(runner, target, journal, running.sha, reporter)
            runner.run(ledger.append(end_event(
                start["id"], "failed", time.monotonic() - began, cause=cause,
                undone=journal.undone, kept=journal.kept)), check=False)
        if not isinstance(exc, DeployError):
            raise
        if serves:
            raise DeployError(f"ROLLBACK TO {chosen[:12]} FAILED: {cause}. {serves[:12]} serves "
                              "again, as before the rollback; `inv deploy.logs` shows why it "
                              "failed, `inv deploy.history` the other releases") from None
        raise DeployError(
            f"ROLLBACK TO {chosen[:12]} FAILED: {cause}. Staging may be down: run `inv "
            f"deploy.status` and `inv deploy.logs`, then `inv deploy.rollback --to <sha>` with "
            f"another release from `inv deploy.history`") from None
    record_success(runner, ledger, end_event(start["id"], "succeeded", time.monotonic() - began,
                                             restored_backup=dump), reporter, chosen[:12])
    summary.health = f"{chosen[:12]} is live and healthy"
    if dump:
        summary.notes.append(f"database restored from {dump}")


def undo_rollback(runner: Runner, target: Target, journal: Journal, was: Optional[str],
                  reporter: Reporter) -> Optional[str]:
    """Undo a failed rollback's steps; returns `was` (what ran before it) if users get it
    again, healthy, and None if that cannot be said."""
    try:
        journal.undo(reporter)
        now = target.read_running(runner)
    except Exception as exc:  # whatever it is, the caller says staging may be down
        reporter.say(f"undoing the rollback failed: {str(exc).splitlines()[0]}")
        return None
    return was if was and now.sha == was and now.healthy else None


