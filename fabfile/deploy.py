"""The deploy, top to bottom.

Locally: build or reuse the images of the commit and push them. On the host, under the deploy
lock: close abandoned ledger entries, record what runs now (and tag it for rollback), refuse an
older sha, then stage files, pull, back up, update the stable services, migrate, start the
release in the idle slot, check it there, switch the edge to it, watch it live for
WATCH_SECONDS with the old slot standing by, and retire the old slot (see slots.py). Any
failure after the lock (an error, a health deadline, a crash before or after the switch, a lost
connection, Ctrl-C or SIGTERM) makes the recorded release the live one again: usually it never
stopped serving, or still runs beside the failed one. After success only: prune.
"""
from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, NoReturn, Optional, Tuple, TypeVar

import paramiko

from . import backup, ci_gate, images, notify, plan, prune
from .compose import (
    APP_FILE,
    BASE_FILE,
    EDGE_CONFIG,
    ENTRY_FILE,
    ENV_FILE,
    ComposeCommands,
    compose_text,
    edge_dir,
    engine_version,
    entry_conf,
    other_slot,
    release_dir,
    remove_containers,
    stable_digest_path,
    strip_terminal_codes,
)
from .config import render_env
from .errors import DeployError
from .health import Outcome
from .host import HostSession, Session
from .interrupts import Interrupted, interruptible, shielded
from .ledger import (
    Entry,
    ReleaseLedger,
    end_event,
    good_releases,
    latest_backup,
    merge,
    record_success,
    start_event,
    who_runs_this,
)
from .lock import DeployLock, held
from .report import Reporter, Summary
from .rollback import close_abandoned, ensure_serving
from .running import RunningRelease, containers, read_running, stable_state
from .shell import Runner, chain, cmd
from .slots import (
    check_candidate,
    confirm_switch,
    remove_slot,
    retire,
    start_in_slot,
    switch_back,
    switch_edge,
    watch_live,
)
from .transport import LocalTransport, Recorder
from .undo import Journal

if TYPE_CHECKING:
    from .config import Settings

