"""Scoped prune, after a successful deploy only: this project's images, containers and files.

Images are listed by the project label the build put on them, and of those only our own tags in
our own repositories are removed; kept are the running release, the rollback set and the last N
good releases. Only our compose projects' stopped containers are removed. Volumes, networks and
other projects are never touched, and no `docker ... prune` command is ever run.
"""
from __future__ import annotations

import json
import posixpath
import re
from typing import TYPE_CHECKING, Iterable, List, Optional, Set, Tuple

from ..transport.commands import Command, Result, cmd
from .images import PROJECT_LABEL, ROLLBACK_TAG, release_tag
from .ledger import Entry, ReleaseLedger, good_releases, latest_backup, read_entries

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..transport.runner import Runner

SHA_PREFIX = re.compile(r"^[0-9a-f]{40}($|-)")


def project_images(settings: Settings) -> Command:
    return cmd("docker", "image", "ls", "--no-trunc", "--filter",
               f"label={PROJECT_LABEL}={settings.project}", "--format", "{{json .}}")


def parse_images(output: str) -> List[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# The tags the tool itself puts on its images: `staging-<sha>` (the build) and `release-<sha>`
# (the host's copy). Only those, of our own repositories, are ever removed.
OUR_TAG = re.compile(r"(staging|release)-[0-9a-f]{40}")


def our_repos(settings: Settings) -> Set[str]:
    return {settings.image_repo(service.name) for service in settings.services}


def choose_images(rows: List[dict], keep_shas: Iterable[str], keep_ids: Iterable[str],
                  repos: Iterable[str]) -> List[str]:
    """Which references to remove: our own tags (OUR_TAG) in our own repositories, except those
    of kept shas and every tag of an image in use. The label only lists candidates: an image
    built FROM ours carries it too, and so does another tag of the same image; neither is ours
    to remove. An untagged image of the project (one of ours whose tag moved on) goes by id:
    nothing can name it any more, and `docker image rm` without --force leaves it to a
    container that still uses it."""
    keep_tags = {ROLLBACK_TAG}
    for sha in keep_shas:
        keep_tags |= {f"staging-{sha}", release_tag(sha)}
    keep_ids, repos = set(keep_ids), set(repos)
    remove = set()
    for row in rows:
        image_id, repo, tag = row.get("ID", ""), row.get("Repository", ""), str(row.get("Tag", ""))
        if image_id in keep_ids or tag in keep_tags:
            continue
        if tag == "<none>":
            remove.add(image_id)
        elif repo in repos and OUR_TAG.fullmatch(tag):
            remove.add(f"{repo}:{tag}")
    return sorted(remove)


def remove_images(refs: List[str]) -> Command:
    """Untag (and so delete, when no tag is left) exactly these; never --force."""
    return cmd("docker", "image", "rm", *refs)


def stopped(rows: List[dict]) -> List[str]:
    """Ids of our stopped containers (rows from running.containers: our projects only)."""
    return [c["Id"] for c in rows if c["State"] in ("exited", "created", "dead")]


def list_release_dirs(settings: Settings) -> Command:
    return cmd("ls", "-1", posixpath.join(settings.STAGING_DIR, "releases"))


def list_backups(settings: Settings) -> Command:
    return cmd("ls", "-1", posixpath.join(settings.STAGING_DIR, "backups"))


def file_reads(settings: Settings) -> List[Command]:
    """What `old_files` chooses from: the ledger, the release folders, the dumps."""
    return [ReleaseLedger(settings).read(), list_release_dirs(settings), list_backups(settings)]


def choose_files(names: List[str], keep_shas: Iterable[str], keep_names: Iterable[str] = ()) -> List[str]:
    """Release folders and backups (named <sha> / <sha>-<stamp>.dump) of releases not kept,
    except the names in `keep_names` (the dump `--restore-db` would use)."""
    keep, named = set(keep_shas), set(keep_names)
    return sorted(n for n in names if SHA_PREFIX.match(n) and n[:40] not in keep
                  and n not in named)


def remove_paths(paths: List[str]) -> Command:
    return cmd("rm", "-rf", "--", *paths)


def releases_to_keep(entries: List[Entry], settings: Settings, sha: str,
                     previous: Optional[str]) -> Set[str]:
    """The releases prune keeps: this one, the one before, the last KEEP_RELEASES good ones."""
    keep = {sha} | ({previous} if previous else set())
    return keep | set(good_releases(entries)[:settings.KEEP_RELEASES])


def kept_and_old_files(runner: Runner, settings: Settings, reads: List[Result], sha: str,
                       previous: Optional[str]) -> Tuple[Set[str], List[str]]:
    """From the results of `file_reads`: the releases kept (releases_to_keep), and the release
    folders and dumps of the others, except the newest dump (the one `--restore-db` uses). The
    ledger's tail is read in full when it holds too few of those (ledger.read_entries)."""
    entries = read_entries(runner, settings, lambda found: len(good_releases(
        found)) >= settings.KEEP_RELEASES and latest_backup(found) is not None, reads[0].stdout)
    keep = releases_to_keep(entries, settings, sha, previous)
    newest_dump = posixpath.basename(latest_backup(entries) or "")
    return keep, [posixpath.join(settings.STAGING_DIR, folder, name)
                  for folder, listing in (("releases", reads[1]), ("backups", reads[2]))
                  for name in choose_files(listing.stdout.split(), keep, {newest_dump})]
