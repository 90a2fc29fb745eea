"""The deploy, top to bottom.

Locally: build or reuse the images of the commit and push them. On the host, under the deploy
lock: close abandoned ledger entries, record what runs now (and keep it for rollback), refuse
an older sha, then let the target release it (compose/target.py: stage, pull, back up,
migrate, start in the idle slot, check, switch the edge, watch with the old slot standing by,
retire it; swarm/target.py: the same as a start-first Swarm update). Once the host holds the
images, staging-latest moves, locally, beside the host's work. Any failure after the lock (an
error, a health deadline, a crash before or after the switch, a lost connection, Ctrl-C or
SIGTERM) undoes the steps that ran (undo.py): the recorded release is the live one again, usually
because it never stopped serving. After success only: prune.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, NoReturn, Optional, Tuple, TypeVar

import paramiko

from ..compose.commands import engine_version
from ..errors import DeployError
from ..report import Reporter, Summary
from ..targets import target_for
from ..transport.commands import chain, cmd
from ..transport.interrupts import Interrupted, interruptible, shielded
from ..transport.machines import LocalTransport, Recorder
from ..transport.runner import Runner
from ..transport.session import HostSession, Session
from . import ci_gate, images, notify, plan
from .images import local_digests
from .ledger import Entry, ReleaseLedger, end_event, good_releases, record_success, start_event, who_runs_this
from .lock import DeployLock, held
from .pins import pin_images
from .rollback import close_abandoned
from .target import Published, RunningRelease, Target
from .undo import Journal

if TYPE_CHECKING:
    from ..config.settings import Settings

CONNECTION_ERRORS = (paramiko.SSHException, OSError, EOFError)
# After a failure, how long the recovery rides out a host that does not answer (a network drop,
# a reboot: sshd and then the Docker engine come back) before it gives up.
RECOVERY_WITHIN = 180
# How long the end of a deploy waits for the staging-latest push that runs beside it.
LATEST_WITHIN = 120
T = TypeVar("T")


def deploy_staging(settings: Settings, sha: str, reporter: Reporter, rebuild: bool = False,
                   dry_run: bool = False, force: bool = False, wait_lock: Optional[float] = None,
                   require_ci: bool = False) -> Summary:
    """Ship commit `sha` to staging. Raises DeployError (after printing the summary) on failure.

    With `dry_run`, the same code runs against a simulated host and prints the plan (plan.py)."""
    if dry_run:
        return print_plan(settings, sha, reporter, rebuild, force, wait_lock, require_ci)
    summary = Summary("deploy", sha, url=settings.STAGING_URL)
    local = Runner(LocalTransport(), "local", reporter.say, timeout=settings.command_timeout)
    try:
        with interruptible():
            if require_ci:
                ci_gate.enforce(settings, sha, reporter)
            deploy(settings, sha, reporter, local, lambda: HostSession(settings, reporter),
                   summary, rebuild, force, wait_lock)
        summary.result = "succeeded"
        return summary
    except Interrupted as exc:
        summary.result, summary.cause = "failed", f"{exc} before the host was changed"
        raise DeployError(summary.cause) from None
    except CONNECTION_ERRORS as exc:
        summary.result, summary.cause = "failed", failure_text(exc) + " before the host was changed"
        raise DeployError(summary.cause) from None
    except DeployError as exc:
        summary.result = "failed"
        summary.cause = summary.cause or str(exc).splitlines()[0]
        raise
    finally:
        summary.duration = reporter.elapsed()
        summary.publish(reporter)
        notify.send(settings.STAGING_WEBHOOK_URL, summary, reporter)


def print_plan(settings: Settings, sha: str, reporter: Reporter, rebuild: bool, force: bool,
               wait_lock: Optional[float], require_ci: bool) -> Summary:
    """--dry-run: the deploy's every action, in order, without running any (see plan.py)."""
    steps, script = plan.PlanReporter(plan.Plan(), settings.secrets), plan.SimulatedHost(settings)
    if require_ci:
        steps.plan.step(f"ask the GitHub API whether CI passed for {sha[:12]} on main (not "
                        "asked in a dry run)")
    local = Runner(Recorder(steps.plan, "local", script), "local", reporter.say)
    summary = Summary("deploy", sha, url=settings.STAGING_URL)
    deploy(settings, sha, steps, local,
           lambda: plan.PlannedSession(settings, steps, steps.plan, script), summary, rebuild,
           force, wait_lock)
    reporter.say(f"plan (nothing was run; it assumes {plan.PLACEHOLDER} live and healthy in slot "
                 f"{plan.PLAN_LIVE_SLOT}; lines marked `{plan.DEPENDS.strip()}` take their "
                 "arguments from what the host answers; how many looks a poll takes depends on "
                 "it too):")
    reporter.say(plan.render(steps.plan))
    return summary


