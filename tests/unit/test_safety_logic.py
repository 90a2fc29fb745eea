"""Decisions behind failure safety, without a host: ledger, prune, lock, settle window."""
import json
import os
from unittest import mock

import pytest

from staging_deploy.story import ledger, prune
from staging_deploy.story.health import FAILED, HEALTHY, Answer, Expected, Probe, wait_until_healthy
from staging_deploy.story.lock import acquire_command, describe_holder, file_identity, holder_pids, is_stale
from tests.conftest import FakeClock

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)


def events(*pairs):
    lines = []
    for i, (sha, result) in enumerate(pairs):
        start = ledger.start_event("deploy", sha, None, "tester")
        start["id"] = f"id{i}"
        lines.append(json.dumps(start))
        if result:
            lines.append(json.dumps(ledger.end_event(f"id{i}", result, 1.0)))
    return "\n".join(lines)


def test_ledger_merges_start_and_end_and_finds_unfinished():
    entries = ledger.merge(events((A, "succeeded"), (B, "rolled_back"), (C, None)))
    assert [(e.sha, e.result) for e in entries] == [(A, "succeeded"), (B, "rolled_back"), (C, None)]
    assert [e.sha for e in ledger.unfinished(entries)] == [C]


def test_ledger_skips_garbage_lines():
    assert len(ledger.merge("not json\n" + events((A, "succeeded")))) == 1


def test_ledger_lines_of_the_wrong_shape_are_skipped_never_trusted():
    """What the host holds is read, not trusted (issue 29): a sha that is a path, a start line
    missing its fields, a line that is JSON but no event, a rollback target that is no sha."""
    good = json.loads(events((A, "succeeded")).splitlines()[0])
    hostile = [dict(good, id="p", sha="../../../home/deploy/x"), {"event": "start", "id": "q"},
               dict(good, id="r", previous="$(touch x)"), ["a", "list"], "a string", 42,
               dict(good, id="s", sha=None), dict(good, id="t", action=7)]
    lines = [json.dumps(item) for item in hostile]
    lines.append(json.dumps({"event": "end", "id": "id0", "result": "succeeded",
                             "rolled_back_to": "../x"}))
    entries = ledger.merge("\n".join(lines) + "\n" + events((A, "succeeded")))
    assert [(e.id, e.sha, e.result) for e in entries] == [("id0", A, "succeeded")]
    assert entries.skipped == len(lines)       # counted, and deploy.status says so
    # the end of a release whose start is older than the tail read is no unreadable line
    assert ledger.merge(events((A, "succeeded")).splitlines()[1]).skipped == 0
    from staging_deploy.ops.status import render_status
    status = {"sha": A, "healthy": True, "reason": "ok", "url": "https://s.example", "containers":
              [], "lock": {"description": "free"}, "last": None, "ledger_skipped": 10}
    assert "ledger    10 line(s) not of the shape this tool writes were skipped" in \
        render_status(status)


def test_a_revision_label_that_is_no_sha_names_no_release():
    from staging_deploy.compose.commands import parse_inspect
    rows = parse_inspect(json.dumps([{"Id": "c1", "Config": {"Labels": {
        "com.docker.compose.service": "backend", "com.docker.compose.project": "p-blue",
        "org.opencontainers.image.revision": "HEAD; touch x"}}, "State": {}}]))
    assert rows[0]["Revision"] == ""


def test_rollback_choice_is_the_last_good_release_before_the_current():
    entries = ledger.merge(events((A, "succeeded"), (B, "succeeded"), (C, "rolled_back")))
    assert ledger.rollback_choice(entries, current=B) == A
    assert ledger.rollback_choice(entries, current=A) == B
    assert ledger.rollback_choice(ledger.merge(events((A, "succeeded"))), current=A) is None


def test_the_backup_to_restore_is_the_one_before_the_last_schema_change():
    """Releases without migrations take no dump: the newest dump still holds."""
    text = events((A, "succeeded"), (B, "succeeded"), (C, "succeeded"))
    assert ledger.latest_backup(ledger.merge(text)) is None
    text += "\n" + json.dumps(ledger.end_event("id1", "succeeded", backup="/x/b.dump"))
    assert ledger.latest_backup(ledger.merge(text)) == "/x/b.dump"   # C took none


