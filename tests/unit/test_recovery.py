"""The recovery, driven through the recorder: the real deploy and rollback code against the
simulated host (plan.py), with a scripted failure at every remote command in turn.

Whatever fails, and wherever: users are served by the previous release or the new one (never
by nothing), nothing of a failed release keeps running, every ledger start has its end with the
truthful result, and the lock is released."""
import io
import re

import pytest

from staging_deploy.compose.edge import live_conf, routes_conf
from staging_deploy.compose.target import ComposeTarget
from staging_deploy.config.declared import Route
from staging_deploy.errors import DeployError
from staging_deploy.report import Reporter, Summary
from staging_deploy.story.deploy import deploy
from staging_deploy.story.plan import RUNNING, PlannedSession, PlanReporter, SimulatedHost
from staging_deploy.story.rollback import rollback_on_host
from staging_deploy.transport.commands import Result
from staging_deploy.transport.machines import Action, Plan, Recorder
from staging_deploy.transport.runner import Runner
from tests.conftest import ROOT

SHA = "a" * 40
OLDER = "b" * 40


class FailingHost(SimulatedHost):
    """The simulated host, except that remote command number `fail_at` (or the first that
    matches the regular expression `fail_on`) exits 1."""

    def __init__(self, settings, fail_at: int, ledger=None, fail_on: str = None):
        super().__init__(settings, ledger)
        self.fail_at, self.count, self.failed, self.fail_on = fail_at, 0, None, fail_on

    def answer(self, command):
        self.count += 1
        if self.count == self.fail_at or (self.fail_on and not self.failed
                                          and re.search(self.fail_on, command.render())):
            self.failed = command.render()
            return Result(1, "", "scripted failure")
        return super().answer(command)

    def serving(self):
        """The release users get: that of the live slot, if its app containers run."""
        sha = self.slots.get(self.live or "")
        ids = {f"<container:{s.name}-{self.live}>" for s in self.settings.services}
        return sha if sha and not ids & self.stopped else None

    def running(self, sha):
        return [slot for slot, held in self.slots.items() if held == sha and not
                {f"<container:{s.name}-{slot}>" for s in self.settings.services} & self.stopped]


def run_deploy(settings, fail_at: int):
    host = FailingHost(settings, fail_at)
    plan, error = deploy_to(settings, host)
    return host, plan, error


def deploy_to(settings, host):
    """deploy() against `host` (a Script); returns the plan it recorded and its error, if any."""
    plan = Plan()
    reporter = PlanReporter(plan)
    local = Runner(Recorder(plan, "local", SimulatedHost(settings)), "local")
    summary = Summary("deploy", SHA)
    try:
        deploy(settings, SHA, reporter, local, lambda: PlannedSession(settings, reporter, plan, host),
               summary, rebuild=False, force=False, wait_lock=None)
        error = None
    except DeployError as exc:
        error = str(exc)
    return plan, error


def remote_commands(plan):
    return [a.text for a in plan.actions if isinstance(a, Action) and a.label == "remote"]


def ends_match_starts(ledger):
    starts = [e["id"] for e in ledger if e["event"] == "start"]
    ends = {e["id"]: e["result"] for e in ledger if e["event"] == "end"}
    return starts, ends


def deploy_length(settings):
    host, _, error = run_deploy(settings, fail_at=0)
    assert error is None
    return host.count


def test_a_clean_deploy_through_the_simulated_host_succeeds(settings):
    host, plan, error = run_deploy(settings, fail_at=0)
    assert error is None and host.serving() == SHA and host.running(RUNNING) == []
    assert [e.get("result") for e in host.ledger] == [None, "succeeded"]
    assert remote_commands(plan)[-1] == "rm -f /opt/classroom-manager/deploy.lock.json"


def test_a_failure_at_any_remote_command_leaves_staging_serving(settings):
    length = deploy_length(settings)
    assert length > 80
    for fail_at in range(1, length + 1):
        check_deploy_failing_at(settings, fail_at)


