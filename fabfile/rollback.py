"""Putting a retained release back: used by automatic rollback and by `inv deploy.rollback`.

A release is retained on the host as its files (`releases/<sha>/`: compose.yaml, app.yaml,
.env) and its images (tagged `release-<sha>`). Restoring needs neither the registry nor the
caller's app secrets: re-point `staging-<sha>` at the kept images, `docker compose up --pull
never` in a slot, check it there, and switch the edge to it (slots.py), like any release.
"""
from __future__ import annotations

import posixpath
import time
from typing import TYPE_CHECKING, Callable, List, Optional

from . import backup, images, notify
from .compose import (
    RELEASE_FILES,
    SLOTS,
    ComposeCommands,
    other_slot,
    release_dir,
    slot_project,
)
from .errors import DeployError
from .host import HostSession
from .interrupts import shielded
from .ledger import (
    Entry,
    ReleaseLedger,
    end_event,
    latest_backup,
    merge,
    record_success,
    rollback_choice,
    start_event,
    unfinished,
    who_runs_this,
)
from .lock import held
from .report import Summary
from .running import containers, read_running, restart_counts, stable_state
from .shell import chain, cmd
from .slots import (
    check_candidate,
    confirm_switch,
    retire,
    remove_slot,
    standing_by,
    start_in_slot,
    switch_back,
    switch_edge,
    watch_live,
)
from .undo import Compensation, Journal

if TYPE_CHECKING:
    from .config import Settings
    from .report import Reporter
    from .shell import Runner


def retained(runner: Runner, settings: Settings, sha: str) -> bool:
    """Are this release's images and files still on the host?"""
    refs = [f"{settings.image_repo(s.name)}:{images.release_tag(sha)}" for s in settings.services]
    files = [posixpath.join(release_dir(settings, sha), name) for name in RELEASE_FILES]
    checks = [images.exists_locally(ref) for ref in refs] + [cmd("test", "-f", f) for f in files]
    return runner.run(chain(*checks), check=False).ok


def restore_release(runner: Runner, settings: Settings, sha: str, reporter: Reporter,
                    timeout: Optional[float] = None, journal: Optional[Journal] = None) -> bool:
    """Make retained release `sha` the live one, healthy and watched; returns whether the edge
    had to switch. If it is live and healthy already, this only removes the other slot; if it
    still runs healthy in the other slot (standing by through a watch window), the edge switches
    back to it at once. With `journal`, each step registers its undo there (a rollback)."""
    journal = journal if journal is not None else Journal()
    running = read_running(runner, settings)
    if running.slot and running.sha == sha and running.healthy:
        with reporter.step(f"{sha[:12]} is live and healthy; retire slot {other_slot(running.slot)}"):
            retire(runner, settings, other_slot(running.slot))
        return False
    live = running.slot
    slot = slot_holding(containers(runner, settings), settings, sha, live) or other_slot(live)
    if slot != live and standing_by(runner, settings, sha, slot):
        reporter.note(f"{sha[:12]} still runs healthy in slot {slot}: switching back at once")
        before = restart_counts(runner, settings)
    else:
        with reporter.step(f"restore release {sha[:12]} in slot {slot} from the host (no pull)"):
            runner.run(chain(*(images.tag(f"{settings.image_repo(s.name)}:{images.release_tag(sha)}",
                                          settings.image_ref(s.name, sha))
                               for s in settings.services)),
                       f"images of {sha[:12]} are not on the host any more")
            if not stable_state(runner, settings).unchanged:
                runner.run(ComposeCommands(settings).up_stable(), "starting the stable services")
            if slot != live:
                journal.on_failure(remove_slot(runner, settings, slot))
            before = start_in_slot(runner, settings, sha, slot, pull_never=True)
        with reporter.step(f"wait until {sha[:12]} is healthy in slot {slot}"):
            check_candidate(runner, settings, sha, slot, reporter, before, timeout)
    went_live = runner.clock()
    stands_by = f" (slot {live} stands by)" if live and live != slot else ""
    if live != slot:
        if live and running.sha and running.healthy:
            journal.on_failure(switch_back(runner, settings, running.sha, live, reporter))
        with reporter.step(f"switch the edge to slot {slot}{stands_by}"):
            went_live = switch_edge(runner, settings, sha, slot, reporter, fallback=live)
    with reporter.step(f"watch {settings.WATCH_SECONDS:.0f}s after the switch{stands_by}"):
        watch_live(runner, settings, sha, slot, went_live, before)
    journal.commit()  # `sha` is live, healthy, watched: a failure from here on undoes nothing
    try:
        with reporter.step(f"retire slot {other_slot(slot)}"):
            confirm_switch(runner, settings, slot, other_slot(slot))
    except DeployError as exc:
        reporter.say(f"warning: could not retire slot {other_slot(slot)} (the next deploy "
                     f"retries): {exc}")
    return live != slot


