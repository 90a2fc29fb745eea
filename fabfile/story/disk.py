"""Free disk space on the host, checked before a deploy changes anything there.

Before the pull, Docker's data root must hold the release's images the host does not have yet
(their unpacked size as the local engine measures it: layers the host already holds from the
release before make the real need smaller, so this errs on the safe side) plus DISK_MARGIN.
Before a dump, STAGING_DIR must hold the newest dump's size (the database has not shrunk much
since) plus the margin. A shortfall is refused in one line with the figures; a full disk never
half-breaks a deploy (a failed dump leaves nothing behind anyway: transport.commands.whole_file).
"""
from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Dict, List

from ..errors import DeployError
from ..transport.commands import Command, batch, cmd, pipe, split
from .images import exists_locally

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner

MB = 2 ** 20


def docker_root() -> Command:
    return cmd("docker", "info", "--format", "{{.DockerRootDir}}")


def free_space(path: str) -> Command:
    """`df` of the filesystem that holds `path`, in bytes."""
    return cmd("df", "-P", "-B1", "--", path)


def parse_free(output: str) -> int:
    """Bytes available, from `df -P -B1` of one path."""
    rows = [line.split() for line in output.strip().splitlines()[1:]]
    return int(rows[-1][3]) if rows and len(rows[-1]) > 3 and rows[-1][3].isdigit() else 0


def newest_dump(settings: Settings) -> Command:
    """The newest dump's size in bytes (empty when there is none)."""
    backups = posixpath.join(settings.STAGING_DIR, "backups")
    return pipe(pipe(cmd("find", backups, "-maxdepth", "1", "-name", "*.dump", "-printf",
                         "%T@ %s\\n"), cmd("sort", "-n")), cmd("tail", "-n", "1"))


def shortfall(where: str, free: int, need: int, margin: int, what: str) -> str:
    return (f"not enough disk space on the host: {where} has {free / MB:,.0f} MB free, but "
            f"{what} {need / MB:,.0f} MB and DISK_MARGIN keeps {margin / MB:,.0f} MB free; "
            "free some (`docker system df` shows what Docker holds) or lower DISK_MARGIN")


def check_images(runner: Runner, settings: Settings, refs: Dict[str, str],
                 sizes: Dict[str, int], reporter: Reporter) -> None:
    """Refuse before the pull when Docker's data root cannot take the images it lacks."""
    margin = settings.DISK_MARGIN * MB
    with reporter.step("check free disk space for the images"):
        present = batch(*(exists_locally(ref) for ref in refs.values()))
        have = split(present, runner.run(present, check=False))
        need = sum(sizes.get(name, 0) for (name, _), found in zip(refs.items(), have)
                   if not found.ok)
        root = runner.run(docker_root(), "docker info").stdout.strip() or "/var/lib/docker"
        free = parse_free(runner.run(free_space(root), "df").stdout)
        reporter.note(f"{root}: {free / MB:,.0f} MB free; the images need up to {need / MB:,.0f} "
                      f"MB, plus {margin / MB:,.0f} MB kept free")
    if free < need + margin:
        raise DeployError(shortfall(root, free, need, margin, "the release's images take up to"))


def check_dump(runner: Runner, settings: Settings) -> None:
    """Refuse before a dump when STAGING_DIR cannot take one the size of the newest."""
    margin = settings.DISK_MARGIN * MB
    last: List[str] = runner.run(newest_dump(settings), check=False).stdout.split()
    need = int(last[1]) if len(last) == 2 and last[1].isdigit() else 0
    free = parse_free(runner.run(free_space(settings.STAGING_DIR), "df").stdout)
    if free < need + margin:
        raise DeployError(shortfall(settings.STAGING_DIR, free, need, margin,
                                    "a dump the size of the last one takes"))