def check_deploy_failing_at(settings, fail_at):
    host, plan, error = run_deploy(settings, fail_at)
    served = host.serving()
    assert served in (SHA, RUNNING), (host.failed, error)
    starts, ends = ends_match_starts(host.ledger)
    if error is None:      # a failure the deploy may shrug off (a poll looks again, prune warns)
        assert served == SHA, host.failed
        recorded = not host.failed or not host.failed.startswith("tee -a")  # only warns
        assert ends == ({starts[0]: "succeeded"} if recorded else {}), host.failed
    else:
        assert served == RUNNING, (host.failed, error)
        assert host.running(SHA) == [], (host.failed, "the failed release still runs")
        if starts:         # it got as far as recording the deploy: the end says what happened
            assert ends == {starts[0]: "rolled_back"}, (host.failed, ends)
            assert "rolled back to" in error or "kept serving" in error, error
        else:              # refused before it changed anything
            assert host.ledger == [] and host.running(RUNNING) == ["green"]
    commands = remote_commands(plan)
    if any(c.startswith("tee /opt/classroom-manager/deploy.lock.json") for c in commands):
        assert commands[-1] == "rm -f /opt/classroom-manager/deploy.lock.json", host.failed


def ledger_with_two_good_releases():
    return [{"event": "start", "id": "1", "action": "deploy", "sha": OLDER, "by": "t",
             "started": "2026-01-01T00:00:00Z"},
            {"event": "end", "id": "1", "result": "succeeded", "ended": "2026-01-01T00:01:00Z"},
            {"event": "start", "id": "2", "action": "deploy", "sha": RUNNING, "by": "t",
             "started": "2026-01-02T00:00:00Z"},
            {"event": "end", "id": "2", "result": "succeeded", "ended": "2026-01-02T00:01:00Z"}]


def run_rollback(settings, fail_at: int):
    plan = Plan()
    host = FailingHost(settings, fail_at, ledger_with_two_good_releases())
    runner = Runner(Recorder(plan, "remote", host), "remote")
    summary = Summary("rollback", "?")
    try:
        rollback_on_host(ComposeTarget(settings), runner, PlanReporter(plan), summary, None, False, True,
                         input)
        error = None
    except DeployError as exc:
        error = str(exc)
    return host, error


def test_a_clean_rollback_restores_the_release_before(settings):
    host, error = run_rollback(settings, fail_at=0)
    assert error is None and host.serving() == OLDER and host.running(RUNNING) == []
    assert host.ledger[-1]["result"] == "succeeded"


def test_a_failed_rollback_says_so_loudly_and_users_are_still_served(settings):
    length = run_rollback(settings, fail_at=0)[0].count
    assert length > 40
    for fail_at in range(1, length + 1):
        check_rollback_failing_at(settings, fail_at)


def check_rollback_failing_at(settings, fail_at):
    host, error = run_rollback(settings, fail_at)
    assert host.serving() in (OLDER, RUNNING), (host.failed, error)
    starts, ends = ends_match_starts(host.ledger)
    new = [s for s in starts if s not in ("1", "2")]
    if error is None:
        recorded = not host.failed or not host.failed.startswith("tee -a")  # only warns
        assert host.serving() == OLDER, host.failed
        assert ends.get(new[0]) == ("succeeded" if recorded else None), host.failed
    elif new:
        assert ends[new[0]] == "failed" and error.startswith("ROLLBACK TO"), (host.failed, error)
        if "serves again, as before the rollback" in error:   # its steps were undone
            assert host.serving() == RUNNING and host.running(OLDER) == [], (host.failed, error)
        else:                                                  # the undo itself failed
            assert "Staging may be down" in error and "inv deploy.rollback --to" in error
    else:
        assert host.serving() == RUNNING, (host.failed, error)


