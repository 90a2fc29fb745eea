"""The compose target: one server, Docker Compose, blue/green slots behind an nginx edge.

A release starts in the idle slot beside the live one, is checked through the edge's candidate
port, gets the traffic by an edge reload, is watched with the old slot standing by, and only
then is the old slot retired (slots.py; the database around it: database.py). Restoring a
retained release is the same dance with the host's own images (its files are in
releases/<sha>/, its images tagged `release-<sha>`).
"""
from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, Dict, List, Optional

from ..config.envfile import render_env
from ..errors import DeployError, RemoteCommandError
from ..story import disk, images, prune
from ..story.health import Outcome
from ..story.images import local_digests
from ..story.target import RunningRelease
from ..story.undo import Compensation, Journal
from ..transport.commands import chain, cmd
from . import certificate, takeover
from .commands import (
    APP_FILE,
    BASE_FILE,
    EDGE_CONFIG,
    EDGE_SERVICE,
    ENV_FILE,
    RELEASE_FILES,
    SLOTS,
    ComposeCommands,
    all_containers,
    app_file,
    compose_too_old,
    compose_version,
    edge_dir,
    made_by_tool,
    other_slot,
    release_dir,
    remove_containers,
    running_services,
    slot_project,
    stable_digest_path,
    strip_terminal_codes,
    tool_file,
    write_secrets,
)
from .database import backup_database, migrations_pending, restore_database, run_migrations
from .edge import LIVE_FILE, ROUTES_FILE, entry_before_routes, live_conf, routes_conf, routes_file
from .running import containers, read_running, restart_counts, stable_state
from .slots import (
    check_candidate,
    confirm_switch,
    reload_edge,
    remove_slot,
    retire,
    standing_by,
    start_in_slot,
    switch_back,
    switch_edge,
    watch_live,
)

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter, Summary
    from ..story.target import Published
    from ..transport.runner import Runner


class ComposeTarget:
    """One server running Docker Compose (the default target)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def preflight(self, runner: Runner) -> None:
        """The host's Compose reads the .env this tool writes (COMPOSE_MIN)."""
        too_old = compose_too_old(runner.run(compose_version(), check=False))
        if too_old:
            raise DeployError(too_old)

    def secure_edge(self, runner: Runner, reporter: Reporter) -> str:
        """The certificate, once the edge runs (it answers the ACME challenge); on a first
        deploy, release() sees to it as soon as it does."""
        if certificate.https_on(self.settings) and EDGE_SERVICE not in runner.run(
                running_services(self.settings.project)).stdout.split():
            return ""
        return certificate.ensure(runner, self.settings, reporter,
                                  lambda: reload_edge(runner, self.settings))

    def read_running(self, runner: Runner) -> RunningRelease:
        return read_running(runner, self.settings)

    def keep(self, runner: Runner, running: RunningRelease) -> None:
        keep_running_release(runner, self.settings, running)

    def release(self, sha: str, runner: Runner, reporter: Reporter, summary: Summary,
                published: Published, running: RunningRelease, journal: Journal) -> None:
        release(self.settings, sha, runner, reporter, summary, published, running, journal)

    def ensure_serving(self, runner: Runner, sha: str, reporter: Reporter) -> Compensation:
        return ensure_serving(runner, self.settings, sha, reporter)

    def retained(self, runner: Runner, sha: str) -> bool:
        return retained(runner, self.settings, sha)

    def restore(self, runner: Runner, sha: str, reporter: Reporter,
                journal: Optional[Journal] = None) -> bool:
        return restore_release(runner, self.settings, sha, reporter, journal=journal)

    def restore_database(self, runner: Runner, dump: str, reporter: Reporter) -> None:
        restore_database(runner, self.settings, dump, reporter)

    def prune(self, runner: Runner, sha: str, previous: Optional[str], reporter: Reporter) -> None:
        prune_after_success(runner, self.settings, sha, previous, reporter)


