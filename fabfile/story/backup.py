"""Database backups: a pg_dump before every release's migrations, kept with the release.

Both commands run inside the postgres container with its own environment (POSTGRES_USER,
POSTGRES_DB; local connections need no password), so no credential is on any command line.
"""
from __future__ import annotations

import datetime
import posixpath
from typing import TYPE_CHECKING

from ..compose.commands import ComposeCommands
from ..transport.commands import Command, from_file, to_file

if TYPE_CHECKING:
    from ..config.settings import Settings

# The dump yields to the live release: lowest CPU priority, and the lowest best-effort I/O
# priority where the image has ionice (the command substitution is empty where it has not).
DUMP = ('$(command -v ionice >/dev/null && echo ionice -c 2 -n 7) nice -n 19 '
        'pg_dump --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" --format=custom')
RESTORE = ('pg_restore --username="$POSTGRES_USER" --dbname="$POSTGRES_DB" --clean --if-exists '
           '--single-transaction --no-owner')


def backup_path(settings: Settings, sha: str) -> str:
    """Named for the release whose migrations follow it, so rollback of that release finds it."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return posixpath.join(settings.STAGING_DIR, "backups", f"{sha}-{stamp}.dump")


def dump(compose: ComposeCommands, path: str) -> Command:
    return to_file(compose.exec_in(compose.settings.database_service, DUMP), path)


def restore(compose: ComposeCommands, path: str) -> Command:
    return from_file(compose.exec_in(compose.settings.database_service, RESTORE), path)
