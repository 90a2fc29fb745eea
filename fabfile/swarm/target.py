"""The Swarm target: a release is an update of the app stack, which Swarm rolls out itself.

Per deploy, on the manager: stage the release's files (images pinned by the digests we pushed),
bring the stable stack (data, edge) to this release's files when they changed, run the
migration check, dump and migrations as one-off containers on the overlay network, then
`docker stack deploy` the app stack. Swarm starts each new task beside an old one, counts it
once its healthcheck passes, watches it for `monitor` and rolls the service back by itself if a
task fails meanwhile. We wait for the update to converge or roll back (our own deadline), check
the public port reports the sha, and watch WATCH_SECONDS more, like the compose target.

Undo of the update: the recorded release's stack file deployed again (a no-op when Swarm has
already rolled back to it); on a first deploy, the app stack removed.
"""
from __future__ import annotations

import posixpath
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Set

from ..compose.commands import (
    ENV_FILE,
    app_file,
    edge_dir,
    health_on_host,
    parse_http,
    release_dir,
    tool_file,
    write_secrets,
)
from ..compose.database import bounded, run_migrations
from ..config.declared import image_variable
from ..config.envfile import render_sh_env
from ..errors import DeployError
from ..story import disk, images
from ..story.health import Answer, Expected
from ..story.prune import file_reads, kept_and_old_files, remove_paths
from ..story.target import RunningRelease
from ..story.undo import Compensation, Journal
from ..transport.commands import chain, cmd
from . import progress, stacks
from .progress import Look, judge
from .stacks import app_stack, service_name

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter, Summary
    from ..story.target import Published
    from ..transport.runner import Runner

# After `stack deploy`, how long the update may take to converge (each task: start, healthcheck,
# monitor, delay; two replicas a service) before the deploy gives up and undoes it.
CONVERGE_DEADLINE = 240.0