def simulated_deploy_staging(settings, mocker, host, sha=SHA, **flags):
    """deploy_staging itself (summary, exit), its host and this machine replaced by the recorder."""
    from staging_deploy.story.deploy import deploy_staging
    plan, out = Plan(), io.StringIO()
    mocker.patch("staging_deploy.story.deploy.HostSession",
                 lambda s, r: PlannedSession(s, r, plan, host))
    mocker.patch("staging_deploy.story.deploy.LocalTransport",
                 lambda: Recorder(plan, "local", SimulatedHost(settings)))
    try:
        deploy_staging(settings, sha, Reporter(stream=out), **flags)
        error = None
    except DeployError as exc:
        error = str(exc)
    return out.getvalue(), error, plan


def test_the_summary_says_what_happened(settings, mocker):
    out, error, _ = simulated_deploy_staging(settings, mocker, SimulatedHost(settings))
    assert error is None and f"deploy SUCCEEDED: {SHA}" in out
    assert "watch     10s after the switch: ok" in out
    host = FailingHost(settings, fail_at=0, fail_on="pull --quiet")
    out, error, _ = simulated_deploy_staging(settings, mocker, host)
    assert f"deploy FAILED: {SHA}" in out and "kept serving (the failed release never" in error


def test_a_release_already_in_the_registry_is_not_built_again(settings, mocker):
    class Published(SimulatedHost):
        def answer(self, command):
            if command.argv[:3] == ("docker", "manifest", "inspect"):
                return Result(0, "{}", "")
            return super().answer(command)

    plan = Plan()
    mocker.patch("staging_deploy.story.deploy.HostSession",
                 lambda s, r: PlannedSession(s, r, plan, SimulatedHost(settings)))
    mocker.patch("staging_deploy.story.deploy.LocalTransport",
                 lambda: Recorder(plan, "local", Published(settings)))
    from staging_deploy.story.deploy import deploy_staging
    deploy_staging(settings, SHA, Reporter(stream=io.StringIO()))
    local = [a.text for a in plan.actions if isinstance(a, Action) and a.label == "local"]
    assert not any("docker build" in c for c in local)
    assert any(c.startswith("docker pull --quiet") and SHA in c for c in local)


def test_a_release_in_the_registry_for_another_platform_is_built_again(settings, mocker):
    """A laptop of another CPU pushed staging-<sha> (arm64): CI's deploy of the same sha must
    not skip the build and ship it to an amd64 server."""
    class FromAMac(SimulatedHost):
        def answer(self, command):
            if command.argv[:3] == ("docker", "manifest", "inspect"):
                return Result(0, "{}", "")
            if "{{.Os}}/{{.Architecture}}" in command.argv:
                return Result(0, "linux/arm64\n" * len(command.argv[5:]), "")
            return super().answer(command)

    plan = Plan()
    mocker.patch("staging_deploy.story.deploy.HostSession",
                 lambda s, r: PlannedSession(s, r, plan, SimulatedHost(settings)))
    mocker.patch("staging_deploy.story.deploy.LocalTransport",
                 lambda: Recorder(plan, "local", FromAMac(settings)))
    from staging_deploy.story.deploy import deploy_staging
    out = io.StringIO()
    deploy_staging(settings, SHA, Reporter(stream=out))
    local = [a.text for a in plan.actions if isinstance(a, Action) and a.label == "local"]
    builds = [c for c in local if "docker build" in c]
    assert len(builds) == 2 and all("--platform linux/amd64" in c for c in builds)