def deploy(settings: Settings, sha: str, reporter: Reporter, local: Runner,
           session: Callable[[], Session], summary: Summary, rebuild: bool, force: bool,
           wait_lock: Optional[float]) -> None:
    """Publish the images, then, on the host (`session()`) under the lock, release; recover on
    any failure after the lock. Fills `summary`."""
    latest = LatestMove(settings, sha, local)
    published = Published(publish_images(settings, sha, local, reporter, rebuild), latest.start,
                          images.local_sizes(settings.image_refs(sha), local))
    try:
        release_on_host(settings, sha, reporter, local, session, summary, force, wait_lock,
                        published)
    finally:
        latest.finish(reporter)


def release_on_host(settings: Settings, sha: str, reporter: Reporter, local: Runner,
                    session: Callable[[], Session], summary: Summary, force: bool,
                    wait_lock: Optional[float], published: Published) -> None:
    """Under the deploy lock: record what runs, refuse an older sha, pin the infrastructure
    images (pins.py), release (staging-latest moves once the host pulled), recover on any
    failure; after success, record it and prune."""
    target = target_for(settings)
    with session() as host, held(host, settings, "deploy", sha, wait_lock, reporter) as lock:
        target.preflight(host.runner)
        ledger = ReleaseLedger(settings)
        entries = close_abandoned(host.runner, settings, reporter,
                                  lambda found: bool(good_releases(found)))
        https = target.secure_edge(host.runner, reporter)
        if https:
            summary.notes.append(https)
        previous, running = record_running(host.runner, target, entries, reporter)
        refuse_older(sha, previous, force, local, reporter)
        if settings.REGISTRY_PULL_USER:
            with reporter.step(f"log in to {settings.REGISTRY} on the host"):
                host.runner.run(images.login(settings.REGISTRY, settings.REGISTRY_PULL_USER,
                                             settings.REGISTRY_PULL_PASSWORD or ""),
                                "docker login on the host")
        target = target_for(pin_images(host.runner, settings, reporter))
        attempt = Attempt(settings, sha, previous, start_event("deploy", sha, previous,
                                                               who_runs_this()))
        host.runner.run(ledger.append(attempt.entry))
        if previous:
            attempt.journal.on_failure(target.ensure_serving(host.runner, previous, reporter))
        try:
            target.release(sha, host.runner, reporter, summary, published, running,
                           attempt.journal)
        except BaseException as failure:
            recover(failure, attempt, host, lock, reporter, summary)
        with shielded(reporter.say):  # the release is live: record it, whatever comes
            record_success(host.runner, ledger, end_event(
                attempt.entry["id"], "succeeded", attempt.elapsed(), images=summary.images,
                backup=summary.backup), reporter, sha[:12])
            target.prune(host.runner, sha, previous, reporter)


@dataclass
class Attempt:
    """One deploy on the host, as the ledger records it, and how to undo what it did so far."""
    settings: Settings
    sha: str
    previous: Optional[str]          # the release a failure goes back to
    entry: dict                      # the ledger's start event
    began: float = field(default_factory=time.monotonic)
    journal: Journal = field(default_factory=Journal)

    def elapsed(self) -> float:
        return time.monotonic() - self.began