CONNECTION_ERRORS = (paramiko.SSHException, OSError, EOFError)
# After a failure, how long the recovery rides out a host that does not answer (a network drop,
# a reboot: sshd and then the Docker engine come back) before it gives up.
RECOVERY_WITHIN = 180
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
    reporter.say(f"plan (nothing was run; it assumes {plan.RUNNING} live and healthy in slot "
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
    pushed = publish_images(settings, sha, local, reporter, rebuild)
    with session() as host, held(host, settings, "deploy", sha, wait_lock, reporter) as lock:
        ledger = ReleaseLedger(settings)
        entries = close_abandoned(host.runner, settings, reporter)
        previous, running = record_running(host.runner, settings, entries, reporter)
        refuse_older(sha, previous, force, local, reporter)
        attempt = Attempt(settings, sha, previous, start_event("deploy", sha, previous,
                                                               who_runs_this()))
        host.runner.run(ledger.append(attempt.entry))
        if previous:
            attempt.journal.on_failure(ensure_serving(host.runner, settings, previous, reporter))
        try:
            release(settings, sha, host.runner, reporter, summary, pushed, running, attempt.journal)
        except BaseException as failure:
            recover(failure, attempt, host, lock, reporter, summary)
        with shielded(reporter.say):  # the release is live: record it, whatever comes
            record_success(host.runner, ledger, end_event(
                attempt.entry["id"], "succeeded", attempt.elapsed(), images=summary.images,
                backup=summary.backup), reporter, sha[:12])
            prune_after_success(host.runner, settings, sha, previous, reporter)


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
    """Build each service from the commit, push staging-<sha> and staging-latest.

    Returns the pushed digest of each service, as the local engine knows it."""
    if settings.REGISTRY_USER:
        with reporter.step(f"log in to {settings.REGISTRY} (local)"):
            local.run(images.login(settings.REGISTRY, settings.REGISTRY_USER,
                                   settings.REGISTRY_PASSWORD or ""), "docker login")
    refs = {s.name: settings.image_ref(s.name, sha) for s in settings.services}
    if not rebuild:
        with reporter.step("look for staging-%s in the registry" % sha[:12]):
            present = all(local.run(images.exists_in_registry(ref, settings.REGISTRY_PLAIN_HTTP),
                                    check=False).ok
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
            # the previous image, as a layer cache (absent on a first build: that is fine)
            local.run(images.pull(images.latest_ref(settings, service.name)), check=False)
            local.run(images.build(settings, service, sha), f"build of {service.name}")
        with reporter.step(f"push {service.name}"):
            local.run(images.push(refs[service.name]), f"push of {refs[service.name]}")
            local.run(images.push(images.latest_ref(settings, service.name)), "push of staging-latest")
    return local_digests(settings, refs, local)


def local_digests(settings: Settings, refs: Dict[str, str], runner: Runner) -> Dict[str, Optional[str]]:
    """service -> registry digest of its image, as the given engine knows it."""
    lines = runner.run(images.repo_digests(*refs.values())).stdout.splitlines()
    return {name: images.digest_from_inspect(line, settings.image_repo(name))
            for name, line in zip(refs, lines)}


def record_running(runner: Runner, settings: Settings, entries: List[Entry],
                   reporter: Reporter) -> Tuple[Optional[str], RunningRelease]:
    """The release to come back to (what runs now if healthy, else the last good one kept), and
    what runs now.

    Its images are tagged `rollback` and `release-<sha>` so no prune can remove them (its files
    are in releases/<sha>/ since its own deploy, and prune keeps them too)."""
    with reporter.step("record the running release (from its containers)"):
        running = read_running(runner, settings)
        if running.sha and running.healthy:
            keep_running_release(runner, settings, running)
            reporter.note(f"running: {running.sha[:12]}, healthy; tagged for rollback")
            return running.sha, running
        fallback = next(iter(good_releases(entries)), None)
        reporter.note(f"running: {running.sha[:12] if running.sha else 'nothing'} "
                      f"({running.reason}); rollback target: "
                      f"{fallback[:12] if fallback else 'none (first deploy)'}")
        return fallback, running


def keep_running_release(runner: Runner, settings: Settings, running: RunningRelease) -> None:
    assert running.sha
    tags = [images.tag(image_id, f"{settings.image_repo(service)}:{tag}")
            for service, image_id in running.images.items()
            for tag in (images.ROLLBACK_TAG, images.release_tag(running.sha))]
    if tags:
        runner.run(chain(*tags), "tagging the running release for rollback")


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


def release(settings: Settings, sha: str, remote: Runner, reporter: Reporter, summary: Summary,
            pushed: Dict[str, Optional[str]], running: RunningRelease, journal: Journal) -> None:
    """On the host: stage files, pull, back up, update the stable services, migrate, start the
    release in the idle slot, check it there, switch the edge to it, watch it live with the old
    slot standing by, retire the old slot. Each step that changes what runs registers its undo
    in `journal` before it runs (undo.py)."""
    staged = ComposeCommands(settings, release_dir(settings, sha))
    top = ComposeCommands(settings)
    live = running.slot
    slot = other_slot(live)
    candidate = ComposeCommands(settings, staged.dir, slot)
    stage_files(remote, settings, sha, staged, reporter)
    if settings.REGISTRY_PULL_USER:
        with reporter.step(f"log in to {settings.REGISTRY} on the host"):
            remote.run(top.registry_login(), "docker login on the host")
    stable = stable_state(remote, settings)
    with reporter.step("pull images"):
        for compose in (candidate,) if stable.unchanged else (staged, candidate):
            remote.run(compose.pull(), "docker compose pull (the running release is untouched)")
    verify_pulled(remote, settings, sha, summary, pushed)
    pending = None
    if settings.database_service in stable.running:
        pending = migrations_pending(remote, settings, reporter, candidate)
        summary.backup = backup_database(remote, settings, sha, reporter, pending)
    else:
        reporter.note("no running database yet (first deploy): nothing to back up")
    if stable.unchanged:
        with reporter.step("stable services (data, edge proxy): running, and their files and "
                           "settings unchanged since the last deploy: left as they are"):
            pass
    else:
        journal.keeps("the stable services (data, edge proxy) as this release's files define them")
        with reporter.step("start stable services: data, edge proxy (unchanged ones keep running)"):
            for name in (BASE_FILE, ENV_FILE):
                remote.run(cmd("cp", "-p", posixpath.join(staged.dir, name),
                               posixpath.join(top.dir, name)), "activating " + name)
            remote.run(top.up_stable(), "starting the stable services")
            if stable.digest:
                remote.put(stable_digest_path(settings), stable.digest + "\n")
    if pending is not False:
        journal.keeps(f"the migrations of {sha[:12]} (forward-only; `inv deploy.rollback "
                      "--restore-db` loads the dump taken before them)")
        with reporter.step("run migrations"):
            remote.run(candidate.migrate(), "migrations")
    journal.on_failure(remove_slot(remote, settings, slot))
    with reporter.step(f"start {sha[:12]} in slot {slot}, beside the live one"):
        retire(remote, settings, slot)  # leftovers of an earlier release in the idle slot
        before = start_in_slot(remote, settings, sha, slot)

    def report_failure(outcome: Outcome) -> None:
        summary.logs, summary.logs_from = last_logs(remote, settings, sha, slot), settings.log_service
        failing = [a.body for a in outcome.probe.answers if a.status != 200 and a.body]
        if failing:
            summary.notes.append(f"last health body: {failing[0][:500]}")

    with reporter.step(f"check slot {slot} before it gets traffic (deadline "
                       f"{settings.HEALTH_TIMEOUT:.0f}s)"):
        summary.health = "unhealthy (it never got traffic)"
        outcome = check_candidate(remote, settings, sha, slot, reporter, before,
                                  on_failure=report_failure)
    summary.health = outcome.verdict.reason if outcome else ""
    stands_by = f" (slot {live} stands by)" if live else ""
    if live and running.sha and running.healthy:
        journal.on_failure(switch_back(remote, settings, running.sha, live, reporter))
    with reporter.step(f"switch the edge to slot {slot}{stands_by}"):
        went_live = switch_edge(remote, settings, sha, slot, reporter, fallback=live, seen=outcome)
    window = f"{settings.WATCH_SECONDS:.0f}s after the switch"
    with reporter.step(f"watch {window}{stands_by}"):
        summary.watch = f"{window}: failed"
        watch_live(remote, settings, sha, slot, went_live, before, on_failure=report_failure)
    summary.watch = f"{window}: ok"
    try:  # the new release is live and healthy: a failure here must not undo it
        with reporter.step(f"retire slot {live} (in-flight requests finish first)"
                           if live else "confirm the edge"):
            confirm_switch(remote, settings, slot, live)
    except DeployError as exc:
        reporter.say(f"warning: could not retire slot {live} (the next deploy retries): {exc}")
    remote.run(chain(*(images.tag(settings.image_ref(s.name, sha),
                                  f"{settings.image_repo(s.name)}:{images.release_tag(sha)}")
                       for s in settings.services)), "tagging the release to keep it")


def stage_files(remote: Runner, settings: Settings, sha: str, staged: ComposeCommands,
                reporter: Reporter) -> None:
    """The release's compose files and .env into releases/<sha>/ (0600), the edge config."""
    with reporter.step(f"stage compose files and .env in {staged.dir}"):
        remote.run(chain(ComposeCommands(settings).prepare_dir(), staged.prepare_dir(),
                         cmd("install", "-d", "-m", "0755", "--", edge_dir(settings))),
                   "creating " + staged.dir)
        for name in (BASE_FILE, APP_FILE):
            remote.put(posixpath.join(staged.dir, name), compose_text(settings, name))
        remote.put(staged.env_path, render_env(settings.app_env(sha)))
        remote.put(posixpath.join(edge_dir(settings), EDGE_CONFIG),
               compose_text(settings, posixpath.join("edge", EDGE_CONFIG)), 0o644)
        remote.put(posixpath.join(edge_dir(settings), ENTRY_FILE), entry_conf(settings), 0o644)


def verify_pulled(remote: Runner, settings: Settings, sha: str, summary: Summary,
                  pushed: Dict[str, Optional[str]]) -> None:
    """The host must hold exactly the digests we pushed (a moved tag would deploy other code)."""
    refs = {s.name: settings.image_ref(s.name, sha) for s in settings.services}
    pulled = local_digests(settings, refs, remote)
    for name, ref in refs.items():
        summary.images[name] = f"{ref}@{pulled[name]}" if pulled.get(name) else ref
        if pushed.get(name) and pulled.get(name) != pushed[name]:
            raise DeployError(f"{ref} on the host is {pulled.get(name)}, but {pushed[name]} was "
                              "pushed: the tag changed in the registry meanwhile; deploy again")


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
        remote.run(cmd("install", "-d", "-m", "0700", "--", posixpath.dirname(path)))
        remote.run(backup.dump(ComposeCommands(settings), path), "pg_dump")
    return path


def last_logs(remote: Runner, settings: Settings, sha: str, slot: str) -> str:
    compose = ComposeCommands(settings, release_dir(settings, sha), slot)
    logs = remote.run(compose.logs(settings.log_service), check=False).stdout
    return strip_terminal_codes(logs).strip()


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


def prune_after_success(runner: Runner, settings: Settings, sha: str, previous: Optional[str],
                        reporter: Reporter) -> None:
    """Remove this project's images and files no longer needed; a failure here only warns."""
    try:
        with reporter.step(f"prune (keeping the last {settings.KEEP_RELEASES} good releases)"):
            entries = merge(runner.run(ReleaseLedger(settings).read(), check=False).stdout)
            keep = {sha} | ({previous} if previous else set())
            keep |= set(good_releases(entries)[:settings.KEEP_RELEASES])
            ours = containers(runner, settings)
            rows = prune.parse_images(runner.run(prune.project_images(settings)).stdout)
            refs = prune.choose_images(rows, keep, {c["Image"] for c in ours})
            if refs:
                runner.run(prune.remove_images(refs), "removing old images")
            stopped = prune.stopped(ours)
            if stopped:
                runner.run(remove_containers(stopped), "removing stopped containers")
            paths = []
            newest_dump = posixpath.basename(latest_backup(entries) or "")  # for --restore-db
            for listing, folder in ((prune.list_release_dirs(settings), "releases"),
                                    (prune.list_backups(settings), "backups")):
                names = runner.run(listing, check=False).stdout.split()
                paths += [posixpath.join(settings.STAGING_DIR, folder, n)
                          for n in prune.choose_files(names, keep, {newest_dump})]
            if paths:
                runner.run(prune.remove_paths(paths), "removing old release files")
            reporter.note(f"removed {len(refs)} image references, {len(stopped)} stopped "
                          f"containers, {len(paths)} old release folders/backups")
    except DeployError as exc:
        reporter.say(f"warning: prune failed (the deploy itself succeeded): {exc}")