def test_an_image_the_host_cannot_run_is_refused_before_anything_changes(settings):
    """The host's engine says linux/arm64; the pulled images are linux/amd64 (BUILD_PLATFORM
    left at its default): one line naming both and the fix, before the stable services, the
    dump or the migrations, and the running release untouched."""
    class ArmServer(SimulatedHost):
        def answer(self, command):
            if command.argv[:2] == ("docker", "version"):
                return Result(0, "linux/arm64\n", "")
            return super().answer(command)

    plan, error = deploy_to(settings, ArmServer(settings))
    assert error.startswith(
        "frontend (ghcr.io/acme/classroom-manager-frontend:staging-" + SHA + ") is built for "
        "linux/amd64, not linux/arm64, which the host runs: set BUILD_PLATFORM=linux/arm64 "
        "(invoke.yaml platform) and deploy again with --rebuild; 5ca1ab1e5ca1 kept serving")
    after = remote_commands(plan)[[i for i, c in enumerate(remote_commands(plan))
                                   if c.startswith("docker version")][0]:]
    assert not any("pg_dump" in c or " up " in c or "migrate" in c for c in after), after


def test_an_older_sha_is_refused_before_anything_changes(settings, mocker):
    class Ancestor(SimulatedHost):
        def answer(self, command):
            if command.argv[:2] == ("git", "merge-base"):
                return Result(0, "", "")
            return super().answer(command)

    plan = Plan()
    host = SimulatedHost(settings)
    mocker.patch("staging_deploy.story.deploy.HostSession", lambda s, r: PlannedSession(s, r, plan, host))
    mocker.patch("staging_deploy.story.deploy.LocalTransport",
                 lambda: Recorder(plan, "local", Ancestor(settings)))
    from staging_deploy.story.deploy import deploy_staging
    with pytest.raises(DeployError, match="is older than the running"):
        deploy_staging(settings, SHA, Reporter(stream=io.StringIO()))
    assert host.ledger == [] and host.slots == {"green": RUNNING}


class OldCompose(FailingHost):
    """Compose 2.19: its .env parser reads a value ending in a backslash differently."""

    def answer(self, command):
        if command.argv[:3] == ("docker", "compose", "version"):
            return Result(0, "v2.19.1\n", "")
        return super().answer(command)


COMPOSE_TOO_OLD = ("Docker Compose 2.19.1 on the host is older than 2.20.0, whose .env parser "
                   "this tool writes for")


def test_a_compose_older_than_the_env_writer_targets_is_refused_before_anything_changes(
        settings):
    """Issue 29: the deploy and the rollback, in one line naming both versions; nothing
    recorded, nothing run but reads."""
    host = OldCompose(settings, 0)
    plan, error = deploy_to(settings, host)
    assert error.startswith(COMPOSE_TOO_OLD), error
    assert host.ledger == [] and host.slots == {"green": RUNNING}
    assert not any(" up " in c or "tee -a" in c or "pg_dump" in c for c in remote_commands(plan)), \
        remote_commands(plan)

    host = OldCompose(settings, 0, ledger_with_two_good_releases())
    with pytest.raises(DeployError, match=re.escape(COMPOSE_TOO_OLD)):
        rollback_on_host(ComposeTarget(settings), Runner(Recorder(Plan(), "remote", host), "remote"),
                         PlanReporter(Plan()), Summary("rollback", "?"), None, False, True, input)
    assert len(host.ledger) == 4 and host.slots == {"green": RUNNING}


def test_a_rollback_with_restore_db_needs_a_dump_and_a_yes(settings):
    host = FailingHost(settings, 0, ledger_with_two_good_releases())
    runner = Runner(Recorder(Plan(), "remote", host), "remote")
    with pytest.raises(DeployError, match="no database dump is recorded"):
        rollback_on_host(ComposeTarget(settings), runner, PlanReporter(Plan()),
                         Summary("rollback", "?"), None,
                         True, True, input)
    dumped = ledger_with_two_good_releases()
    dumped[1]["backup"] = "/opt/classroom-manager/backups/b.dump"
    host = FailingHost(settings, 0, dumped)
    runner = Runner(Recorder(Plan(), "remote", host), "remote")
    with pytest.raises(DeployError, match="not confirmed; nothing was changed"):
        rollback_on_host(ComposeTarget(settings), runner, PlanReporter(Plan()),
                         Summary("rollback", "?"), None,
                         True, False, lambda question: "no")
    assert host.serving() == RUNNING
    summary = Summary("rollback", "?")
    rollback_on_host(ComposeTarget(settings), runner, PlanReporter(Plan()), summary, None, True, False,
                     lambda question: "yes")
    assert host.serving() == OLDER and "database restored from" in summary.notes[0]


