"""Local image commands: build from an exact commit, tag, push, look up digests.

Images are built from `git archive <sha>:<context>`, so what ships is the commit, never the
working tree. Each image is labelled with the project and the sha, which is what prune and
rollback later select on.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import tempfile
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional

from ..errors import DeployError, RemoteCommandError
from ..transport.commands import Command, cmd, pipe

if TYPE_CHECKING:
    from ..config.declared import Service
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner

PROJECT_LABEL = "deploy.project"
SHA_LABEL = "org.opencontainers.image.revision"
ROLLBACK_TAG = "rollback"   # on the host: the images that ran before the current deploy


def release_tag(sha: str) -> str:
    """On the host: a tag that keeps a release's images, whatever happens to staging-<sha>."""
    return f"release-{sha}"


def latest_ref(settings: Settings, service: str) -> str:
    return f"{settings.image_repo(service)}:staging-latest"


def build(settings: Settings, service: Service, sha: str) -> Command:
    """Build one service's image from the commit's tree and tag it staging-<sha> and staging-latest.

    Layers of the last pushed image (staging-latest, pulled first when possible) are reused, so a
    fresh CI runner does not rebuild what did not change; the inline cache metadata makes that
    work under BuildKit too. A service with build secrets is built with BuildKit, each secret
    read by the docker CLI from its environment (`env=NAME`): its value is in no argv."""
    tree = sha if service.context in ("", ".") else f"{sha}:{service.context}"
    buildkit = ("env", "DOCKER_BUILDKIT=1") if service.secrets else ()
    extra: List[str] = []
    for name, value in service.args:
        extra += ["--build-arg", f"{name}={value}"]
    if service.target:
        extra += ["--target", service.target]
    for name in service.secrets:
        extra += ["--secret", f"id={name},env={name}"]
    command = cmd(*buildkit, "docker", "build", "--quiet",
                  "--cache-from", latest_ref(settings, service.name),
                  "--build-arg", "BUILDKIT_INLINE_CACHE=1",
                  "--label", f"{PROJECT_LABEL}={settings.project}",
                  "--label", f"{SHA_LABEL}={sha}",
                  "--build-arg", f"GIT_SHA={sha}",
                  *extra,
                  "--platform", settings.BUILD_PLATFORM,
                  "-t", settings.image_ref(service.name, sha),
                  "-t", latest_ref(settings, service.name),
                  "-f", service.dockerfile, "-")
    secrets = tuple((name, settings.build_secrets.get(name, "")) for name in service.secrets)
    return pipe(cmd("git", "archive", "--format=tar", tree), replace(command, environment=secrets))


BUILD_LOCK = os.path.join(tempfile.gettempdir(), "staging-deploy-build.lock")


@contextlib.contextmanager
def one_build_at_a_time(lock_path: str = BUILD_LOCK) -> Iterator[None]:
    """Builds started from this machine take turns (pushes and all else still run side by
    side). Debian 12's engine (20.10) can die when two BuildKit builds export their inline cache
    at once ("concurrent map iteration and map write" in remotecache normalizeItem:
    moby/buildkit#2041 and #2296), taking every running build and deploy with it: it did so
    once in this suite's CI, three deploys building beside each other. A shared runner would
    lose every job on it the same way."""
    fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # releases the lock


# A registry's 5xx is often momentary (a restart, a proxy in front of it, a write racing the
# read in a self-hosted registry): a pull asks again after each of these pauses before it fails.
PULL_PAUSES = (1.0, 3.0)
MOMENTARY = re.compile(r"unexpected HTTP status: 5\d\d[^\n]*|TLS handshake timeout")


def pull_patiently(runner: Runner, command: Command, what: str, reporter: Reporter) -> None:
    """Run a pull; on a momentary registry error, again after each of PULL_PAUSES. Any other
    failure (unreachable, unauthorized, unknown tag) fails at once."""
    for pause in PULL_PAUSES + (None,):
        result = runner.run(command, what, check=False)
        if result.ok:
            return
        momentary = MOMENTARY.search(result.stdout + result.stderr)
        if pause is None or not momentary:
            raise RemoteCommandError(what, result.tail())
        reporter.note(f"the registry answered {momentary.group(0).strip()!r}; pulling again in "
                      f"{pause:.0f}s")
        runner.sleep(pause)