def publish_images(settings: Settings, sha: str, local: Runner, reporter: Reporter,
                   rebuild: bool) -> Dict[str, Optional[str]]:
    """Build each service from the commit and push staging-<sha> (staging-latest follows, in
    LatestMove). Returns the pushed digest of each service, as the local engine knows it."""
    if settings.REGISTRY_USER:
        with reporter.step(f"log in to {settings.REGISTRY} (local)"):
            local.run(images.login(settings.REGISTRY, settings.REGISTRY_USER,
                                   settings.REGISTRY_PASSWORD or ""), "docker login")
    refs = settings.image_refs(sha)
    if not rebuild:
        with reporter.step("look for staging-%s in the registry" % sha[:12]):
            present = all(local.run(images.exists_in_registry(ref, settings.REGISTRY_PLAIN_HTTP),
                                    check=False).ok
                          for ref in refs.values())
        if present:
            reporter.note("images already in the registry: skipping the build (--rebuild forces it)")
            with reporter.step("pull them here (their digests are what the host must run)"):
                for ref in refs.values():
                    local.run(images.pull(ref), "docker pull")
            other = images.foreign(local.run(images.platforms(*refs.values()), "docker image "
                                             "inspect").stdout, refs, settings.BUILD_PLATFORM)
            if other is None:
                return local_digests(settings, refs, local)
            reporter.note(f"{other} (BUILD_PLATFORM): building it again for {settings.BUILD_PLATFORM}")
    for service in settings.services:
        with reporter.step(f"build {service.name} from {sha[:12]}"):
            # the previous image, as a layer cache (absent on a first build: that is fine)
            local.run(images.pull(images.latest_ref(settings, service.name)), check=False)
            with images.one_build_at_a_time():
                local.run(images.build(settings, service, sha), f"build of {service.name}")
        with reporter.step(f"push {service.name}"):
            local.run(images.push(refs[service.name]), f"push of {refs[service.name]}")
    return local_digests(settings, refs, local)


class LatestMove:
    """Point each service's staging-latest (the next build's layer cache) at this commit's image.
    Nothing on the host needs it, so it runs beside the host's work once the host pulled (targets'
    `published.pulled()`), in a thread (in a dry run, in line: the plan stays in order);
    `finish` waits for it, if it started, and warns if it failed."""

    def __init__(self, settings: Settings, sha: str, local: Runner):
        self.local = local
        self.moves = []
        for service in settings.services:
            latest = images.latest_ref(settings, service.name)
            self.moves.append(chain(images.tag(settings.image_ref(service.name, sha), latest),
                                    images.push(latest)))
        self.failure: Optional[str] = None
        self.thread: Optional[threading.Thread] = None

    def start(self) -> None:
        if self.local.dry_run:
            self.move()
        else:
            self.thread = threading.Thread(target=self.move, name="staging-latest", daemon=True)
            self.thread.start()

    def move(self) -> None:
        try:
            for command in self.moves:
                self.local.run(command, "moving staging-latest")
        except DeployError as exc:
            self.failure = str(exc).splitlines()[-1]

    def finish(self, reporter: Reporter) -> None:
        if self.thread:
            self.thread.join(LATEST_WITHIN)
            if self.thread.is_alive():
                self.failure = f"still pushing after {LATEST_WITHIN}s"
        if self.failure:
            reporter.say(f"warning: staging-latest was not moved ({self.failure}); only the next "
                         "build's layer cache misses it")


def record_running(runner: Runner, target: Target, entries: List[Entry],
                   reporter: Reporter) -> Tuple[Optional[str], RunningRelease]:
    """The release to come back to (what runs now if healthy, else the last good one kept), and
    what runs now. The target keeps it from any prune (compose: its images tagged `rollback`
    and `release-<sha>`; its files are in releases/<sha>/ since its own deploy)."""
    with reporter.step("record the running release (from what runs)"):
        running = target.read_running(runner)
        if running.sha and running.healthy:
            target.keep(runner, running)
            reporter.note(f"running: {running.sha[:12]}, healthy; kept for rollback")
            return running.sha, running
        fallback = next(iter(good_releases(entries)), None)
        reporter.note(f"running: {running.sha[:12] if running.sha else 'nothing'} "
                      f"({running.reason}); rollback target: "
                      f"{fallback[:12] if fallback else 'none (first deploy)'}")
        return fallback, running


def refuse_older(sha: str, previous: Optional[str], force: bool, local: Runner,
                 reporter: Reporter) -> None:
    """CI runs can arrive out of order: never go back to an ancestor of what runs, unless forced."""
    if not previous or previous == sha:
        return
    answer = local.run(cmd("git", "merge-base", "--is-ancestor", sha, previous), check=False)
    if answer.exited == 0 and not force:
        raise DeployError(f"{sha[:12]} is older than the running {previous[:12]} (an ancestor "
                          "of it): refusing to go back. Use --force to deploy it anyway, or "
                          "`inv deploy.rollback --to` it")
    if answer.exited not in (0, 1):
        reporter.note(f"cannot tell whether {sha[:12]} is older than {previous[:12]} "
                      "(commit not in this clone); deploying")


