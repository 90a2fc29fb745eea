"""Putting a retained release back: used by automatic rollback and by `inv deploy.rollback`.

A release is retained on the host as its files (`releases/<sha>/compose.yaml` and `.env`) and
its images (tagged `release-<sha>`). Restoring needs neither the registry nor the caller's app
secrets: re-point `staging-<sha>` at the kept images, put its files back in place, and
`docker compose up --pull never`, then wait until it is healthy.
"""
import posixpath
import time

from . import backup, images, notify
from .compose import RELEASE_FILES, ComposeCommands, release_dir
from .errors import DeployError
from .health import HEALTHY
from .host import HostSession
from .interrupts import shielded
from .ledger import (
    ReleaseLedger,
    backup_taken_for,
    end_event,
    merge,
    rollback_choice,
    start_event,
    unfinished,
    who_runs_this,
)
from .lock import held
from .report import Summary
from .running import read_running, restart_counts, wait_for_release
from .shell import cmd


def retained(runner, settings, sha: str) -> bool:
    """Are this release's images and files still on the host?"""
    refs = [f"{settings.image_repo(s.name)}:{images.release_tag(sha)}" for s in settings.services]
    files = [posixpath.join(release_dir(settings, sha), name) for name in RELEASE_FILES]
    return (all(runner.run(images.exists_locally(ref), check=False).ok for ref in refs)
            and runner.run(cmd("test", "-f", files[0], "-a", "-f", files[1]), check=False).ok)


def restore_release(runner, settings, sha: str, reporter, timeout: float = None):
    """Bring release `sha` back from what the host kept; return the health Outcome."""
    top = ComposeCommands(settings)
    with reporter.step(f"restore release {sha[:12]} from the host (no pull)"):
        for service in settings.services:
            kept = f"{settings.image_repo(service.name)}:{images.release_tag(sha)}"
            runner.run(images.tag(kept, settings.image_ref(service.name, sha)),
                       f"images of {sha[:12]} are not on the host any more")
        for name in RELEASE_FILES:
            runner.run(cmd("cp", "-p", posixpath.join(release_dir(settings, sha), name),
                           posixpath.join(settings.STAGING_DIR, name)), f"restoring {name}")
        before = restart_counts(runner, settings)
        runner.run(top.up(pull_never=True), "docker compose up of the restored release")
    with reporter.step(f"wait until {sha[:12]} is healthy"):
        outcome = wait_for_release(runner, settings, sha, reporter, before, timeout)
        if outcome.verdict.state != HEALTHY:
            raise DeployError(f"restored release {sha[:12]} is not healthy: {outcome.verdict.reason}")
    return outcome


def close_abandoned(runner, settings, reporter):
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


def rollback_staging(settings, reporter, to=None, restore_db=False, yes=False,
                     wait_lock=None, confirm=input) -> Summary:
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


def rollback_on_host(settings, runner, reporter, summary, to, restore_db, yes, confirm) -> None:
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
    dump = backup_taken_for(entries, running.sha) if restore_db else None
    if restore_db:
        if not dump:
            raise DeployError(f"no database backup was taken before {str(running.sha)[:12]} "
                              "was deployed; nothing to restore")
        if not yes and confirm(f"Restore the database from {dump}? Changes made since are "
                               "lost. Type 'yes': ").strip() != "yes":
            raise DeployError("database restore not confirmed; nothing was changed")
    start = start_event("rollback", target, running.sha, who_runs_this())
    runner.run(ledger.append(start))
    began = time.monotonic()
    try:
        with shielded(reporter.say):
            if dump:
                restore_database(runner, settings, dump, reporter)
            outcome = restore_release(runner, settings, target, reporter)
    except BaseException as exc:
        runner.run(ledger.append(end_event(start["id"], "failed", time.monotonic() - began,
                                           cause=str(exc).splitlines()[0])), check=False)
        raise
    runner.run(ledger.append(end_event(start["id"], "succeeded", time.monotonic() - began,
                                       restored_backup=dump)))
    summary.health = outcome.verdict.reason
    if dump:
        summary.notes.append(f"database restored from {dump}")


def restore_database(runner, settings, dump: str, reporter) -> None:
    """Stop the app (no writes during the restore), then load the dump into the database."""
    app = [s.name for s in settings.services]
    top = ComposeCommands(settings)
    with reporter.step(f"restore the database from {posixpath.basename(dump)}"):
        runner.run(top.stop(*app), "stopping the app for the restore")
        runner.run(backup.restore(top, dump), "pg_restore")