def ensure_serving(runner: Runner, settings: Settings, sha: str, reporter: Reporter) -> Compensation:
    """The last undo of every deploy: retained release `sha` (what ran, or the last good one)
    must be what users get, healthy; restored (restore_release) if it is not."""
    def run() -> bool:
        running = read_running(runner, settings)
        if running.sha == sha and running.healthy:
            reporter.note(f"{sha[:12]} is live and healthy in slot {running.slot}")
            return False
        return restore_release(runner, settings, sha, reporter)
    return Compensation(f"make sure {sha[:12]} serves, healthy (restore it if not)", run)


def slot_holding(rows: List[dict], settings: Settings, sha: str,
                 live: Optional[str] = None) -> Optional[str]:
    """The slot whose app containers (in any state) are release `sha`, preferring the live one."""
    app = {s.name for s in settings.services}
    holding = {slot for slot in SLOTS for c in rows
               if c["Project"] == slot_project(settings, slot) and c["Service"] in app
               and c["Revision"] == sha}
    return live if live in holding else next(iter(sorted(holding)), None)


def close_abandoned(runner: Runner, settings: Settings, reporter: Reporter) -> List[Entry]:
    """Holding the lock proves every unfinished ledger entry's process is gone: record that."""
    ledger = ReleaseLedger(settings)
    entries = merge(runner.run(ledger.read(), check=False).stdout)
    for entry in unfinished(entries):
        reporter.note(f"found an unfinished {entry.action} of {entry.sha[:12]} by {entry.by} "
                      f"(started {entry.started}): its process is gone; recording it as abandoned")
        runner.run(ledger.append(end_event(
            entry.id, "abandoned", cause="the process ended before finishing (killed or lost); "
            f"noticed by {who_runs_this()}")))
    return merge(runner.run(ledger.read(), check=False).stdout) if unfinished(entries) else entries


def rollback_staging(settings: Settings, reporter: Reporter, to: Optional[str] = None,
                     restore_db: bool = False, yes: bool = False,
                     wait_lock: Optional[float] = None,
                     confirm: Callable[[str], str] = input) -> Summary:
    """`inv deploy.rollback`: restore the last good release before the current one (or --to)."""
    summary = Summary("rollback", to or "?", url=settings.STAGING_URL)
    try:
        with HostSession(settings, reporter) as host, \
                held(host, settings, "rollback", to or "previous", wait_lock, reporter):
            rollback_on_host(settings, host.runner, reporter, summary, to, restore_db, yes, confirm)
        summary.result = "succeeded"
        return summary
    except DeployError as exc:
        summary.result, summary.cause = "failed", str(exc).splitlines()[0]
        raise
    finally:
        summary.duration = reporter.elapsed()
        summary.publish(reporter)
        notify.send(settings.STAGING_WEBHOOK_URL, summary, reporter)