def recover(failure: BaseException, attempt: Attempt, host: Session, lock: DeployLock,
            reporter: Reporter, summary: Summary) -> NoReturn:
    """After any failure past the lock: undo the steps that ran, the last first (undo.py),
    riding out a reboot; record the result in the ledger and raise the cause."""
    cause, sha, previous = failure_text(failure), attempt.sha, attempt.previous
    journal, ledger = attempt.journal, ReleaseLedger(attempt.settings)
    with shielded(reporter.say):
        reporter.say(f"deploy of {sha[:12]} failed: {cause}")
        try:
            ride_out(host, lock, reporter, lambda: journal.undo(reporter))
        except Exception as undo_failure:  # whatever broke the undo, say so loudly
            summary.cause = (f"{cause}. ROLLBACK TO {str(previous)[:12]} FAILED: "
                             f"{str(undo_failure).splitlines()[0]}. Staging may be down: run "
                             f"`inv deploy.status`, then `inv deploy.rollback --to {previous}`")
            if host.alive:
                host.runner.run(ledger.append(end_event(
                    attempt.entry["id"], "rollback_failed", attempt.elapsed(), cause=cause,
                    rolled_back_to=previous, undone=journal.undone, kept=journal.kept)),
                    check=False)
            raise DeployError(summary.cause) from None
        if previous is None:
            result = "failed"
            summary.cause = (f"{cause}. This was the first deploy: nothing to roll back to; "
                             "the failed release is removed")
        else:
            result = "rolled_back"
            summary.cause = (f"{cause}; rolled back to {previous[:12]}" if journal.switched else
                             f"{cause}; {previous[:12]} kept serving (the failed release never "
                             "took traffic and is removed)")
            summary.health = f"previous release {previous[:12]} is healthy"
        summary.notes += [f"not undone: {what}" for what in journal.kept]
        host.runner.run(ledger.append(end_event(
            attempt.entry["id"], result, attempt.elapsed(), cause=cause, images=summary.images,
            rolled_back_to=previous if result == "rolled_back" else None, backup=summary.backup,
            undone=journal.undone, kept=journal.kept)))
        raise DeployError(summary.cause) from None


def ride_out(host: Session, lock: DeployLock, reporter: Reporter, action: Callable[[], T],
             within: float = RECOVERY_WITHIN) -> T:
    """Run `action` on the host, riding out a lost connection or an engine that does not answer
    (a reboot): reconnect, re-take the lock, wait for the engine, run it again; for `within`
    seconds. A failure while the host and its engine answer is final."""
    deadline = time.monotonic() + within
    while True:
        try:
            if not host.alive:
                with reporter.step("reconnect to the host (the connection was lost; a reboot?)"):
                    host.reconnect(max(1.0, deadline - time.monotonic()))
                    lock.reacquire()
            wait_for_engine(host.runner, deadline)
            return action()
        except Exception as exc:
            if time.monotonic() > deadline or host_answers(host):
                raise
            reporter.note(f"the host is not answering ({failure_text(exc).splitlines()[0]}); "
                          "waiting for it to come back")


def host_answers(host: Session) -> bool:
    """Is the host connected, with its Docker engine answering?"""
    try:
        return host.alive and host.runner.run(engine_version(), check=False).ok
    except (DeployError, *CONNECTION_ERRORS):
        return False


def wait_for_engine(runner: Runner, deadline: float) -> None:
    """Poll until the host's Docker engine answers (after a reboot, it starts after sshd)."""
    while not runner.run(engine_version(), check=False).ok:
        if time.monotonic() > deadline:
            raise DeployError("the Docker engine on the host did not answer in time")
        time.sleep(1)


def failure_text(failure: BaseException) -> str:
    if isinstance(failure, Interrupted):
        return str(failure)
    if isinstance(failure, DeployError):
        return str(failure)
    return f"connection to the host failed ({type(failure).__name__}: {failure})"


