"""The deploy, top to bottom: publish images locally, then release them on the staging host.

`deploy_staging` reads as the story: log in, build or reuse, push; connect; upload compose
file and .env; pull; start data services; migrate; up; wait until healthy; summarise.
"""
import contextlib
import uuid

import requests

from . import images
from .compose import ComposeCommands, parse_http, parse_ps, strip_terminal_codes
from .errors import DeployError, RemoteCommandError
from .health import HEALTHY, Probe, wait_until_healthy
from .host import connect, upload_text
from .report import Reporter, Summary
from .shell import Runner


def deploy_staging(settings, sha: str, ctx, reporter: Reporter, rebuild=False,
                   dry_run=False) -> Summary:
    """Ship commit `sha` to staging. Raises DeployError (after printing the summary) on failure."""
    summary = Summary("deploy", sha, url=settings.STAGING_URL)
    local = Runner(ctx, "local", dry_run, reporter.say, timeout=settings.command_timeout)
    try:
        pushed = publish_images(settings, sha, local, reporter, rebuild)
        with host_session(settings, reporter, dry_run) as remote:
            release(settings, sha, remote, reporter, summary, pushed)
        summary.result = "succeeded"
        return summary
    except DeployError as exc:
        summary.result = "failed"
        summary.cause = str(exc).splitlines()[0]
        raise
    finally:
        summary.duration = reporter.elapsed()
        if not dry_run:
            summary.publish(reporter)


def publish_images(settings, sha, local: Runner, reporter: Reporter, rebuild: bool) -> dict:
    """Build each service from the commit, push staging-<sha> and staging-latest.

    Returns the pushed digest of each service (empty in dry-run)."""
    if settings.REGISTRY_USER:
        with reporter.step(f"log in to {settings.REGISTRY} (local)"):
            local.run(images.login(settings.REGISTRY, settings.REGISTRY_USER,
                                   settings.REGISTRY_PASSWORD), "docker login")
    refs = {s.name: settings.image_ref(s.name, sha) for s in settings.services}
    if not rebuild and not local.dry_run:
        with reporter.step("look for staging-%s in the registry" % sha[:12]):
            present = all(local.run(images.exists_in_registry(ref), check=False).ok
                          for ref in refs.values())
        if present:
            reporter.note("images already in the registry: skipping the build (--rebuild forces it)")
            for service in settings.services:
                with reporter.step(f"move staging-latest of {service.name}"):
                    local.run(images.pull(refs[service.name]), "docker pull")
                    latest = images.latest_ref(settings, service.name)
                    local.run(images.tag(refs[service.name], latest))
                    local.run(images.push(latest), "docker push")
            return local_digests(settings, refs, local)
    for service in settings.services:
        with reporter.step(f"build {service.name} from {sha[:12]}"):
            local.run(images.build(settings, service, sha), f"build of {service.name}")
        with reporter.step(f"push {service.name}"):
            local.run(images.push(refs[service.name]), f"push of {refs[service.name]}")
            local.run(images.push(images.latest_ref(settings, service.name)), "push of staging-latest")
    return local_digests(settings, refs, local)


def local_digests(settings, refs: dict, runner: Runner) -> dict:
    """service -> registry digest of its image, as the given engine knows it."""
    if runner.dry_run:
        return {}
    return {name: images.digest_from_inspect(runner.run(images.repo_digests(ref)).stdout,
                                             settings.image_repo(name))
            for name, ref in refs.items()}


@contextlib.contextmanager
def host_session(settings, reporter: Reporter, dry_run: bool):
    """One SSH connection for the whole deploy (none in dry-run), closed on every path."""
    if dry_run:
        yield Runner(None, "remote", True, reporter.say)
        return
    with reporter.step(f"connect to {settings.STAGING_USER}@{settings.STAGING_HOST}:"
                       f"{settings.STAGING_PORT} (pinned host key)"):
        conn = connect(settings)
    try:
        yield Runner(conn, "remote", False, reporter.say, timeout=settings.command_timeout)
    finally:
        conn.close()


