"""Taking over a stack the tool did not start: the team's app, run by hand (the story's own
pipeline: `docker compose up` in STAGING_DIR, project `<project>`), with its data.

Before anything changes: the containers of the project that the tool's files did not create
are found; the database volume's PostgreSQL major version (its PG_VERSION) must be the one of
POSTGRES_IMAGE, else the deploy stops in one line; the team's own files where the tool writes
its (STAGING_DIR/.env, compose.yaml) are moved aside, never overwritten. Their PostgreSQL and
Redis become the tool's on the same volumes (compose replaces the containers: the data stays).
Their app containers keep serving until the new release is live and healthy, and are then
stopped, not removed; every one is listed.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence

from ..errors import DeployError
from ..transport.commands import cmd
from .commands import (
    BASE_FILE,
    CONFIG_FILES_LABEL,
    ENV_FILE,
    PROJECT_LABEL,
    made_by_tool,
    stable_digest_path,
)

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.commands import Command
    from ..transport.runner import Runner

SERVICE_LABEL = "com.docker.compose.service"
DATA_VOLUME = "postgres_data"          # the tool's compose.yaml names the database's volume so
# The volume (or the host folder) holding PostgreSQL's data in a container: what `docker inspect`
# gives for its data directory.
MOUNTS = ('{{range .Mounts}}{{if eq .Destination "/var/lib/postgresql/data"}}'
          '{{if .Name}}{{.Name}}{{else}}{{.Source}}{{end}}{{end}}{{end}}')
ASIDE = ".before-staging-deploy"       # a team's file the tool would write over, kept as <name>+this


@dataclass(frozen=True)
class Foreign:
    """A container of the project that the tool's files did not create."""
    id: str
    name: str
    service: str
    running: bool


def list_foreign() -> str:
    """The docker ps format that `foreign` reads: id, name, state, service, compose files."""
    return ("{{.ID}}\t{{.Names}}\t{{.State}}\t{{.Label \"%s\"}}\t{{.Label \"%s\"}}"
            % (SERVICE_LABEL, CONFIG_FILES_LABEL))


def foreign(output: str, settings: Settings) -> List[Foreign]:
    """The rows of `docker ps` (list_foreign) whose compose files are not the tool's."""
    found = []
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) == 5 and not made_by_tool(parts[4], settings):
            found.append(Foreign(parts[0], parts[1], parts[3], parts[2] == "running"))
    return found


def find(runner: Runner, settings: Settings) -> List[Foreign]:
    output = runner.run(cmd("docker", "ps", "-a", "--filter", f"label={PROJECT_LABEL}={settings.project}",
                            "--format", list_foreign()), "listing the project's containers").stdout
    return foreign(output, settings)


def volume_name(settings: Settings) -> str:
    return f"{settings.project}_{DATA_VOLUME}"


def versions(settings: Settings) -> Command:
    """The volume's PG_VERSION (empty if it holds no database yet), then the image's own
    `postgres --version`, from one throwaway container of POSTGRES_IMAGE with the volume
    mounted read-only (absent volume: nothing, exit 3)."""
    script = ('docker volume inspect "$1" >/dev/null 2>&1 || exit 3; '
              'exec docker run --rm --log-driver none -v "$1:/data:ro" --entrypoint sh "$2" '
              '-c \'cat /data/PG_VERSION 2>/dev/null; echo; postgres --version\'')
    return cmd("sh", "-c", script, "sh", volume_name(settings), settings.POSTGRES_IMAGE)


def major_versions(output: str) -> tuple:
    """(the data's major version or None, the image's or None) from `versions`' output."""
    lines = [line.strip() for line in output.splitlines()]
    data = lines[0] if lines and re.fullmatch(r"\d+(\.\d+)?", lines[0]) else None
    image = re.search(r"\(PostgreSQL\)\s+(\d+)", output)
    return (data.split(".")[0] if data else None), (image.group(1) if image else None)


