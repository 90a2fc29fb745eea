"""The Swarm target's commands and decisions, without Docker: what is run on the manager (no
value of the .env ever on a command line), how `docker service` output is read, and when a
release counts as converged, still updating, or given up on by Swarm."""
import json

from staging_deploy.story.health import Answer, Expected, HealthContract
from staging_deploy.swarm import progress, stacks
from staging_deploy.swarm.progress import Look, Service, Task, judge

SHA = "a" * 40
OLD = "b" * 40


def test_stack_deploy_sources_the_env_file_and_never_asks_the_registry(settings):
    command = stacks.stack_deploy("/opt/cm/releases/x", stacks.APP_FILE, "cm-app")
    assert command.argv[:2] == ("sh", "-c")
    script = command.argv[2]
    # the release's .env, then the host's current secrets over it (a rollback never brings back
    # a rotated one)
    sourced = ("set -a && . /opt/cm/releases/x/.env && if [ -f /opt/cm/secrets.env ]; then "
               ". /opt/cm/secrets.env; fi && ")
    assert script.startswith(sourced + "set +a && exec docker stack")
    assert "--resolve-image never" in script and "--with-registry-auth" in script
    assert script.endswith("-c /opt/cm/releases/x/stack-app.yaml cm-app")
    restore = stacks.stack_deploy("/opt/cm/releases/x", stacks.APP_FILE, "cm-app", "2s").argv[2]
    assert restore.startswith(sourced + "UPDATE_WINDOW=2s && set +a && exec docker stack deploy")


def test_one_off_containers_get_variables_by_name_only(settings):
    env = stacks.release_env(settings, SHA, {"backend": "r/backend:staging-x@sha256:1"})
    command = stacks.one_off(settings, "/d", "BACKEND_IMAGE", ["migrate", "--check"], sorted(env),
                            stacks.network(settings))
    text = command.render()
    assert "-e JWT_SECRET" in text and "-e DB_PASSWORD" in text
    for secret in ("jwt-very-secret", "s3cret-db-pw"):
        assert secret not in text
    assert text.endswith(' "$BACKEND_IMAGE" migrate --check\'')
    assert "--network classroom-manager-net" in text


def test_the_dump_reads_the_password_from_the_env_file_not_argv(settings):
    text = stacks.dump_database(settings, "/d", "/opt/cm/backups/x.dump").render()
    assert settings.DB_PASSWORD not in text and "-e PGPASSWORD" in text
    assert "nice -n 19 pg_dump -h postgres" in text and "umask 077" in text


def test_release_env_pins_images_and_names_the_swarm_parts(settings):
    env = stacks.release_env(settings, SHA, {"frontend": "r/f@sha256:1", "backend": "r/b@sha256:2"})
    assert env["FRONTEND_IMAGE"] == "r/f@sha256:1" and env["BACKEND_IMAGE"] == "r/b@sha256:2"
    assert env["APP_NETWORK"] == "classroom-manager-net"
    assert env["DATA_LABEL"] == "classroom-manager.data" and env["RELEASE_SHA"] == SHA
    # Swarm watches each new task as long as the compose target watches a release
    assert env["UPDATE_WINDOW"] == f"{settings.WATCH_SECONDS + 5:.0f}s"


def test_the_stable_digest_changes_with_a_value_the_stack_reads_only():
    text = "image: ${EDGE_IMAGE}\nport: ${APP_PORT:-80}\n"
    base = stacks.stable_digest(text, {"EDGE_IMAGE": "nginx:1", "APP_PORT": "80", "X": "1"})
    assert base == stacks.stable_digest(text, {"EDGE_IMAGE": "nginx:1", "APP_PORT": "80", "X": "2"})
    assert base != stacks.stable_digest(text, {"EDGE_IMAGE": "nginx:2", "APP_PORT": "80"})


