"""Infrastructure images by digest: PostgreSQL, Redis, the edge proxy and (Swarm target) the job
image that mounts the Docker socket on every node.

A tag such as `postgres:16-alpine` is resolved on the host the first time a deploy uses it and
recorded in STAGING_DIR/image-pins.json; that deploy and every one after it run the image by
that digest (`postgres:16-alpine@sha256:…`), so whoever moves the tag upstream changes nothing
on staging. A setting that already names a digest is used as it is. To take a newer build of
the same tag, put its digest in invoke.yaml (each pin is printed when it is made), or remove
its line from the file. The stable services restart once when their image changes this way.
"""
from __future__ import annotations

import json
import posixpath
from dataclasses import replace
from typing import TYPE_CHECKING, Dict, List

from ..errors import DeployError
from ..transport.commands import cmd
from . import images

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner

PINS_FILE = "image-pins.json"
DIGEST_MARK = "@sha256:"


def infra_images(settings: Settings) -> List[str]:
    """The settings naming an infrastructure image this target runs."""
    names = ["POSTGRES_IMAGE", "REDIS_IMAGE", "EDGE_IMAGE"]
    return names + (["DOCKER_CLI_IMAGE"] if settings.on_swarm else [])


def pins_path(settings: Settings) -> str:
    return posixpath.join(settings.STAGING_DIR, PINS_FILE)


def is_pinned(ref: str) -> bool:
    return DIGEST_MARK in ref


def repository(ref: str) -> str:
    """The repository of a tag reference, as `docker image inspect` names it in RepoDigests
    (`postgres` for docker.io/library/postgres:16-alpine)."""
    head, _, last = ref.rpartition("/")
    name = f"{head}/{last.split(':')[0]}" if head else last.split(":")[0]
    for prefix in ("docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name[len("library/"):] if name.startswith("library/") and name.count("/") == 1 else name


def read_pins(text: str) -> Dict[str, str]:
    """The recorded pins (tag reference -> the same reference with its digest); an entry that is
    not one is ignored (and resolved again)."""
    try:
        recorded = json.loads(text or "{}")
    except ValueError:
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {ref: pin for ref, pin in recorded.items() if isinstance(ref, str)
            and isinstance(pin, str) and pin.startswith(ref + DIGEST_MARK)}


def pin_images(runner: Runner, settings: Settings, reporter: Reporter) -> Settings:
    """`settings` with each infrastructure image by digest: recorded ones as recorded, the
    others pulled on the host, resolved and recorded now."""
    tags = tag_refs(settings)
    if not tags:
        return settings
    path = pins_path(settings)
    pins = read_pins(runner.run(cmd("cat", "--", path), check=False).stdout)
    missing = sorted(set(tags.values()) - set(pins))
    if missing:
        with reporter.step(f"pin {', '.join(missing)} to a digest (recorded in {path})"):
            for ref in missing:
                pins[ref] = resolve(runner, ref, reporter)
                reporter.note(f"{ref} runs as {pins[ref]} from now on")
            runner.run(cmd("install", "-d", "-m", "0700", "--", settings.STAGING_DIR),
                       "creating " + settings.STAGING_DIR)
            runner.put(path, json.dumps(pins, indent=1, sort_keys=True) + "\n", 0o644)
    return with_pins(settings, pins)


def tag_refs(settings: Settings) -> Dict[str, str]:
    """setting -> image reference, for each infrastructure image set by tag, not by digest."""
    return {name: str(settings.values[name]) for name in infra_images(settings)
            if settings.values.get(name) and not is_pinned(str(settings.values[name]))}


def with_pins(settings: Settings, pins: Dict[str, str]) -> Settings:
    """`settings` with each infrastructure image that `pins` knows by its digest."""
    return replace(settings, values={**settings.values, **{
        name: pins[ref] for name, ref in tag_refs(settings).items() if ref in pins}})


def resolve(runner: Runner, ref: str, reporter: Reporter) -> str:
    """Pull `ref` on the host and name it by the digest the registry gave it."""
    images.pull_patiently(runner, images.pull(ref), f"docker pull {ref}", reporter)
    found = images.digest_from_inspect(runner.run(images.repo_digests(ref),
                                                  "docker image inspect").stdout,
                                       repository(ref))
    if not found:
        raise DeployError(f"{ref} has no registry digest on the host (an image built there?): "
                          "push it to a registry, or set the image by digest (name@sha256:…)")
    return f"{ref}@{found}"