def rollback_on_host(settings: Settings, runner: Runner, reporter: Reporter, summary: Summary,
                     to: Optional[str], restore_db: bool, yes: bool,
                     confirm: Callable[[str], str]) -> None:
    ledger = ReleaseLedger(settings)
    entries = close_abandoned(runner, settings, reporter)
    running = read_running(runner, settings)
    reporter.note(f"running now: {running.sha[:12] if running.sha else 'nothing'} "
                  f"({'healthy' if running.healthy else running.reason})")
    target = to or rollback_choice(entries, running.sha)
    if not target:
        raise DeployError("no earlier good release is recorded to roll back to; name one with --to SHA")
    summary.sha = target
    if not retained(runner, settings, target):
        raise DeployError(f"release {target[:12]} is not retained on the host (pruned or never "
                          f"deployed here); `inv deploy.history` lists the releases")
    dump = latest_backup(entries) if restore_db else None
    if restore_db:
        if not dump:
            raise DeployError("no database dump is recorded (no release has applied a migration "
                              "since the first deploy); nothing to restore")
        if not yes and confirm(f"Restore the database from {dump}? Changes made since are "
                               "lost. Type 'yes': ").strip() != "yes":
            raise DeployError("database restore not confirmed; nothing was changed")
    start = start_event("rollback", target, running.sha, who_runs_this())
    runner.run(ledger.append(start))
    began, journal = time.monotonic(), Journal()
    try:
        with shielded(reporter.say):
            if dump:
                journal.keeps(f"the database as restored from {dump}")
                restore_database(runner, settings, dump, reporter)
            restore_release(runner, settings, target, reporter, journal=journal)
    except BaseException as exc:
        cause = str(exc).splitlines()[0]
        with shielded(reporter.say):
            reporter.say(f"rollback to {target[:12]} failed: {cause}")
            serves = undo_rollback(runner, settings, journal, running.sha, reporter)
            runner.run(ledger.append(end_event(
                start["id"], "failed", time.monotonic() - began, cause=cause,
                undone=journal.undone, kept=journal.kept)), check=False)
        if not isinstance(exc, DeployError):
            raise
        if serves:
            raise DeployError(f"ROLLBACK TO {target[:12]} FAILED: {cause}. {serves[:12]} serves "
                              "again, as before the rollback; `inv deploy.logs` shows why it "
                              "failed, `inv deploy.history` the other releases") from None
        raise DeployError(
            f"ROLLBACK TO {target[:12]} FAILED: {cause}. Staging may be down: run `inv "
            f"deploy.status` and `inv deploy.logs`, then `inv deploy.rollback --to <sha>` with "
            f"another release from `inv deploy.history`") from None
    record_success(runner, ledger, end_event(start["id"], "succeeded", time.monotonic() - began,
                                             restored_backup=dump), reporter, target[:12])
    summary.health = f"{target[:12]} is live and healthy"
    if dump:
        summary.notes.append(f"database restored from {dump}")


def undo_rollback(runner: Runner, settings: Settings, journal: Journal, was: Optional[str],
                  reporter: Reporter) -> Optional[str]:
    """Undo a failed rollback's steps; returns `was` (what ran before it) if users get it
    again, healthy, and None if that cannot be said."""
    try:
        journal.undo(reporter)
        now = read_running(runner, settings)
    except Exception as exc:  # whatever it is, the caller says staging may be down
        reporter.say(f"undoing the rollback failed: {str(exc).splitlines()[0]}")
        return None
    return was if was and now.sha == was and now.healthy else None


def restore_database(runner: Runner, settings: Settings, dump: str, reporter: Reporter) -> None:
    """Remove the app (no writes during the restore), then load the dump into the database."""
    with reporter.step(f"restore the database from {posixpath.basename(dump)}"):
        for slot in SLOTS:
            retire(runner, settings, slot)
        runner.run(backup.restore(ComposeCommands(settings), dump), "pg_restore")