def test_the_stable_services_are_pulled_and_brought_up_only_when_they_changed(settings):
    class FirstTime(SimulatedHost):
        def answer(self, command):
            if command.argv[:2] == ("cat", "/opt/classroom-manager/stable.digest"):
                return Result(1, "", "cat: No such file or directory")
            return super().answer(command)

    for host, changed in ((SimulatedHost(settings), False), (FirstTime(settings), True)):
        plan, error = deploy_to(settings, host)
        ran = remote_commands(plan)
        assert error is None
        # the edge re-reads its config after the `up` (its routes may have changed)
        stable_up = any("up -d --wait edge postgres redis && docker exec "
                        "classroom-manager-edge-1" in c for c in ran)
        stable_pull = any(c.startswith("docker compose -p classroom-manager -f") and
                          c.endswith("pull --quiet") for c in ran)
        recorded = any(c.startswith("sftp put /opt/classroom-manager/stable.digest") for c in ran)
        assert stable_up == stable_pull == recorded == changed


def test_a_release_brings_its_own_routes_to_its_slot_and_the_live_one_keeps_its_own(settings):
    """Routes belong to a release: a routes change reaches users with the release it came with."""
    plan, error = deploy_to(settings, SimulatedHost(settings))
    ran = remote_commands(plan)
    assert error is None
    kept, slot_routes = (f"/opt/classroom-manager/releases/{SHA}/routes.conf",
                         "/opt/classroom-manager/edge/routes-blue.conf")
    put = next(i for i, c in enumerate(ran) if c.startswith(f"sftp put {kept} "))
    copied = ran.index(f"cp -- {kept} {slot_routes}")
    started = next(i for i, c in enumerate(ran) if "classroom-manager-blue" in c and " up -d" in c)
    assert put < copied < started and "nginx -s reload" in ran[started]
    assert not any("routes-green" in c for c in ran)          # the live slot's stay as they are


def test_a_live_release_from_before_routes_keeps_its_one_entry_route(settings):
    class BeforeRoutes(SimulatedHost):
        def answer(self, command):
            if command.argv == ("cat", "/opt/classroom-manager/edge/live.conf") and \
                    self.live == "green":
                return Result(0, "set $app web-green:3000;\n", "")
            return super().answer(command)

    plan, error = deploy_to(settings, BeforeRoutes(settings))
    ran = remote_commands(plan)
    assert error is None
    first_put = [c for c in ran if c.startswith("sftp put /opt/classroom-manager/edge/")][:3]
    one_route = routes_conf([Route("/", "web", 3000)])        # everything to web, as before
    assert first_put == ["sftp put /opt/classroom-manager/edge/routes-green.conf (mode 0644, "
                         f"{len(one_route)} bytes)",
                         "sftp put /opt/classroom-manager/edge/live.conf (mode 0644, "
                         f"{len(live_conf('green'))} bytes)",
                         "sftp put /opt/classroom-manager/edge/nginx.conf (mode 0644, "
                         f"{len((ROOT / 'fabfile/files/edge/nginx.conf').read_bytes())} bytes)"]


# ---- recovery as data: the exact undo of each step (fabfile/story/undo.py) ----------------------------

MAKE_SURE = "make sure 5ca1ab1e5ca1 serves, healthy (restore it if not)"
SWITCH = "^docker exec classroom-manager-edge-1 sh -c 'nginx -t"   # the reload that switches
REMOVE_BLUE = "remove slot blue"
SWITCH_BACK = "switch the edge back to 5ca1ab1e5ca1 in slot green"
MIGRATIONS = ("the migrations of aaaaaaaaaaaa (forward-only; `inv deploy.rollback --restore-db` "
              "loads the dump taken before them)")