class SwarmTarget:
    """A Docker Swarm whose manager is STAGING_HOST."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.services = [s.name for s in settings.services]

    # -- reading what runs --------------------------------------------------------------------

    def look(self, runner: Runner) -> Look:
        """The app stack's services and tasks, and the public port's answer (host and URL)."""
        look = Look()
        stack = app_stack(self.settings)
        names = progress.service_names(runner, stack)
        if names:
            look.services = progress.parse_services(
                runner.run(stacks.inspect_services(names), "docker service inspect").stdout, stack)
            look.tasks = progress.read_tasks(runner, stack, names)
            look.down = progress.parse_down_nodes(runner.run(stacks.list_nodes(), check=False).stdout)
        look.answer = Answer("public port", *parse_http(runner.run(
            health_on_host(self.settings), check=False, timeout=10).stdout))
        if look.answer.status == 200:  # the public URL, from here, must agree
            look.answer = Answer("public URL", *runner.get(
                self.settings.STAGING_URL + self.settings.health_path))
        return look

    def expected(self, sha: str) -> Expected:
        """Release `sha`: its services at full strength (so whatever answers is that release),
        answering healthy as the app's health contract says."""
        return Expected(sha, self.services, self.services, self.settings.health)

    def read_running(self, runner: Runner) -> RunningRelease:
        look = self.look(runner)
        shas = {s.sha for s in look.services.values() if s.name in self.services}
        rows = [{"Service": t.service, "State": t.current.split(" ")[0].lower(), "Health": "",
                 "RestartCount": 0, "Revision": look.services[t.service].sha, "Node": t.node}
                for t in look.tasks if t.running and t.service in look.services]
        if len(shas) != 1 or not all(n in look.services for n in self.services):
            return RunningRelease(None, False, "no app stack running" if not shas else
                                  f"app services disagree on their release: {sorted(shas)}",
                                  containers=rows)
        sha = shas.pop()
        state, reason = judge(look, self.expected(sha))
        running_images = {n: s.image for n, s in look.services.items() if n in self.services}
        return RunningRelease(sha, state == "healthy", reason, None, running_images, rows)

    def keep(self, runner: Runner, running: RunningRelease) -> None:
        """Nothing to tag: releases are pinned by digest and their files are kept."""

    def preflight(self, runner: Runner) -> None:
        """Nothing to refuse: `docker stack deploy` reads no .env (a shell sources it)."""

    def secure_edge(self, runner: Runner, reporter: Reporter) -> str:
        return ""      # the Swarm edge serves plain HTTP (config refuses an https STAGING_URL)

    def retained(self, runner: Runner, sha: str) -> bool:
        return runner.run(chain(*(cmd("test", "-f", f)
                                  for f in stacks.release_files(self.settings, sha))),
                          check=False).ok

    # -- a release ------------------------------------------------------------------------------

    def release(self, sha: str, runner: Runner, reporter: Reporter, summary: Summary,
                published: Published, running: RunningRelease, journal: Journal) -> None:
        settings = self.settings
        directory = release_dir(settings, sha)
        pushed = published.digests
        pinned = {s.name: f"{settings.image_ref(s.name, sha)}@{pushed[s.name]}"
                  for s in settings.services if pushed.get(s.name)}
        summary.images.update(pinned)
        env = stacks.release_env(settings, sha, pinned)
        with reporter.step(f"stage stack files and .env in {directory}"):
            runner.run(chain(cmd("install", "-d", "-m", "0700", "--", settings.STAGING_DIR,
                                 directory),
                             cmd("install", "-d", "-m", "0755", "--", edge_dir(settings))),
                       "creating " + directory)
            runner.put(posixpath.join(directory, stacks.STABLE_FILE),
                       tool_file(settings, stacks.STABLE_FILE))
            runner.put(posixpath.join(directory, stacks.APP_FILE), app_file(settings, stacks.APP_FILE))
            public, _ = settings.split_secrets(env)
            runner.put(posixpath.join(directory, ENV_FILE), render_sh_env(public))
            write_secrets(runner, settings, render_sh_env)
            for name, text in stacks.edge_files(settings).items():
                runner.put(posixpath.join(edge_dir(settings), name), text, 0o644)
        self.stable_stack(runner, reporter, directory, env, journal)
        with reporter.step("pull the release's images on every node (a restore then needs no "
                           "registry)"):
            for service in self.services:
                self.prefetch(runner, reporter, service, env[image_variable(service)])
        # (a manager that runs no tasks holds no image: Swarm itself then finds no node for it)
        images.refuse_foreign(runner, {s: env[image_variable(s)] for s in self.services},
                              "the swarm's manager")
        published.pulled()
        summary.backup = self.migrate(runner, reporter, sha, directory, journal)
        if running.sha is None:
            journal.on_failure(self.remove_app_stack(runner))
        elif running.healthy:
            journal.on_failure(self.go_back_to(runner, running.sha, reporter))
        # (an unhealthy release that ran is not gone back to: the deploy's last undo restores
        # the last good one)
        try:
            with reporter.step(f"update the app stack to {sha[:12]} (start-first, health-gated; "
                               f"deadline {CONVERGE_DEADLINE:.0f}s)"):
                before = self.task_ids(runner)
                runner.run(stacks.stack_deploy(directory, stacks.APP_FILE, app_stack(settings)),
                           "docker stack deploy")
                summary.health = "the update did not converge"
                summary.health = self.wait_converged(runner, sha, reporter, CONVERGE_DEADLINE)
            window = f"{settings.WATCH_SECONDS:.0f}s after the update"
            with reporter.step(f"watch {window}"):
                summary.watch = f"{window}: failed"
                self.watch(runner, sha, before)
            summary.watch = f"{window}: ok"
        except DeployError:
            summary.logs, summary.logs_from = self.last_logs(runner), settings.log_service
            raise

    def stable_stack(self, runner: Runner, reporter: Reporter, directory: str,
                     env: Dict[str, str], journal: Journal) -> None:
        """The network, and the stable stack brought to this release's files if they changed
        (or it does not run): postgres and redis keep their tasks and volumes otherwise."""
        settings = self.settings
        if not runner.run(stacks.network_exists(stacks.network(settings)), check=False).ok:
            runner.run(stacks.create_network(settings), "creating the overlay network")
        digest = stacks.stable_digest(stacks.stable_text(settings), env)
        digest_path = posixpath.join(settings.STAGING_DIR, stacks.STABLE_DIGEST)
        stable = ["edge", *settings.data_services]
        names = set(runner.run(stacks.list_services(settings.project), check=False).stdout.split())
        same = runner.run(cmd("cat", digest_path), check=False).stdout.strip() == digest
        if same and names >= {f"{settings.project}_{s}" for s in stable}:
            with reporter.step("stable stack (data, edge): its files and settings unchanged: "
                               "left as it is"):
                return
        journal.keeps("the stable stack (data, edge proxy) as this release's files define it")
        with reporter.step("update the stable stack (data, edge proxy)"):
            runner.run(stacks.stack_deploy(directory, stacks.STABLE_FILE, settings.project),
                       "docker stack deploy of the stable stack")
            self.wait_stable(runner, stable)
            # its config file may have changed under the same spec: nginx re-reads it (graceful)
            for edge in runner.run(stacks.local_tasks(f"{settings.project}_edge")).stdout.split():
                runner.run(stacks.reload_edge(edge), "reloading the edge proxy")
            runner.put(digest_path, digest + "\n")

    def prefetch(self, runner: Runner, reporter: Reporter, service: str, ref: str) -> None:
        """Every node pulls `ref` (a global job of it that does nothing else)."""
        name = f"{self.settings.project}-pull-{service}"
        failed, skipped = progress.on_every_node(
            runner, name, stacks.prefetch_job(self.settings, name, ref), CONVERGE_DEADLINE)
        if skipped:
            reporter.note(f"node {', '.join(skipped)} is down: it did not pull {service} (it "
                          "would need the registry to run it)")
        if failed:
            raise DeployError(f"node {failed[0].node} could not pull {service}: "
                              f"{failed[0].error or failed[0].current}")

    def wait_stable(self, runner: Runner, stable: List[str]) -> None:
        deadline = runner.clock() + CONVERGE_DEADLINE
        names = [f"{self.settings.project}_{s}" for s in stable]
        while True:
            tasks = progress.parse_tasks(runner.run(stacks.list_tasks(names), check=False).stdout,
                                      self.settings.project)
            missing = [s for s in stable if not any(t.service == s and t.running for t in tasks)]
            if not missing:
                return
            if runner.clock() > deadline:
                raise DeployError(f"the stable stack did not come up: {', '.join(missing)} not "
                                  "running")
            runner.sleep(1)

    def migrate(self, runner: Runner, reporter: Reporter, sha: str, directory: str,
                journal: Journal) -> Optional[str]:
        """Migration check, dump (when there are migrations to apply), migrations: each a
        one-off container on the overlay network. Returns the dump's path, if one was taken."""
        settings = self.settings
        image_var = image_variable(settings.migrate_service)
        names = sorted(stacks.release_env(settings, sha, {}))
        one_off = lambda argv: stacks.one_off(settings, directory, image_var, argv, names,  # noqa: E731
                                             stacks.network(settings))
        pending: Optional[bool] = None
        if settings.migrate_check_command:
            with reporter.step("ask the new release whether it has migrations to apply"):
                pending = not bounded(runner, settings, one_off(settings.migrate_check_command),
                                      "the migration check", check=False).ok
            if not pending:
                reporter.note("no migration to apply: no dump, no migration run")
                return None
        path = posixpath.join(settings.STAGING_DIR, "backups",
                              f"{sha}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.dump")
        why = "it has migrations to apply" if pending else "before every release"
        with reporter.step(f"back up the database to {path} ({why})"):
            runner.run(cmd("install", "-d", "-m", "0700", "--", posixpath.dirname(path)))
            disk.check_dump(runner, settings)
            runner.run(stacks.dump_database(settings, directory, path), "pg_dump")
        run_migrations(runner, settings, reporter, sha, one_off(settings.migrate_command), journal)
        return path

    def wait_converged(self, runner: Runner, sha: str, reporter: Reporter,
                       deadline: float) -> str:
        """Poll until every app service runs `sha` at full strength and the public port says
        so; raise with the task's error if Swarm gave up, or at the deadline."""
        started, noted = runner.clock(), 0.0
        down: List[str] = []
        unsticker = progress.Unsticker()
        while True:
            look = self.look(runner)
            state, reason = judge(look, self.expected(sha))
            waited = runner.clock() - started
            if look.down and look.down != down:
                reporter.note(progress.nodes_down_note(look.down))
            down = look.down
            if state == "healthy":
                return reason
            if state == "failed":
                raise DeployError(f"release {sha[:12]} is not healthy: {reason}")
            self.unstick(runner, reporter, look, sha, unsticker)
            if waited > deadline:
                raise DeployError(f"release {sha[:12]} did not converge in {deadline:.0f}s: "
                                  f"{reason}")
            if waited - noted >= 10:
                noted = waited
                reporter.note(f"still updating ({waited:.0f}s): {reason}")
            runner.sleep(self.settings.health_interval)

    def unstick(self, runner: Runner, reporter: Reporter, look: Look, sha: str,
                unsticker: progress.Unsticker) -> None:
        """An update that a node going down holds up (`progress.stalls`) is started again, once
        per service: Swarm places the new tasks on the nodes that are up."""
        patience = 3 * stacks.update_window(self.settings)
        for stall in unsticker.due(progress.stalls(look, sha, self.services, patience),
                                   runner.clock()):
            reporter.note(f"the update of {stall.service} {stall.why}: starting it again on the "
                          "nodes that are up")
            runner.run(stacks.force_update(service_name(self.settings, stall.service)),
                       "docker service update --force")

    def task_ids(self, runner: Runner) -> Set[str]:
        """The app stack's tasks now, before an update: a task of the same image that failed
        earlier (a release's earlier life, such as one Swarm failed to detach from the network
        as it stopped it) is history, not the update failing."""
        stack = app_stack(self.settings)
        names = progress.service_names(runner, stack)
        return {t.id for t in progress.read_tasks(runner, stack, names) if t.id} if names else set()

    def watch(self, runner: Runner, sha: str, before: Set[str]) -> None:
        """WATCH_SECONDS after the update: every look must find `sha` at full strength, no task
        of it failed since the update began (`before`: the tasks there were), and the public
        port answering with it (a second look must agree)."""
        end = runner.clock() + self.settings.WATCH_SECONDS
        failures = 0
        while runner.clock() < end:
            look = self.look(runner)
            state, reason = judge(look, self.expected(sha))
            crashed = [t for t in look.tasks if t.service in look.services and t.failed
                       and t.id not in before and t.image == look.services[t.service].image]
            if crashed:
                state, reason = "failed", (f"a task of {crashed[0].service} failed: "
                                           f"{crashed[0].error} (on {crashed[0].node})")
            failures = failures + 1 if state != "healthy" else 0
            if state == "failed" or failures >= 2:
                raise DeployError(f"release {sha[:12]} failed in its watch window: {reason}")
            runner.sleep(self.settings.health_interval)

    # -- undo, restore --------------------------------------------------------------------------

    def go_back_to(self, runner: Runner, sha: str, reporter: Reporter) -> Compensation:
        """Undoes an update of the app stack: release `sha`, which ran healthy before it,
        deployed again from its files."""
        return Compensation(f"deploy {sha[:12]} again (Swarm may have rolled back to it already)",
                            lambda: self.restore(runner, sha, reporter))

    def remove_app_stack(self, runner: Runner) -> Compensation:
        """Undoes a first deploy's app stack."""
        def remove() -> bool:
            runner.run(stacks.remove_stack(app_stack(self.settings)), "docker stack rm")
            return False
        return Compensation("remove the app stack (first deploy)", remove)

    def ensure_serving(self, runner: Runner, sha: str, reporter: Reporter) -> Compensation:
        def run() -> bool:
            running = self.read_running(runner)
            if running.sha == sha and running.healthy:
                reporter.note(f"{sha[:12]} is live and healthy")
                return False
            return self.restore(runner, sha, reporter)
        return Compensation(f"make sure {sha[:12]} serves, healthy (restore it if not)", run)

    def restore(self, runner: Runner, sha: str, reporter: Reporter,
                journal: Optional[Journal] = None) -> bool:
        """Deploy retained release `sha` again from its files (images by digest, no registry),
        wait for it, watch it. Returns whether the app stack had to change."""
        running = self.read_running(runner)
        if running.sha == sha and running.healthy:
            reporter.note(f"{sha[:12]} is live and healthy")
            return False
        if journal is not None and running.sha and running.healthy:
            journal.on_failure(self.go_back_to(runner, running.sha, reporter))
        write_secrets(runner, self.settings, render_sh_env)   # the current ones, never the release's
        directory = release_dir(self.settings, sha)
        with reporter.step(f"deploy {sha[:12]} from its kept files (no registry)"):
            before = self.task_ids(runner)
            runner.run(stacks.stack_deploy(directory, stacks.APP_FILE, app_stack(self.settings),
                                          stacks.RESTORE_WINDOW), "docker stack deploy")
            self.wait_converged(runner, sha, reporter, CONVERGE_DEADLINE)
        with reporter.step(f"watch {self.settings.WATCH_SECONDS:.0f}s after the update"):
            self.watch(runner, sha, before)
        if journal is not None:
            journal.commit()
        return True

    def restore_database(self, runner: Runner, dump: str, reporter: Reporter) -> None:
        raise DeployError("--restore-db is not available on the swarm target yet: restore "
                          f"{dump} with pg_restore through the overlay network by hand")

    def last_logs(self, runner: Runner) -> str:
        service = service_name(self.settings, self.settings.log_service)
        return runner.run(cmd("docker", "service", "logs", "--no-task-ids", "--tail", "15",
                              service), check=False).stdout.strip()

    # -- after success --------------------------------------------------------------------------

    def prune(self, runner: Runner, sha: str, previous: Optional[str], reporter: Reporter) -> None:
        """Old release folders and dumps on the manager; on every node, the project's ended
        containers and the images of releases not kept (stacks.node_prune_script, as a job in
        DOCKER_CLI_IMAGE: only the manager is reachable)."""
        settings = self.settings
        try:
            with reporter.step(f"prune (keeping the last {settings.KEEP_RELEASES} good releases)"):
                reads = runner.run_all(file_reads(settings), "reading what prune may remove")
                keep, files = kept_and_old_files(runner, settings, reads, sha, previous)
                if files:
                    runner.run(remove_paths(files), "removing old release files")
                name = f"{settings.project}-prune"
                output: List[str] = []
                failed, skipped = progress.on_every_node(runner, name, stacks.node_job(
                    settings, name, settings.DOCKER_CLI_IMAGE, "sh", "-c",
                    stacks.node_prune_script(settings, keep), docker_socket=True),
                    CONVERGE_DEADLINE, output)
                removed = sum(" removed " in f" {line} " for line in output)
                notes = [f"removed {len(files)} old release folders/backups, {removed} image "
                         "references on the nodes"]
                notes += [f"node {t.node} did not prune: {t.error or t.current}" for t in failed]
                notes += [f"node {', '.join(skipped)} is down: not pruned"] if skipped else []
                reporter.note("; ".join(notes))
        except DeployError as exc:
            reporter.say(f"warning: prune failed (the deploy itself succeeded): {exc}")
