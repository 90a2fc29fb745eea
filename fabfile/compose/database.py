"""The database around a compose release: asking the new release whether it has migrations to
apply, the dump taken before them, and loading a dump back (`deploy.rollback --restore-db`)."""
from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Optional

from ..errors import CommandTimedOut, DeployError
from ..story import backup, disk
from ..story.undo import Journal
from ..transport.commands import Command, Result, cmd
from .commands import SLOTS, ComposeCommands, stop_one_off
from .slots import retire

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner


def migrations_pending(remote: Runner, settings: Settings, reporter: Reporter,
                       candidate: ComposeCommands) -> Optional[bool]:
    """Does the new release have migrations to apply? None when it cannot say (no
    migrate_check_command)."""
    if not settings.migrate_check_command:
        return None
    with reporter.step("ask the new release whether it has migrations to apply"):
        pending = not bounded(remote, settings, candidate.migrate_check(), "the migration check",
                              check=False).ok
    if not pending:
        reporter.note("no migration to apply: no dump, no migration run (`--restore-db` uses the "
                      "dump taken before the last release that changed the schema)")
    return pending


def run_migrations(remote: Runner, settings: Settings, reporter: Reporter, sha: str,
                   migrate: Command, journal: Journal) -> None:
    """The release's migrations (migrate_command), before it starts; none configured: the app
    applies its own as it starts (an entrypoint that migrates), after the dump like these."""
    if not settings.migrate_command:
        reporter.note("no migrate_command: the release applies its migrations itself, if any, as "
                      "it starts (the dump above was taken before)")
        return
    journal.keeps(f"the migrations of {sha[:12]} (forward-only; `inv deploy.rollback "
                  "--restore-db` loads the dump taken before them)")
    with reporter.step("run migrations"):
        bounded(remote, settings, migrate, "migrations")


def bounded(remote: Runner, settings: Settings, one_off: Command, what: str,
            check: bool = True) -> Result:
    """A migration one-off, stopped if it still runs after migrate_timeout."""
    try:
        return remote.run(one_off, what, check=check, timeout=settings.migrate_timeout)
    except CommandTimedOut:
        remote.run(stop_one_off(settings), check=False)
        raise DeployError(f"{what} still ran after {settings.migrate_timeout:.0f}s (migrate_timeout): "
                          "stopped. A command that serves after migrating never ends: run it with "
                          "migrate_entrypoint, or turn the step off (migrate_command: [])") from None


def backup_database(remote: Runner, settings: Settings, sha: str, reporter: Reporter,
                    pending: Optional[bool]) -> Optional[str]:
    """pg_dump into STAGING_DIR/backups before migrations, when the release has some to apply
    (without a migrate_check_command, before every release)."""
    if pending is False:
        return None
    why = "it has migrations to apply" if pending else "before every release: no migrate_check_command"
    path = backup.backup_path(settings, sha)
    with reporter.step(f"back up the database to {path} ({why})"):
        disk.check_dump(remote, settings)
        remote.run(cmd("install", "-d", "-m", "0700", "--", posixpath.dirname(path)))
        remote.run(backup.dump(ComposeCommands(settings), path), "pg_dump")
    return path


def restore_database(runner: Runner, settings: Settings, dump: str, reporter: Reporter) -> None:
    """Remove the app (no writes during the restore), then load the dump into the database."""
    with reporter.step(f"restore the database from {posixpath.basename(dump)}"):
        for slot in SLOTS:
            retire(runner, settings, slot)
        runner.run(backup.restore(ComposeCommands(settings), dump), "pg_restore")