def inspected(name, sha, image, replicas=2, state=None, message="", stack="cm-app"):
    spec = {"Spec": {"Name": f"{stack}_{name}", "Labels": {"deploy.release": sha},
                     "Mode": {"Replicated": {"Replicas": replicas}},
                     "TaskTemplate": {"ContainerSpec": {"Image": image}}}}
    if state:
        spec["UpdateStatus"] = {"State": state, "Message": message}
    return spec


def test_service_and_task_output_is_read():
    services = progress.parse_services(json.dumps([inspected("backend", SHA, "b@1", 2, "updating")]),
                                    "cm-app")
    assert services["backend"] == Service("backend", SHA, "b@1", 2, "updating", "")
    rows = [{"Name": "cm-app_backend.1", "Image": "b@1", "Node": "swarm-2", "DesiredState":
             "Running", "CurrentState": "Running 3 seconds ago", "Error": ""},
            {"Name": "cm-app_backend.2", "Image": "b@0", "Node": "swarm-3", "DesiredState":
             "Shutdown", "CurrentState": "Failed 1 second ago", "Error": "task: non-zero exit (3)"}]
    tasks = progress.parse_tasks("\n".join(json.dumps(r) for r in rows) + "\nnot json\n", "cm-app")
    assert [t.service for t in tasks] == ["backend", "backend"]
    assert tasks[0].running and not tasks[1].running and tasks[1].error.endswith("(3)")


STORY_BODY = '{"success": true, "data": {"status": "healthy", "timestamp": "2026-01-21T10:00:00Z"}}'


def look(services, tasks, status=200, body=STORY_BODY):
    return Look({s.name: s for s in services}, tasks, Answer("public URL", status, body))


STORY = HealthContract()


def expect(*services, contract=STORY):
    return Expected(SHA, services, contract=contract)


def running(service, image, node="swarm-1"):
    return Task(service, image, node, "Running", "Running 2 seconds ago")


def test_a_release_is_healthy_only_at_full_strength_and_with_the_public_port_agreeing():
    services = [Service("frontend", SHA, "f@1", 2, "completed"), Service("backend", SHA, "b@1", 2)]
    full = [running("frontend", "f@1"), running("frontend", "f@1", "swarm-2"),
            running("backend", "b@1"), running("backend", "b@1", "swarm-3")]
    assert judge(look(services, full), expect("frontend", "backend"))[0] == "healthy"
    # start-first: an old task still runs beside the new ones
    both = expect("frontend", "backend")
    assert judge(look(services, full + [running("backend", "b@0")]), both)[0] == "waiting"
    assert judge(look(services, full[:3]), expect("frontend", "backend"))[0] == "waiting"
    assert judge(look(services, full, status=None), expect("frontend", "backend"))[0] == "waiting"
    assert judge(look(services, full, 200, "<html>"), expect("frontend", "backend"))[0] == "waiting"
    # an app that reports its version (health_version) must report this one
    reports = HealthContract(version_at="data.version")
    old = json.dumps({"success": True, "data": {"status": "healthy", "version": OLD}})
    assert judge(look(services, full, 200, old), expect("frontend", contract=reports)) == (
        "waiting", f"public URL: serving version {OLD[:12]}, not {SHA[:12]}")
    new = old.replace(OLD, SHA)
    assert judge(look(services, full, 200, new), expect("frontend", contract=reports))[0] == "healthy"


def test_tasks_on_a_node_that_is_down_are_not_counted_and_the_node_is_named():
    out = "\n".join(json.dumps(r) for r in [
        {"Hostname": "swarm-1", "Status": "Ready", "Availability": "Active"},
        {"Hostname": "swarm-3", "Status": "Down", "Availability": "Active"}])
    assert progress.parse_down_nodes(out + "\nnot json") == ["swarm-3"]
    services = [Service("backend", SHA, "b@1", 2)]
    # swarm-3 went away: its task still says Running; Swarm starts a replacement elsewhere
    tasks = [running("backend", "b@1"), running("backend", "b@1", "swarm-3")]
    seen = look(services, tasks)
    seen.down = ["swarm-3"]
    assert judge(seen, expect("backend")) == ("waiting", f"backend: 1 of 2 tasks of {SHA[:12]} running")
    seen.tasks.append(running("backend", "b@1", "swarm-2"))
    state, reason = judge(seen, expect("backend"))
    assert state == "healthy" and "node swarm-3 is down" in reason
    assert judge(look(services, seen.tasks), expect("backend"))[0] == "waiting"   # 3 of 2