def keep_running_release(runner: Runner, settings: Settings, running: RunningRelease) -> None:
    assert running.sha
    tags = [images.tag(image_id, f"{settings.image_repo(service)}:{tag}")
            for service, image_id in running.images.items()
            for tag in (images.ROLLBACK_TAG, images.release_tag(running.sha))]
    if tags:
        runner.run(chain(*tags), "tagging the running release for rollback")


def release(settings: Settings, sha: str, remote: Runner, reporter: Reporter, summary: Summary,
            published: Published, running: RunningRelease, journal: Journal) -> None:
    """On the host: stage files, pull, back up, update the stable services, migrate, start the
    release in the idle slot, check it there, switch the edge to it, watch it live with the old
    slot standing by, retire the old slot. Each step that changes what runs registers its undo
    in `journal` before it runs (undo.py)."""
    staged = ComposeCommands(settings, release_dir(settings, sha))
    top = ComposeCommands(settings)
    live = running.slot
    slot = other_slot(live)
    candidate = ComposeCommands(settings, staged.dir, slot)
    stage_files(remote, settings, sha, staged, live, reporter)
    stable = stable_state(remote, settings)
    theirs = takeover.find(remote, settings)   # a stack run by hand in our project, if any
    if not stable.unchanged:
        takeover.check_database(remote, settings, reporter, theirs)
        summary.notes += [f"kept your {line}" for line in
                          takeover.keep_their_files(remote, settings, reporter)]
    disk.check_images(remote, settings, settings.image_refs(sha), published.sizes, reporter)
    with reporter.step("pull images"):
        for compose in (candidate,) if stable.unchanged else (staged, candidate):
            images.pull_patiently(remote, compose.pull(),
                                  "docker compose pull (the running release is untouched)",
                                  reporter)
    verify_pulled(remote, settings, sha, summary, published.digests)
    published.pulled()
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
            start_stable(remote, settings)
            if stable.digest:
                remote.put(stable_digest_path(settings), stable.digest + "\n")
    if not stable.unchanged:   # the edge (re)started: its certificate, if it had none yet
        https = certificate.ensure(remote, settings, reporter,
                                   lambda: reload_edge(remote, settings))
        earlier = [n for n in summary.notes if n.startswith("https:")]
        if https and https not in summary.notes and not (earlier and earlier[0].startswith(
                "https: new") and not https.startswith("https: new")):   # keep "new" said once
            summary.notes[:] = [n for n in summary.notes if not n.startswith("https:")] + [https]
    if pending is not False:
        run_migrations(remote, settings, reporter, sha, candidate.migrate(), journal)
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
    if theirs:
        summary.notes += takeover.stop_their_app(remote, settings, theirs, reporter)
    remote.run(chain(*(images.tag(settings.image_ref(s.name, sha),
                                  f"{settings.image_repo(s.name)}:{images.release_tag(sha)}")
                       for s in settings.services)), "tagging the release to keep it")


def start_stable(runner: Runner, settings: Settings) -> None:
    """`up` the stable services (unchanged ones keep running, and wait until healthy), then the
    edge re-reads its config, which may have changed under the same container (new routes)."""
    top = ComposeCommands(settings)
    runner.run(chain(top.up_stable(), top.reload_edge()), "starting the stable services")


def stage_files(remote: Runner, settings: Settings, sha: str, staged: ComposeCommands,
                live: Optional[str], reporter: Reporter) -> None:
    """The release's compose files, .env (0600) and routes into releases/<sha>/; the edge's own
    config. A live slot of a version before routes gets its one route written for it."""
    with reporter.step(f"stage compose files and .env in {staged.dir}"):
        remote.run(chain(ComposeCommands(settings).prepare_dir(), staged.prepare_dir(),
                         cmd("install", "-d", "-m", "0755", "--", edge_dir(settings))),
                   "creating " + staged.dir)
        remote.put(posixpath.join(staged.dir, BASE_FILE), tool_file(settings, BASE_FILE))
        remote.put(posixpath.join(staged.dir, APP_FILE), app_file(settings, APP_FILE))
        public, _ = settings.split_secrets(settings.app_env(sha))
        remote.put(staged.env_path, render_env(public))
        write_secrets(remote, settings, render_env)
        remote.put(posixpath.join(staged.dir, ROUTES_FILE), routes_conf(settings.routes))
        edge = edge_dir(settings)
        if live:
            upgrade_live_slot(remote, settings, live)
        remote.put(posixpath.join(edge, EDGE_CONFIG),
                   tool_file(settings, posixpath.join("edge", EDGE_CONFIG)), 0o644)