def check_database(runner: Runner, settings: Settings, reporter: Reporter,
                   theirs: Sequence[Foreign] = ()) -> Optional[str]:
    """Refuse, before anything changes, a database run by hand whose data is not in the volume
    the tool's PostgreSQL would use, and a POSTGRES_IMAGE of another major version than the data
    in that volume. Returns what it found, for the summary (None: no volume yet)."""
    if settings.database_service not in settings.data_services:
        return None
    with reporter.step(f"check the database volume {volume_name(settings)} against POSTGRES_IMAGE"):
        for database in (f for f in theirs if f.service == settings.database_service):
            mounts = runner.run(cmd("docker", "inspect", "--format", MOUNTS, database.id),
                                check=False).stdout.split()
            if mounts and volume_name(settings) not in mounts:
                raise DeployError(f"the database that runs now ({database.name}) keeps its data "
                                  f"in {mounts[0]}, not in the volume {volume_name(settings)} the "
                                  "tool's PostgreSQL uses: its data would not follow. Copy it into "
                                  f"{volume_name(settings)} first (docs/ADOPTING.md). Nothing was "
                                  "changed")
        result = runner.run(versions(settings), check=False)
        if result.exited == 3:
            reporter.note("no database volume yet: a new, empty database")
            return None
        if not result.ok:
            raise DeployError(f"cannot read the PostgreSQL version of the volume "
                              f"{volume_name(settings)}: {result.tail(3)}")
        data, image = major_versions(result.stdout)
        if data and image and data != image:
            raise DeployError(f"the data volume {volume_name(settings)} holds PostgreSQL {data}; "
                              f"POSTGRES_IMAGE ({settings.POSTGRES_IMAGE.split('@')[0]}) is "
                              f"{image}: set POSTGRES_IMAGE to a PostgreSQL {data} image (or "
                              "upgrade the data first, with pg_upgrade). Nothing was changed")
        return f"PostgreSQL {data}" if data else None


def keep_their_files(runner: Runner, settings: Settings, reporter: Reporter) -> List[str]:
    """Before the tool's first stable services in this STAGING_DIR (no digest of them yet), a
    .env or compose.yaml already there is the team's (the stack run by hand): moved aside,
    never overwritten. The names kept."""
    kept = []
    for name in (ENV_FILE, BASE_FILE):
        path = posixpath.join(settings.STAGING_DIR, name)
        moved = runner.run(cmd("sh", "-c", '[ -e "$3" ] && exit 3; [ -e "$1" ] || exit 3; '
                               '[ -e "$1$2" ] && exit 4; mv -- "$1" "$1$2"', "sh", path, ASIDE,
                               stable_digest_path(settings)), check=False)
        if moved.ok:
            kept.append(f"{name} -> {name}{ASIDE}")
        elif moved.exited == 4:
            raise DeployError(f"{path} and {path}{ASIDE} both exist, and neither is the tool's: "
                              "move one of them elsewhere first")
    if kept:
        reporter.note(f"your own files in {settings.STAGING_DIR} kept: {', '.join(kept)}")
    return kept


def stop_their_app(runner: Runner, settings: Settings, found: List[Foreign],
                   reporter: Reporter) -> List[str]:
    """Once the new release is live and healthy: the app containers of the stack run by hand
    stop (stopped, not removed); its data services were replaced by the tool's on the same
    volumes. Lines for the summary."""
    data = set(settings.data_services)
    app = [f for f in found if f.service not in data and f.running]
    lines = []
    if app:
        with reporter.step(f"stop the app that ran before the tool ({', '.join(f.name for f in app)})"):
            runner.run(cmd("docker", "stop", "--time", "10", *[f.id for f in app]),
                       "stopping the app run by hand", check=False)
        lines.append(f"the app run by hand before: {', '.join(f.name for f in app)} stopped, "
                     "not removed (`docker rm` them once you no longer need them)")
    replaced = sorted({f.service for f in found if f.service in data})
    if replaced:
        lines.append(f"its {', '.join(replaced)} now run as the tool's, on the same volumes "
                     f"({volume_name(settings)} for the database): the data kept")
    return lines