def image(repo, tag, image_id):
    return {"Repository": repo, "Tag": tag, "ID": image_id}


def test_prune_keeps_running_rollback_and_retained_releases_only():
    rows = [image("r/app-backend", f"staging-{A}", "id-a"), image("r/app-backend", f"release-{A}", "id-a"),
            image("r/app-backend", f"staging-{B}", "id-b"), image("r/app-backend", "rollback", "id-b"),
            image("r/app-backend", f"staging-{C}", "id-c"), image("r/app-backend", f"staging-{D}", "id-d"),
            image("r/app-backend", f"release-{C}", "id-c"),
            # untagged: one of ours whose tag moved on (by id); then three that carry our label
            # but are not ours: another project's tag of the same image, an image built FROM
            # ours, a tag someone put in our repository
            image("<none>", "<none>", "id-old"), image("other/app", "latest", "id-c"),
            image("other/child", f"staging-{C}", "id-child"), image("r/app-backend", "debug", "id-c")]
    remove = prune.choose_images(rows, keep_shas=[A], keep_ids=["id-d"], repos={"r/app-backend"})
    assert remove == ["id-old", f"r/app-backend:release-{C}", f"r/app-backend:staging-{B}",
                      f"r/app-backend:staging-{C}"]


def test_prune_never_runs_an_unfiltered_prune(settings):
    text = prune.project_images(settings).render()
    assert "prune" not in text and "label=" in text
    assert "--force" not in prune.remove_images(["x"]).argv


def test_prune_removes_only_stopped_containers_of_the_rows_given():
    rows = [{"Id": "a", "State": "running"}, {"Id": "b", "State": "exited"},
            {"Id": "c", "State": "created"}, {"Id": "d", "State": "restarting"}]
    assert prune.stopped(rows) == ["b", "c"]


def test_prune_removes_only_files_named_for_releases_not_kept():
    names = [A, B, f"{A}-20260101T000000Z.dump", f"{C}-20260101T000000Z.dump", "notes.txt", ".."]
    assert prune.choose_files(names, [A]) == [B, f"{C}-20260101T000000Z.dump"]
    # the dump --restore-db would use stays, however old its release
    assert prune.choose_files(names, [A], {f"{C}-20260101T000000Z.dump"}) == [B]


def test_lock_commands_and_holder_description():
    assert acquire_command("/d/deploy.lock", None).render().startswith(
        "flock --nonblock --conflict-exit-code 75 /d/deploy.lock sh -c")
    assert "--timeout 30" in acquire_command("/d/deploy.lock", 30).render()
    info = {"action": "deploy", "sha": A, "by": "ci", "since_epoch": 100, "pid": 7}
    assert describe_holder(info, now=160) == f"deploy of {A[:12]} by ci, 60s ago (host pid 7)"
    assert is_stale(info, now=2000, max_age=1800) and not is_stale(info, now=1000, max_age=1800)
    assert not is_stale({}, now=10 ** 9, max_age=1)


def test_lock_holder_is_found_in_proc_locks_by_device_and_inode():
    identity = file_identity(f"{os.makedev(0xfe, 0)} 1884171\n")
    assert identity == "fe:00:1884171"
    text = ("1: OFDLCK ADVISORY  READ -1 00:36:5 0 EOF\n"
            "3: FLOCK  ADVISORY  WRITE 812 fe:00:1884171 0 EOF\n"
            "4: FLOCK  ADVISORY  WRITE 9 fe:00:18841710 0 EOF\n"
            "5: FLOCK  ADVISORY  WRITE 77 00:32:1884171 0 EOF\n")   # same inode, other filesystem
    assert holder_pids(text, identity) == [812]
    assert file_identity(f"{os.makedev(0, 50)} 5") == "00:32:5"
    assert file_identity("") is None   # no lock file yet: nothing to end


APP = Expected(A, ["frontend", "backend"])


def running(restarts=0, state="running"):
    rows = [{"Id": n, "Service": n, "State": state if n == "backend" else "running",
             "Health": "healthy", "RestartCount": restarts if n == "backend" else 0}
            for n in ("frontend", "backend")]
    body = json.dumps({"success": True, "data": {"status": "healthy"}})
    return Probe(rows, [Answer("host", 200, body), Answer("public URL", 200, body)])