def test_swarm_giving_up_is_a_failure_with_the_tasks_error_but_an_earlier_updates_is_not():
    rolled_back = Service("backend", OLD, "b@0", 2, "rollback_completed", "rollback completed")
    failed_task = Task("backend", "b@1", "swarm-2", "Shutdown", "Failed 5 seconds ago",
                       "task: non-zero exit (3)")
    state, reason = judge(look([rolled_back], [failed_task]), expect("backend"))
    assert state == "failed" and "task: non-zero exit (3) (failed on swarm-2)" in reason
    # right after `stack deploy`, the label is ours and the status still the last update's
    stale = Service("backend", SHA, "b@1", 2, "rollback_completed")
    assert judge(look([stale], []), expect("backend"))[0] == "waiting"


def test_a_missing_service_or_an_unreadable_look_is_waiting():
    assert judge(Look(), expect("backend")) == ("waiting", "service backend does not exist (yet)")
    assert judge(Look(error="engine down"), expect("backend")) == ("waiting", "engine down")


def swarm_settings(defaults, environ):
    from staging_deploy.config.settings import load_settings
    from tests.conftest import ROOT
    return load_settings(defaults, dict(environ, DEPLOY_TARGET="swarm"), cwd=ROOT)


def test_the_dry_run_plan_of_a_swarm_deploy_shows_the_one_offs_and_the_stack_update(defaults,
                                                                                     environ):
    import io

    from staging_deploy.report import Reporter
    from staging_deploy.story.deploy import print_plan
    out = io.StringIO()
    print_plan(swarm_settings(defaults, environ), SHA, Reporter(stream=out), False, False, None,
               False)
    plan = out.getvalue()
    order = ["take the deploy lock", "--> stage stack files", "--mode global-job",
             "docker push --quiet ghcr.io/acme/classroom-manager-backend:staging-latest",
             '"$BACKEND_IMAGE" migrate-check',
             "nice -n 19 pg_dump -h postgres", '"$BACKEND_IMAGE" migrate\'',
             "docker stack deploy --with-registry-auth --resolve-image never --prune -c "
             f"/opt/classroom-manager/releases/{SHA}/stack-app.yaml classroom-manager-app",
             "--> watch 10s after the update", "--> prune",
             "--name classroom-manager-prune --mode global-job",
             "type=bind,source=/var/run/docker.sock,target=/var/run/docker.sock --entrypoint sh "
             "'docker:24-cli@sha256:<digest>' -c", "rm -f /opt/classroom-manager/deploy.lock.json"]
    positions = [plan.index(text) for text in order]
    assert positions == sorted(positions), plan
    assert "s3cret-db-pw" not in plan and "jwt-very-secret" not in plan