def release(settings, sha, remote: Runner, reporter: Reporter, summary: Summary,
            pushed: dict) -> None:
    """On the host: upload, pull, start data services, migrate, switch, wait until healthy."""
    compose = ComposeCommands(settings)
    with reporter.step(f"upload compose file and .env to {settings.STAGING_DIR}"):
        remote.run(compose.prepare_dir(), "creating " + settings.STAGING_DIR)
        upload(remote, compose.compose_path, read_compose_file(settings))
        upload(remote, compose.env_path, render_env(settings.app_env(sha)))
    if settings.REGISTRY_PULL_USER:
        with reporter.step(f"log in to {settings.REGISTRY} on the host"):
            remote.run(compose.registry_login(), "docker login on the host")
    with reporter.step("pull images"):
        remote.run(compose.pull(), "docker compose pull (the running release is untouched)")
    refs = {s.name: settings.image_ref(s.name, sha) for s in settings.services}
    pulled = local_digests(settings, refs, remote)
    for name, ref in refs.items():
        summary.images[name] = f"{ref}@{pulled[name]}" if pulled.get(name) else ref
        if pushed.get(name) and pulled.get(name) != pushed[name]:
            raise DeployError(f"{ref} on the host is {pulled.get(name)}, but {pushed[name]} was "
                              "pushed: the tag changed in the registry meanwhile; deploy again")
    with reporter.step("start data services (unchanged ones keep running)"):
        remote.run(compose.start_data_services(), "starting data services")
    with reporter.step("run migrations"):
        remote.run(compose.migrate(), "migrations")
    with reporter.step("switch: docker compose up -d --remove-orphans"):
        remote.run(compose.up(), "docker compose up")
    if remote.dry_run:
        remote.echo(f"[remote] poll health until {settings.HEALTH_TIMEOUT:.0f}s: {compose.health_on_host()}")
        return
    with reporter.step(f"wait until healthy (deadline {settings.HEALTH_TIMEOUT:.0f}s)"):
        outcome = wait_for_health(settings, sha, remote, compose, reporter)
        if outcome.verdict.state != HEALTHY:
            summary.health = "unhealthy"
            logs = remote.run(compose.logs(settings.log_service), check=False).stdout
            summary.logs = strip_terminal_codes(logs).strip()
            last = outcome.probe.public_body or outcome.probe.host_body
            raise DeployError(f"release {sha[:12]} is not healthy: {outcome.verdict.reason}"
                              + (f"\nlast health body: {last[:500]}" if last else ""))
    summary.health = outcome.verdict.reason


def wait_for_health(settings, sha, remote: Runner, compose: ComposeCommands, reporter: Reporter):
    session = requests.Session()
    public_url = settings.STAGING_URL + settings.health_path
    last_reported = [0.0]

    def observe() -> Probe:
        probe = Probe()
        try:
            probe.containers = parse_ps(remote.run(compose.ps(), "docker compose ps").stdout)
            probe.host_status, probe.host_body = parse_http(
                remote.run(compose.health_on_host(), check=False).stdout)
        except RemoteCommandError as exc:
            probe.error = str(exc).splitlines()[0]
        try:
            response = session.get(public_url, timeout=3,
                                   headers={"X-Request-ID": "deploy-" + uuid.uuid4().hex[:12]})
            probe.public_status, probe.public_body = response.status_code, response.text
        except requests.RequestException as exc:
            probe.public_body = f"({type(exc).__name__})"
        return probe

    def on_wait(waited, verdict):
        if waited - last_reported[0] >= 5:
            last_reported[0] = waited
            reporter.note(f"still waiting ({waited:.0f}s): {verdict.reason}")

    services = [s.name for s in settings.services] + list(settings.data_services)
    return wait_until_healthy(observe, sha, services, settings.HEALTH_TIMEOUT,
                              settings.health_interval, on_wait)


def upload(remote: Runner, path: str, text: str) -> None:
    if remote.dry_run:
        remote.echo(f"[remote] sftp put {path} (mode 0600, {len(text)} bytes)")
        return
    upload_text(remote.target, path, text)


def read_compose_file(settings) -> str:
    with open(settings.compose_file, encoding="utf-8") as handle:
        return handle.read()


def render_env(env: dict) -> str:
    """A compose .env: values single-quoted so compose takes them literally (no interpolation)."""
    return "".join(f"{name}='{value}'\n" for name, value in sorted(env.items()))
