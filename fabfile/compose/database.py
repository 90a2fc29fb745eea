"""The database around a compose release: asking the new release whether it has migrations to
apply, the dump taken before them, and loading a dump back (`deploy.rollback --restore-db`)."""
from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Optional

from fabfile.story import backup, disk
from fabfile.transport.commands import cmd

from .commands import SLOTS, ComposeCommands
from .slots import retire

if TYPE_CHECKING:
    from fabfile.config.settings import Settings
    from fabfile.report import Reporter
    from fabfile.transport.runner import Runner


def migrations_pending(remote: Runner, settings: Settings, reporter: Reporter,
                       candidate: ComposeCommands) -> Optional[bool]:
    """Does the new release have migrations to apply? None when it cannot say (no
    migrate_check_command)."""
    if not settings.migrate_check_command:
        return None
    with reporter.step("ask the new release whether it has migrations to apply"):
        pending = not remote.run(candidate.migrate_check(), check=False).ok
    if not pending:
        reporter.note("no migration to apply: no dump, no migration run (`--restore-db` uses the "
                      "dump taken before the last release that changed the schema)")
    return pending


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