def push(ref: str) -> Command:
    return cmd("docker", "push", "--quiet", ref)


def pull(ref: str) -> Command:
    return cmd("docker", "pull", "--quiet", ref)


def tag(source: str, target: str) -> Command:
    return cmd("docker", "tag", source, target)


def exists_locally(ref: str) -> Command:
    return cmd("docker", "image", "inspect", "--format", "{{.Id}}", ref)


def exists_in_registry(ref: str, plain_http: bool = False) -> Command:
    """Exits 0 when the registry has this tag (uses the local docker login). `plain_http`
    (REGISTRY_PLAIN_HTTP, a registry without TLS such as a local test one) allows http."""
    return cmd("docker", "manifest", "inspect", *(("--insecure",) if plain_http else ()), ref)


def local_sizes(refs: Dict[str, str], runner: Runner) -> Dict[str, int]:
    """service -> its image's unpacked size in bytes, as the given engine knows it."""
    sizes = runner.run(cmd("docker", "image", "inspect", "--format", "{{.Size}}",
                           *refs.values()), check=False).stdout.split()
    return {name: int(size) for name, size in zip(refs, sizes) if size.isdigit()}


def platforms(*refs: str) -> Command:
    """One line `os/arch` per image, in order."""
    return cmd("docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", *refs)


def engine_platform() -> Command:
    """The engine's `os/arch`: what the images it runs must be built for."""
    return cmd("docker", "version", "--format", "{{.Server.Os}}/{{.Server.Arch}}")


def foreign(platform_lines: str, refs: Dict[str, str], wanted: str) -> Optional[str]:
    """One line naming the first image (of `refs`, service -> ref) whose platform, as
    `platforms` printed them, is not `wanted` (os/arch; a variant such as arm64/v8 is ignored)."""
    for (name, ref), found in zip(refs.items(), platform_lines.split()):
        if found != "/".join(wanted.split("/")[:2]):
            return f"{name} ({ref}) is built for {found}, not {wanted}"
    return None


def refuse_foreign(runner: Runner, refs: Dict[str, str], where: str) -> None:
    """Refuse, in one line, images the engine holds that were built for another platform than
    its own (they would never start): before anything runs them."""
    engine = runner.run(engine_platform(), "docker version").stdout.strip()
    found = runner.run(platforms(*refs.values()), check=False)
    other = foreign(found.stdout, refs, engine) if found.ok else None
    if other:
        raise DeployError(f"{other}, which {where} runs: set BUILD_PLATFORM={engine} "
                          "(invoke.yaml platform) and deploy again with --rebuild")


def repo_digests(*refs: str) -> Command:
    """One line of RepoDigests JSON per ref, in order."""
    return cmd("docker", "image", "inspect", "--format", "{{json .RepoDigests}}", *refs)


def login(registry: str, user: str, password: str) -> Command:
    """docker login with the password on stdin (never in argv, where `ps` would show it)."""
    return cmd("docker", "login", "--username", user, "--password-stdin", "--", registry,
               stdin=password)


def digest_from_inspect(output: str, repo: str) -> Optional[str]:
    """Pick `sha256:...` for `repo` out of `docker image inspect` RepoDigests JSON."""
    try:
        entries = json.loads(output.strip() or "[]")
    except json.JSONDecodeError:
        return None
    for entry in entries or []:
        name, _, digest = entry.partition("@")
        if name == repo and digest:
            return digest
    return None


def commit_exists(sha: str, run_git: Callable[[List[str]], int]) -> bool:
    """True when `sha` names a commit of this repository; run_git(argv) -> exit code."""
    return run_git(["git", "cat-file", "-e", f"{sha}^{{commit}}"]) == 0


def local_digests(settings: Settings, refs: Dict[str, str], runner: Runner) -> Dict[str, Optional[str]]:
    """service -> registry digest of its image, as the given engine knows it."""
    lines = runner.run(repo_digests(*refs.values())).stdout.splitlines()
    return {name: digest_from_inspect(line, settings.image_repo(name))
            for name, line in zip(refs, lines)}