def test_a_failed_swarm_update_is_undone_by_deploying_the_recorded_release_again(defaults,
                                                                                 environ):
    from staging_deploy.story.plan import RUNNING, SimulatedHost
    from staging_deploy.transport.commands import Result
    from tests.unit.test_recovery import deploy_to, remote_commands

    class GivesUp(SimulatedHost):
        """Swarm gives up on the update of the new release (its task crashes)."""

        def answer(self, command):
            if self.stack_sha == SHA and command.argv[:3] == ("docker", "service", "inspect"):
                return Result(0, json.dumps([inspected(n.split("_")[-1], RUNNING, "x", 2,
                                                       "rollback_completed",
                                                       stack="classroom-manager-app")
                                             for n in command.argv[3:]]), "")
            if self.stack_sha == SHA and command.argv[:3] == ("docker", "service", "ps"):
                return Result(0, "".join(json.dumps({
                    "Name": f"{name}.1", "Image": "x", "Node": "node-2", "DesiredState":
                    "Shutdown", "CurrentState": "Failed 3 seconds ago",
                    "Error": "task: non-zero exit (3)"}) + "\n" for name in command.argv[6:]), "")
            return super().answer(command)

    settings = swarm_settings(defaults, environ)
    host = GivesUp(settings)
    plan, error = deploy_to(settings, host)
    assert "Swarm gave up on the update of frontend (rollback_completed)" in error
    deploys = [c for c in remote_commands(plan) if "docker stack deploy" in c and "-app" in c]
    assert ["UPDATE_WINDOW=2s" in c for c in deploys] == [False, True]   # the undo: 2 s a task
    assert "task: non-zero exit (3) (failed on node-2)" in error
    assert host.stack_sha == RUNNING
    end = host.ledger[-1]
    assert end["result"] == "rolled_back" and end["undone"] == [
        "deploy 5ca1ab1e5ca1 again (Swarm may have rolled back to it already)",
        "make sure 5ca1ab1e5ca1 serves, healthy (restore it if not)"]


def test_a_node_that_is_down_does_not_hold_up_the_pull_of_the_images(defaults, environ):
    from staging_deploy.story.plan import SimulatedHost
    from staging_deploy.transport.commands import Result
    from tests.unit.test_recovery import deploy_to

    class NodeDown(SimulatedHost):
        """node-3 is down: its task of each pull job stays Assigned for ever."""

        def answer(self, command):
            if command.argv[:3] == ("docker", "service", "ps") and "-pull-" in command.argv[-1]:
                return Result(0, "".join(json.dumps({
                    "Name": f"{command.argv[-1]}.{n}", "Image": "x", "Node": n, "DesiredState":
                    "Complete" if n != "node-3" else "Running", "CurrentState":
                    "Complete 1 second ago" if n != "node-3" else "Assigned 9 seconds ago",
                    "Error": ""}) + "\n" for n in ("node-1", "node-2", "node-3")), "")
            if command.argv[:3] == ("docker", "node", "ls"):
                return Result(0, json.dumps({"Hostname": "node-3", "Status": "Down"}) + "\n", "")
            return super().answer(command)

    plan, error = deploy_to(swarm_settings(defaults, environ), NodeDown(swarm_settings(
        defaults, environ)))
    assert error is None


def test_an_update_waiting_for_a_task_on_a_node_that_is_down_is_found():
    services = [Service("frontend", SHA, "f@1", 2, "updating"), Service("backend", SHA, "b@1", 2)]
    placed = Task("frontend", "f@1", "swarm-3", "Shutdown", "Assigned 20 seconds ago")
    seen = look(services, [running("frontend", "f@0"), running("frontend", "f@1", "swarm-2"),
                           placed])
    seen.down = ["swarm-3"]
    both = ["frontend", "backend"]
    assert progress.stalls(seen, SHA, both, 18) == [progress.Stall(
        "frontend", "waits for a task on node swarm-3, which is down (Swarm would wait until the "
        "node returns)", 0)]
    assert progress.stalls(seen, OLD, both, 18) == []       # not our update
    for harmless in (Task("frontend", "f@1", "swarm-3", "Running", "Running 1 minute ago"),
                     Task("frontend", "f@0", "swarm-3", "Shutdown", "Assigned 20 seconds ago"),
                     Task("frontend", "f@1", "swarm-3", "Shutdown", "Shutdown 2 seconds ago")):
        seen.tasks[-1] = harmless       # it ran there, or it is the old release's, or it ended
        assert progress.stalls(seen, SHA, ["frontend"], 18) == [], harmless
    seen.tasks[-1], seen.down = placed, []
    assert progress.stalls(seen, SHA, ["frontend"], 18) == []   # the node is up: it starts
    seen.down, services[0].update = ["swarm-3"], "completed"
    assert progress.stalls(seen, SHA, ["frontend"], 18) == []