@pytest.mark.parametrize("fails, undone, kept, said", [
    ("pull --quiet", [MAKE_SURE], [], "kept serving"),
    ("pg_dump", [MAKE_SURE], [], "kept serving"),
    ("backend migrate$", [MAKE_SURE], [MIGRATIONS], "kept serving"),
    (f"blue -f /opt/classroom-manager/releases/{SHA}/app.yaml .* up -d", [REMOVE_BLUE, MAKE_SURE],
     [MIGRATIONS], "kept serving"),
    # the edge cannot take the new slot's routes (after its `up`): it never got traffic
    ("up -d --remove-orphans && docker exec classroom-manager-edge-1 sh -c 'nginx -t",
     [REMOVE_BLUE, MAKE_SURE], [MIGRATIONS], "kept serving"),
    (SWITCH, [SWITCH_BACK, REMOVE_BLUE, MAKE_SURE], [MIGRATIONS], "rolled back to"),
])
def test_a_failed_deploy_undoes_the_steps_that_ran_last_first(settings, fails, undone, kept, said):
    host = FailingHost(settings, 0, fail_on=fails)
    plan, error = deploy_to(settings, host)
    assert host.failed and said in error, (host.failed, error)
    end = host.ledger[-1]
    assert (end["result"], end.get("undone", []), end.get("kept", [])) == \
        ("rolled_back", undone, kept)
    assert [a for a in plan.actions if isinstance(a, str) and a.startswith("undo: ")] == \
        ["undo: " + u for u in undone]
    assert host.serving() == RUNNING and host.running(SHA) == []


@pytest.mark.parametrize("fails, undone", [
    (f"blue -f /opt/classroom-manager/releases/{OLDER}/app.yaml .* up -d", ["remove slot blue"]),
    (SWITCH, [SWITCH_BACK, "remove slot blue"]),
])
def test_a_failed_rollback_undoes_its_steps_and_what_ran_serves_again(settings, fails, undone):
    host = FailingHost(settings, 0, ledger_with_two_good_releases(), fail_on=fails)
    runner = Runner(Recorder(Plan(), "remote", host), "remote")
    with pytest.raises(DeployError, match="serves again, as before the rollback"):
        rollback_on_host(ComposeTarget(settings), runner, PlanReporter(Plan()),
                         Summary("rollback", "?"), None,
                         False, True, input)
    end = host.ledger[-1]
    assert (end["result"], end.get("undone", [])) == ("failed", undone), host.failed
    assert host.serving() == RUNNING and host.running(OLDER) == []


def test_staging_latest_is_pushed_beside_the_host_work_and_a_failure_only_warns(settings):
    import threading

    from staging_deploy.story.deploy import LatestMove

    class SlowLocal:
        """A local runner whose pushes wait until the test lets them go, then fail."""
        dry_run = False

        def __init__(self):
            self.release, self.ran = threading.Event(), []

        def run(self, command, what=""):
            self.ran.append(command.render())
            assert self.release.wait(5)
            raise DeployError("docker push failed\nunauthorized: authentication required")

    local = SlowLocal()
    move = LatestMove(settings, SHA, local)
    move.start()                                        # returns while the push still runs
    assert not local.release.is_set() and move.thread.is_alive()
    local.release.set()
    out = io.StringIO()
    move.finish(Reporter(stream=out))
    assert local.ran == [f"docker tag {settings.image_ref(s.name, SHA)} "
                         f"{settings.image_repo(s.name)}:staging-latest && docker push --quiet "
                         f"{settings.image_repo(s.name)}:staging-latest"
                         for s in settings.services][:1]
    assert "warning: staging-latest was not moved (unauthorized: authentication required)" in out.getvalue()