def upgrade_live_slot(remote: Runner, settings: Settings, live: str) -> None:
    """A release made live by a version of this tool before routes: everything went to one entry
    service (edge/live.conf says which). Its slot gets that one route, and live.conf the form
    the edge's config now reads, before the edge reads either."""
    edge = edge_dir(settings)
    before = entry_before_routes(remote.run(cmd("cat", posixpath.join(edge, LIVE_FILE)),
                                            check=False).stdout)
    if before:
        remote.put(posixpath.join(edge, routes_file(live)), routes_conf([before[1]]), 0o644)
        remote.put(posixpath.join(edge, LIVE_FILE), live_conf(live), 0o644)


def verify_pulled(remote: Runner, settings: Settings, sha: str, summary: Summary,
                  pushed: Dict[str, Optional[str]]) -> None:
    """The host must hold exactly the digests we pushed (a moved tag would deploy other code),
    built for its own platform (an image from a laptop of another CPU would never start)."""
    refs = settings.image_refs(sha)
    images.refuse_foreign(remote, refs, "the host")
    pulled = local_digests(settings, refs, remote)
    for name, ref in refs.items():
        summary.images[name] = f"{ref}@{pulled[name]}" if pulled.get(name) else ref
        if pushed.get(name) and pulled.get(name) != pushed[name]:
            raise DeployError(f"{ref} on the host is {pulled.get(name)}, but {pushed[name]} was "
                              "pushed: the tag changed in the registry meanwhile; deploy again")


def last_logs(remote: Runner, settings: Settings, sha: str, slot: str) -> str:
    compose = ComposeCommands(settings, release_dir(settings, sha), slot)
    logs = remote.run(compose.logs(settings.log_service), check=False).stdout
    return strip_terminal_codes(logs).strip()


def prune_after_success(runner: Runner, settings: Settings, sha: str, previous: Optional[str],
                        reporter: Reporter) -> None:
    """Remove this project's images and files no longer needed; a failure here only warns."""
    try:
        with reporter.step(f"prune (keeping the last {settings.KEEP_RELEASES} good releases)"):
            *files_read, listing, image_list = runner.run_all(
                [*prune.file_reads(settings), all_containers(), prune.project_images(settings)],
                "reading what prune may remove")
            for read, what in ((listing, "listing containers"), (image_list, "listing images")):
                if not read.ok:
                    raise RemoteCommandError(what, read.tail())
            keep, files = prune.kept_and_old_files(runner, settings, files_read, sha, previous)
            ours = containers(runner, settings, listing.stdout)
            refs = prune.choose_images(prune.parse_images(image_list.stdout), keep,
                                       {c["Image"] for c in ours}, prune.our_repos(settings))
            # only what the tool made: a stack it took over stays (takeover.py)
            stopped = prune.stopped([c for c in ours if made_by_tool(c["Files"], settings)])
            removals = ([prune.remove_images(refs)] if refs else []) + \
                ([remove_containers(stopped)] if stopped else []) + \
                ([prune.remove_paths(files)] if files else [])
            if removals:
                runner.run(chain(*removals), "removing what prune chose")
            reporter.note(f"removed {len(refs)} image references, {len(stopped)} stopped "
                          f"containers, {len(files)} old release folders/backups")
    except DeployError as exc:
        reporter.say(f"warning: prune failed (the deploy itself succeeded): {exc}")


def retained(runner: Runner, settings: Settings, sha: str) -> bool:
    """Are this release's images and files still on the host?"""
    refs = [f"{settings.image_repo(s.name)}:{images.release_tag(sha)}" for s in settings.services]
    files = [posixpath.join(release_dir(settings, sha), name) for name in RELEASE_FILES]
    checks = [images.exists_locally(ref) for ref in refs] + [cmd("test", "-f", f) for f in files]
    return runner.run(chain(*checks), check=False).ok