def slot_task(slot, image, node, state="Running 2 seconds ago", desired="Running"):
    return Task("frontend", image, node, desired, state, "", slot)


def test_a_replica_running_two_tasks_of_the_release_after_a_node_went_down_counts_once():
    """What CI saw (ci11, stop 25): swarm-3 went down while the update replaced its task; Swarm
    restarted that task on swarm-2 as well, so replica 1 ran two tasks of the release, and the
    update stayed "updating" (3 of 2 tasks running) until the deadline."""
    out = "\n".join(json.dumps({"Name": f"classroom-manager-app_frontend.{slot}", "Image": "f@1",
                                "Node": node, "DesiredState": "Running",
                                "CurrentState": "Running 3 seconds ago", "Error": ""})
                    for slot, node in ((1, "swarm-2"), (1, "swarm-2"), (2, "swarm-1")))
    tasks = progress.parse_tasks(out, "classroom-manager-app")
    assert [(t.service, t.slot) for t in tasks] == [("frontend", "1"), ("frontend", "1"),
                                                   ("frontend", "2")]
    gone = slot_task("1", "f@0", "swarm-3", "Running 24 seconds ago", "Shutdown")
    service = Service("frontend", SHA, "f@1", 2, "updating")
    seen = look([service], tasks + [gone])
    seen.down = ["swarm-3"]
    assert judge(seen, expect("frontend")) == ("waiting", "frontend: update in progress")
    stall = progress.Stall("frontend", "runs two tasks for replica 1 since node swarm-3 went down, "
                                    "and is not over after 18s", 18)
    assert progress.stalls(seen, SHA, ["frontend"], 18) == [stall]
    service.update = "completed"                  # Swarm drops one later: nothing to wait for
    assert judge(seen, expect("frontend"))[0] == "healthy"
    assert progress.stalls(seen, SHA, ["frontend"], 18) == []
    # a replica with a task of the release and one of the last (start-first) is not there yet
    seen.tasks[1] = slot_task("1", "f@0", "swarm-1")
    assert judge(seen, expect("frontend"))[0] == "waiting"
    service.update = "updating"
    assert progress.stalls(seen, SHA, ["frontend"], 18) == []
    # three replicas of the release where two are asked for is not full strength either
    seen.tasks[1] = slot_task("3", "f@1", "swarm-1")
    assert judge(seen, expect("frontend")) == (
        "waiting", f"frontend: 3 of 2 tasks of {SHA[:12]} running (Swarm's update: updating)")


def test_a_stall_is_due_once_it_lasted_its_patience_without_a_break_and_only_once():
    now, hung = progress.Stall("frontend", "waits"), progress.Stall("backend", "twice", 18)
    unsticker = progress.Unsticker()
    assert unsticker.due([now, hung], 100) == [now]
    assert unsticker.due([now, hung], 110) == []
    assert unsticker.due([now], 115) == []         # backend's ended: its patience starts again
    assert unsticker.due([now, hung], 120) == []
    assert unsticker.due([now, hung], 137) == []
    assert unsticker.due([now, hung], 138) == [hung]
    assert unsticker.due([now, hung], 300) == []