def test_release_must_stay_healthy_for_the_settle_window():
    clock = FakeClock()
    probes = iter([running(), running(), running(restarts=1)])
    outcome = wait_until_healthy(lambda: next(probes), APP, timeout=30,
                                 settle=5, clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED and "restarted" in outcome.verdict.reason


def test_healthy_through_the_settle_window_succeeds():
    clock = FakeClock()
    outcome = wait_until_healthy(running, APP, timeout=30, settle=3,
                                 clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY and clock.now == 3


def test_restarts_from_before_the_switch_do_not_count():
    clock = FakeClock()
    outcome = wait_until_healthy(lambda: running(restarts=2), APP, timeout=30,
                                 restarts_before={"backend": 2}, clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY


class ScriptedRunner:
    """Answers each command by the first matching word in `exits` (default 0); records them."""
    dry_run = False

    def __init__(self, exits):
        from staging_deploy.transport.commands import Result
        self.exits, self.ran, self.Result = exits, [], Result

    def run(self, command, what="", check=True, timeout=None):
        self.ran.append(command.render())
        code = next((c for word, c in self.exits.items() if word in command.render()), 0)
        return self.Result(code, "", "")


def test_the_dump_and_the_migrate_run_happen_only_when_the_release_has_migrations(settings):
    """Through the whole deploy against the simulated host (plan.py)."""
    import io
    from dataclasses import replace

    from staging_deploy.report import Reporter
    from staging_deploy.story.deploy import print_plan
    from staging_deploy.story.plan import SimulatedHost
    from staging_deploy.transport.commands import Result

    def plan(check_exit=None, config=settings, database=True):
        class Host(SimulatedHost):
            def answer(self, command):
                if check_exit is not None and command.argv[-1] == "migrate-check":
                    return Result(check_exit, "", "")
                if not database and "status=running" in command.argv:
                    return Result(0, "", "")
                return super().answer(command)

        out = io.StringIO()
        with mock.patch("staging_deploy.story.plan.SimulatedHost", Host):
            print_plan(config, A, Reporter(stream=out), False, False, None, False)
        text = out.getvalue()
        return "pg_dump" in text, " backend migrate\n" in text + "\n", text

    dump, migrate, text = plan(check_exit=0)
    assert not dump and not migrate and "migrate-check" in text
    dump, migrate, text = plan(check_exit=1)
    assert dump and migrate and "(it has migrations to apply)" in text
    dump, migrate, text = plan(config=replace(settings, migrate_check_command=()))
    assert dump and migrate and "migrate-check" not in text and "before every release" in text
    # no migration step (an entrypoint that migrates as the release starts): still a dump first
    dump, migrate, text = plan(config=replace(settings, migrate_check_command=(), migrate_command=()))
    assert dump and not migrate and "run migrations" not in text
    assert text.index("pg_dump") < text.index("start " + A[:12])
    dump, migrate, text = plan(database=False)                   # first deploy
    assert not dump and migrate and "migrate-check" not in text


def test_a_container_gone_between_listing_and_inspecting_does_not_fail_the_read(settings):
    """A one-off container (`deploy.exec`'s `run --rm`) may end between `docker ps` and `docker
    inspect`: inspect then exits 1 naming it, and what it printed of the others holds. Any other
    failure of inspect still fails the read."""
    from staging_deploy.compose.running import containers
    from staging_deploy.errors import RemoteCommandError
    from staging_deploy.transport.commands import Result
    listing = ("c1 classroom-manager\nc2 classroom-manager-blue\n")
    found = [{"Id": "c1", "Config": {"Labels": {"com.docker.compose.service": "postgres",
                                                 "com.docker.compose.project": "classroom-manager"}},
              "State": {"Status": "running"}}]

    class Host:
        def __init__(self, stderr):
            self.stderr = stderr

        def run(self, command, what="", check=True, timeout=None):
            assert command.argv[:2] == ("docker", "inspect")
            result = Result(1, json.dumps(found), self.stderr)
            if check:   # as the real Runner does
                raise RemoteCommandError(what or "docker", result.tail())
            return result

    rows = containers(Host("Error: No such object: c2\n"), settings, listing)
    assert [r["Id"] for r in rows] == ["c1"]
    with pytest.raises(RemoteCommandError, match="docker inspect failed"):
        containers(Host("Cannot connect to the Docker daemon\n"), settings, listing)