def restore_release(runner: Runner, settings: Settings, sha: str, reporter: Reporter,
                    timeout: Optional[float] = None, journal: Optional[Journal] = None) -> bool:
    """Make retained release `sha` the live one, healthy and watched; returns whether the edge
    had to switch. If it is live and healthy already, this only removes the other slot; if it
    still runs healthy in the other slot (standing by through a watch window), the edge switches
    back to it at once. With `journal`, each step registers its undo there (a rollback)."""
    journal = journal if journal is not None else Journal()
    write_secrets(runner, settings, render_env)   # the current secrets, never the release's
    running = read_running(runner, settings)
    if running.slot and running.sha == sha and running.healthy:
        with reporter.step(f"{sha[:12]} is live and healthy; retire slot {other_slot(running.slot)}"):
            retire(runner, settings, other_slot(running.slot))
        return False
    live = running.slot
    slot = slot_holding(containers(runner, settings), settings, sha, live) or other_slot(live)
    if slot != live and standing_by(runner, settings, sha, slot):
        reporter.note(f"{sha[:12]} still runs healthy in slot {slot}: switching back at once")
        before = restart_counts(runner, settings)
    else:
        with reporter.step(f"restore release {sha[:12]} in slot {slot} from the host (no pull)"):
            runner.run(chain(*(images.tag(f"{settings.image_repo(s.name)}:{images.release_tag(sha)}",
                                          settings.image_ref(s.name, sha))
                               for s in settings.services)),
                       f"images of {sha[:12]} are not on the host any more")
            if not stable_state(runner, settings).unchanged:
                start_stable(runner, settings)
            if slot != live:
                journal.on_failure(remove_slot(runner, settings, slot))
            before = start_in_slot(runner, settings, sha, slot, pull_never=True)
        with reporter.step(f"wait until {sha[:12]} is healthy in slot {slot}"):
            check_candidate(runner, settings, sha, slot, reporter, before, timeout)
    went_live = runner.clock()
    stands_by = f" (slot {live} stands by)" if live and live != slot else ""
    if live != slot:
        if live and running.sha and running.healthy:
            journal.on_failure(switch_back(runner, settings, running.sha, live, reporter))
        with reporter.step(f"switch the edge to slot {slot}{stands_by}"):
            went_live = switch_edge(runner, settings, sha, slot, reporter, fallback=live)
    with reporter.step(f"watch {settings.WATCH_SECONDS:.0f}s after the switch{stands_by}"):
        watch_live(runner, settings, sha, slot, went_live, before)
    journal.commit()  # `sha` is live, healthy, watched: a failure from here on undoes nothing
    try:
        with reporter.step(f"retire slot {other_slot(slot)}"):
            confirm_switch(runner, settings, slot, other_slot(slot))
    except DeployError as exc:
        reporter.say(f"warning: could not retire slot {other_slot(slot)} (the next deploy "
                     f"retries): {exc}")
    return live != slot


def ensure_serving(runner: Runner, settings: Settings, sha: str, reporter: Reporter) -> Compensation:
    """The last undo of every deploy: retained release `sha` (what ran, or the last good one)
    must be what users get, healthy; restored (restore_release) if it is not."""
    def run() -> bool:
        running = read_running(runner, settings)
        if running.sha == sha and running.healthy:
            reporter.note(f"{sha[:12]} is live and healthy in slot {running.slot}")
            return False
        return restore_release(runner, settings, sha, reporter)
    return Compensation(f"make sure {sha[:12]} serves, healthy (restore it if not)", run)


def slot_holding(rows: List[dict], settings: Settings, sha: str,
                 live: Optional[str] = None) -> Optional[str]:
    """The slot whose app containers (in any state) are release `sha`, preferring the live one."""
    app = {s.name for s in settings.services}
    holding = {slot for slot in SLOTS for c in rows
               if c["Project"] == slot_project(settings, slot) and c["Service"] in app
               and c["Revision"] == sha}
    return live if live in holding else next(iter(sorted(holding)), None)