def test_an_update_that_hangs_on_a_node_that_stopped_is_started_again_once(defaults, environ):
    from staging_deploy.story.plan import RUNNING, SimulatedHost
    from staging_deploy.transport.commands import Result
    from tests.unit.test_recovery import deploy_to, remote_commands

    class WorkerStops(SimulatedHost):
        """node-3 stopped while the update of frontend to SHA had placed a task on it."""
        forced = 0

        def answer(self, command):
            argv = command.argv
            if argv[:3] == ("docker", "service", "update"):
                self.forced += 1
            hanging = self.stack_sha == SHA and not self.forced
            if argv[:3] == ("docker", "node", "ls"):
                return Result(0, json.dumps({"Hostname": "node-3", "Status": "Down"}) + "\n", "")
            answer = super().answer(command)
            if hanging and argv[:3] == ("docker", "service", "inspect"):
                specs = json.loads(answer.stdout)
                specs[0]["UpdateStatus"]["State"] = "updating"          # frontend
                return Result(0, json.dumps(specs), "")
            if hanging and argv[:3] == ("docker", "service", "ps") and "-pull-" not in argv[-1]:
                return Result(0, answer.stdout + json.dumps({
                    "Name": f"{argv[6]}.1", "Image": f"<image:{argv[6]}>@{SHA}", "Node": "node-3",
                    "DesiredState": "Shutdown", "CurrentState": "Assigned 9 seconds ago",
                    "Error": ""}) + "\n", "")
            return answer

    settings = swarm_settings(defaults, environ)
    host = WorkerStops(settings)
    plan, error = deploy_to(settings, host)
    assert error is None and host.stack_sha == SHA and host.stack_sha != RUNNING
    forced = [c for c in remote_commands(plan) if c.startswith("docker service update")]
    assert forced == ["docker service update --force --detach --no-resolve-image "
                      "classroom-manager-app_frontend"]

FAKE_DOCKER = """#!/bin/sh
# A node's engine, as the prune script sees it: images labelled with this project (a kept
# release, an old one, an old one a container still uses, one that also carries another
# project's tag, and another project's image built FROM ours, which inherited our labels).
echo "$*" >> "$LOG"
B=ghcr.io/acme/classroom-manager-backend
F=ghcr.io/acme/classroom-manager-frontend
case "$*" in
  "ps -aq --filter label=deploy.project=classroom-manager --filter status=exited "*)
    echo c-old-task ;;
  "rm c-old-task") ;;
  "image ls -q --no-trunc --filter label=deploy.project=classroom-manager")
    printf 'id-kept\\nid-old\\nid-used\\nid-old\\nid-two\\nid-child\\n' ;;
  "image inspect --format {{index .Config.Labels \\"org.opencontainers.image.revision\\"}} id-kept")
    echo KEPT ;;
  "image inspect --format {{index .Config.Labels \\"org.opencontainers.image.revision\\"}} "*)
    echo OLD ;;
  "image inspect --format {{range .RepoTags}}"*" id-old") echo "$B@sha256:1 " ;;
  "image inspect --format {{range .RepoTags}}"*" id-two")
    echo "$F:staging-OLD other/app:latest $F@sha256:2 " ;;
  "image inspect --format {{range .RepoTags}}"*" id-used") echo "$B@sha256:3 " ;;
  "image inspect --format {{range .RepoTags}}"*" id-child") echo "other/child:1 " ;;
  "image inspect --format {{len .RepoTags}} id-used") echo 0 ;;
  "image inspect --format {{len .RepoTags}} id-old") exit 1 ;;     # gone with its last ref
  "image inspect --format {{len .RepoTags}} "*) echo 1 ;;          # a tag not ours is left
  "image rm $B@sha256:3") echo "conflict: in use" >&2; exit 1 ;;
  "image rm id-used") echo "conflict: in use" >&2; exit 1 ;;
  "image rm other/"*) echo "unexpected: $*" >&2; exit 9 ;;
  "image rm id-"*) echo "unexpected: $*" >&2; exit 9 ;;
  "image rm "*) ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""


def test_the_node_prune_script_removes_only_old_images_of_this_project(tmp_path, settings):
    """The script the prune job runs on each node, run by sh against a scripted engine: only
    references in our own repositories go; another project's tag of the same image, and an
    image built FROM ours (it carries our labels), are never named."""
    import os
    import subprocess
    fake = tmp_path / "docker"
    fake.write_text(FAKE_DOCKER.replace("KEPT", SHA).replace("OLD", OLD))
    fake.chmod(0o755)
    log = tmp_path / "log"
    script = stacks.node_prune_script(settings, {SHA, "c" * 40})
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                          env=dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}",
                                   LOG=str(log)))
    assert done.returncode == 0 and "unexpected" not in done.stderr, done.stderr
    removed = [line.split()[-1] for line in log.read_text().splitlines()
               if line.startswith("image rm ")]
    b, f = "ghcr.io/acme/classroom-manager-backend", "ghcr.io/acme/classroom-manager-frontend"
    assert removed == [f"{b}@sha256:1", f"{f}:staging-{OLD}", f"{f}@sha256:2",
                       f"{b}@sha256:3", "id-used"]     # id-kept: never; other/...: never
    assert "rm c-old-task" in log.read_text().splitlines()
    assert done.stdout.split("\n")[:1] == [f"removed {b}@sha256:1"]
    assert "@sha256:3" not in done.stdout and "--force" not in script and " -f " not in script


def test_images_for_another_platform_than_the_managers_are_refused_before_the_migrations(
        defaults, environ):
    from staging_deploy.story.plan import SimulatedHost
    from staging_deploy.transport.commands import Result
    from tests.unit.test_recovery import deploy_to, remote_commands

    class ArmManager(SimulatedHost):
        def answer(self, command):
            if command.argv[:2] == ("docker", "version"):
                return Result(0, "linux/arm64\n", "")
            return super().answer(command)

    settings = swarm_settings(defaults, environ)
    plan, error = deploy_to(settings, ArmManager(settings))
    assert "is built for linux/amd64, not linux/arm64, which the swarm's manager runs: set " \
           "BUILD_PLATFORM=linux/arm64" in error
    assert not any("migrate" in c or "stack deploy" in c and "-app" in c
                   for c in remote_commands(plan)), remote_commands(plan)


def test_a_task_that_failed_before_the_update_or_as_swarm_stopped_it_is_not_the_release_failing(
        settings):
    """The watch window counts a task of the release that failed on its own (a non-zero exit)
    since the update began. Not one that was there before it (a rollback to release A: a task of
    A's earlier life, ci5), nor one Swarm failed to detach from the network as it stopped it
    ("error while removing network": a task of the new release stopped by a restarted update
    while a node was down, ci7)."""
    from dataclasses import replace

    import pytest

    from staging_deploy.errors import DeployError
    from staging_deploy.story.health import Answer
    from staging_deploy.swarm.progress import Look, Service, parse_tasks
    from staging_deploy.swarm.target import SwarmTarget

    def task(task_id, error):
        (found,) = parse_tasks(
            '{"ID": "%s", "Name": "classroom-manager-app_frontend.1", "Image": "img-a", "Node": '
            '"swarm-3", "DesiredState": "Shutdown", "CurrentState": "Failed 4 seconds ago", '
            '"Error": "%s"}' % (task_id, error), "classroom-manager-app")
        return found

    class Seen(SwarmTarget):
        tasks = []

        def look(self, runner):
            look = Look()
            look.services = {"frontend": Service("frontend", "a" * 40, "img-a", 1, "completed")}
            look.tasks = self.tasks
            look.answer = Answer("public URL", 200, '{"success": true, "data": {"status": "healthy"}}',
                                 {"x-app-version": "a" * 40})
            return look

    class Clock:
        now = 0.0

        def clock(self):
            return self.now

        def sleep(self, seconds):
            self.now += seconds

    swarm = replace(settings, values=dict(settings.values, DEPLOY_TARGET="swarm", WATCH_SECONDS=1.0))
    target = Seen(swarm)
    target.tasks = [task("new1", "task: non-zero exit (1)")]
    with pytest.raises(DeployError, match=r"a task of frontend failed: task: non-zero exit \(1\)"):
        target.watch(Clock(), "a" * 40, set())          # new since the update: the release failed
    target.watch(Clock(), "a" * 40, {"new1"})           # there before the update: history
    target.tasks = [task("new2", "error while removing network: unknown network x id 3pbyrd")]
    assert target.tasks[0].error.startswith("error while removing network")
    target.watch(Clock(), "a" * 40, set())              # Swarm stopping it: not the release
