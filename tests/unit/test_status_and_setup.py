"""`deploy.status`, `deploy.history` and `staging.setup` against scripted hosts (the recorder)."""
import io
import json

import pytest

from staging_deploy.errors import DeployError
from staging_deploy.ops.provision import setup_host
from staging_deploy.ops.status import history, read_status, render_history, render_status
from staging_deploy.report import Reporter
from staging_deploy.story.plan import RUNNING, SimulatedHost
from staging_deploy.transport.commands import Result
from staging_deploy.transport.machines import Plan, Recorder, Script
from staging_deploy.transport.runner import Runner


def recorded(script):
    plan = Plan()
    return Runner(Recorder(plan, "remote", script), "remote"), plan


class CrashingHost(SimulatedHost):
    """The live backend has restarted twice; a rollback holds the lock."""

    def answer(self, command):
        result = super().answer(command)
        if command.argv[:2] == ("docker", "inspect"):
            items = json.loads(result.stdout)
            for item in items:
                if item["Id"] == "<container:backend-green>":
                    item["RestartCount"] = 2
            return Result(0, json.dumps(items), "")
        if command.argv[:2] == ("stat", "-c"):       # the lock file: device 8:1, inode 77
            return Result(0, "2049 77\n", "")
        if command.argv == ("cat", "/proc/locks"):     # held by pid 42, looked at, not taken
            return Result(0, "1: FLOCK  ADVISORY  WRITE 42 08:01:77 0 EOF\n", "")
        assert command.argv[0] != "flock", "status must not take the lock, even for an instant"
        if command.argv[:2] == ("cat", "/opt/classroom-manager/deploy.lock.json"):
            return Result(0, json.dumps({"action": "rollback", "sha": "c" * 40, "by": "ana@laptop",
                                         "since_epoch": 0, "pid": 42}), "")
        return result


LEDGER = [{"event": "start", "id": "1", "action": "deploy", "sha": "d" * 40, "by": "ci",
           "started": "2026-11-01T10:00:00Z"},
          {"event": "end", "id": "1", "result": "rolled_back", "duration": 31.2,
           "cause": "backend exited\nmore", "rolled_back_to": RUNNING, "backup": "/x/b.dump"},
          {"event": "start", "id": "2", "action": "rollback", "sha": "e" * 40, "by": "ana",
           "started": "2026-11-02T10:00:00Z"}]


def test_status_reports_a_crashing_live_release_and_who_holds_the_lock(settings):
    runner, _ = recorded(CrashingHost(settings, LEDGER))
    status = read_status(runner, settings)
    assert status["sha"] == RUNNING and status["slot"] == "green" and not status["healthy"]
    assert "backend restarted 2 time(s) since it went live (crashing)" in status["reason"]
    assert status["lock"]["held"] and "rollback of cccccccccccc by ana@laptop" in \
        status["lock"]["description"]
    text = render_status(status)
    assert "NOT HEALTHY" in text and "restarts=2" in text
    assert "last      rollback of eeeeeeeeeeee: UNFINISHED" in text


def test_status_of_a_healthy_host_with_a_free_lock(settings):
    runner, _ = recorded(SimulatedHost(settings))
    status = read_status(runner, settings)
    assert status["healthy"] and status["lock"] == {"held": False, "holder": {},
                                                    "description": "free"}
    assert status["last"] is None


def test_history_is_newest_first_with_its_details(settings):
    runner, _ = recorded(SimulatedHost(settings, LEDGER))
    rows = history(runner, settings, 5)
    assert [r["id"] for r in rows] == ["2", "1"]
    text = render_history(rows)
    assert "UNFINISHED" in text.splitlines()[1]
    assert "rolled back to 5ca1ab1e5ca1; backend exited; backup b.dump" in text
    assert "31s" in text
    assert render_history([]) == "no releases recorded yet"


class FreshDebian(Script):
    """A Debian server with sudo and nothing else: no Docker, no deploy user."""

    def __init__(self, docker=False, sudo=True, os_id="debian"):
        self.docker, self.sudo, self.os_id = docker, sudo, os_id
        self.user = False

    def answer(self, command):
        argv = command.argv
        if argv[:3] == ("sudo", "-n", "true"):
            return Result(0 if self.sudo else 1, "", "")
        if argv == ("cat", "/etc/os-release"):
            return Result(0, f"ID={self.os_id}\n", "")
        if "command -v dockerd" in command.render():
            return Result(0, "/usr/sbin/dockerd\n" if self.docker else "", "")
        if "install" in argv and "docker.io" in argv:
            self.docker = True
        if argv[:2] == ("id", "--"):
            return Result(0 if self.user else 1, "", "")
        if "useradd" in argv:
            self.user = True
        if argv[:2] == ("getent", "passwd"):
            return Result(0, "deploy:x:1000:1000::/home/deploy:/bin/bash\n", "")
        if argv == ("cat", "/etc/ssh/ssh_host_ed25519_key.pub"):
            return Result(0, "ssh-ed25519 AAAAhostkey root@host\n", "")
        return Result(0, "", "")


def setup(settings, script):
    runner, plan = recorded(script)
    line = setup_host(settings, runner, Reporter(stream=io.StringIO()))
    return line, [a.text for a in plan.actions]


def test_setup_installs_docker_creates_the_user_and_returns_the_pin(settings, mocker):
    mocker.patch("staging_deploy.ops.provision.deploy_public_key", return_value="ssh-ed25519 AAAA deploy\n")
    line, ran = setup(settings, FreshDebian())
    assert line == "staging.example.com ssh-ed25519 AAAAhostkey"
    assert any("apt-get install" in c and "docker.io" in c for c in ran)
    assert "sudo -n useradd --create-home --shell /bin/bash -- deploy" in ran
    assert "sudo -n install -d -m 0700 -o deploy -g deploy -- /opt/classroom-manager" in ran
    assert "sudo -n tee /home/deploy/.ssh/authorized_keys <<< (stdin)" in ran


def test_setup_is_idempotent_on_a_ready_host(settings, mocker):
    mocker.patch("staging_deploy.ops.provision.deploy_public_key", return_value="ssh-ed25519 AAAA deploy\n")
    script = FreshDebian(docker=True)
    script.user = True
    _, ran = setup(settings, script)
    assert not any("apt-get" in c or "useradd" in c for c in ran)


def test_setup_leaves_an_authorized_key_in_place_unless_sshd_would_refuse_it(settings, mocker):
    mocker.patch("staging_deploy.ops.provision.deploy_public_key", return_value="ssh-ed25519 AAAA deploy\n")

    class KeyThere(FreshDebian):
        def __init__(self, owner_mode):
            super().__init__(docker=True)
            self.user, self.owner_mode = True, owner_mode

        def answer(self, command):
            if command.argv[:3] == ("sudo", "-n", "cat"):
                return Result(0, "ssh-rsa BBBB other\nssh-ed25519 AAAA deploy@staging\n", "")
            if command.argv[:3] == ("sudo", "-n", "stat"):
                return Result(0, self.owner_mode + "\n", "")
            return super().answer(command)

    for owner_mode, rewritten in (("root 644", False), ("deploy 600", False),
                                  ("deploy 664", True), ("nobody 600", True)):
        _, ran = setup(settings, KeyThere(owner_mode))
        assert any("tee /home/deploy/.ssh/authorized_keys" in c for c in ran) == rewritten, owner_mode


def test_setup_refuses_a_compose_older_than_the_env_writer_targets(settings, mocker):
    """Issue 29: a Compose that answers `docker compose version` is not enough."""
    mocker.patch("staging_deploy.ops.provision.deploy_public_key", return_value="ssh-ed25519 AAAA deploy\n")

    class OldCompose(FreshDebian):
        def answer(self, command):
            if command.argv[:3] == ("docker", "compose", "version"):
                return Result(0, "2.19.1\n", "")
            return super().answer(command)

    with pytest.raises(DeployError) as refused:
        setup(settings, OldCompose(docker=True))
    assert str(refused.value).startswith("Docker Compose 2.19.1 on the host is older than 2.20.0")


def test_setup_refuses_a_password_sudo_and_other_systems(settings):
    for script, expected in ((FreshDebian(sudo=False), "sudo asks for a password"),
                             (FreshDebian(os_id="alpine"), "Debian and Ubuntu hosts only")):
        try:
            setup(settings, script)
        except DeployError as exc:
            assert expected in str(exc)
        else:
            raise AssertionError("setup went on")


class SwarmManager(FreshDebian):
    """A server with Docker in no swarm yet, whose `docker node ls` lists `nodes` once it is."""

    def __init__(self, nodes):
        super().__init__(docker=True)
        self.nodes = nodes

    def answer(self, command):
        text = command.render()
        if "LocalNodeState" in text:
            return Result(0, "inactive false\n", "")
        if "node ls --format" in text and "{{json .}}" in text:
            return Result(0, "".join(json.dumps({"Hostname": name, "Status": status}) + "\n"
                                     for name, status in self.nodes.items()), "")
        return super().answer(command)


def swarm_setup(defaults, environ, nodes, wanted=()):
    from staging_deploy.config.settings import load_settings
    from staging_deploy.ops.provision import setup_swarm
    from tests.conftest import ROOT
    settings = load_settings(defaults, dict(environ, DEPLOY_TARGET="swarm"), cwd=ROOT)
    out = io.StringIO()
    runner, plan = recorded(SwarmManager(nodes))
    try:
        setup_swarm(settings, runner, Reporter(stream=out), wanted)
        error = None
    except DeployError as exc:
        error = str(exc)
    return [a.text for a in plan.actions], out.getvalue(), error


def test_setup_of_a_swarm_makes_a_manager_labels_data_and_lists_the_nodes(defaults, environ):
    ran, out, error = swarm_setup(defaults, environ, {"s1": "Ready", "s2": "Ready"}, ["s2"])
    assert error is None
    assert "sudo -n docker swarm init" in ran
    assert any("--label-add classroom-manager.data=true" in c for c in ran)
    assert "s1 Ready, s2 Ready" in out and "one node Ready" not in out
    ran, out, error = swarm_setup(defaults, environ, {"s1": "Ready"})
    assert error is None and "one node Ready: every replica runs on it" in out


def test_setup_of_a_swarm_names_each_node_missing_or_down_and_how_to_fix_it(defaults, environ):
    _, out, error = swarm_setup(defaults, environ, {"s1": "Ready", "s2": "Down"},
                                ["s2", "s3", "s1"])
    assert error == ("not in the swarm: s3 (on each, run what `docker swarm join-token worker` "
                     "prints on the manager); not Ready: s2 (Down) (start its Docker engine, or "
                     "`docker node rm` a server that is gone)")
    assert "s1 Ready, s2 Down" in out


class LongLedger(Script):
    """A ledger of `deploys` deploys (one in 50 with a dump), the newest last; `tail -n` and
    `cat` answered as the host would."""

    def __init__(self, deploys):
        from staging_deploy.story.ledger import end_event
        self.lines = []
        for n in range(deploys):
            start = {"event": "start", "id": f"id{n}", "action": "deploy", "sha": f"{n:040x}",
                     "by": "ci", "started": "2026-01-01T00:00:00Z"}
            end = end_event(f"id{n}", "succeeded" if n % 3 else "rolled_back",
                            backup=f"/b/{n:040x}.dump" if n % 50 == 7 else None)
            self.lines += [json.dumps(start) + "\n", json.dumps(end) + "\n"]
        self.reads = []

    def answer(self, command):
        if command.argv[0] == "tail":
            self.reads.append("tail")
            return Result(0, "".join(self.lines[-int(command.argv[2]):]), "")
        if command.argv[0] == "cat" and command.argv[-1].endswith("ledger.jsonl"):
            self.reads.append("all")
            return Result(0, "".join(self.lines), "")
        return Result(0, "", "")


def test_a_year_of_deploys_costs_a_read_of_the_ledgers_tail_unless_a_caller_needs_older(
        settings):
    """20,000 deploys: status, history and the deploy's own reads take the newest events only;
    a caller that needs more than the tail holds (here: the 2,000 most recent entries have no
    dump, or more history is asked for) reads the whole file, so no guarantee is lost."""
    from staging_deploy.story.ledger import TAIL_LINES, latest_backup, read_entries
    host = LongLedger(20000)
    runner, _ = recorded(host)
    entries = read_entries(runner, settings)
    assert host.reads == ["tail"] and len(entries) == TAIL_LINES // 2
    assert entries[-1].sha == f"{19999:040x}" and entries[-1].result == "succeeded"
    assert len(history(runner, settings, 20)) == 20 and host.reads[-1] == "tail"
    assert len(history(runner, settings, 5000)) == 5000 and host.reads[-2:] == ["tail", "all"]
    # no dump in the tail: --restore-db and prune read the whole ledger, and find it
    host = LongLedger(20000)
    host.lines = [line.replace('"backup"', '"old"') if i > 20000 else line
                  for i, line in enumerate(host.lines)]
    runner, _ = recorded(host)
    found = read_entries(runner, settings, lambda e: latest_backup(e) is not None)
    assert host.reads == ["tail", "all"] and latest_backup(found) == f"/b/{9957:040x}.dump"
    # a short ledger is read whole by its tail: nothing more to read
    host = LongLedger(30)
    runner, _ = recorded(host)
    assert len(read_entries(runner, settings, lambda e: False)) == 30 and host.reads == ["tail"]


class Disk(Script):
    """A host with `free` bytes on every filesystem, holding the images named in `present`, and
    a newest dump of `dump` bytes."""

    def __init__(self, free, present=(), dump=None):
        self.free, self.present, self.dump = free, set(present), dump

    def answer(self, command):
        argv = command.argv
        if argv[:2] == ("df", "-P"):
            return Result(0, "Filesystem 1-blocks Used Available Capacity Mounted on\n"
                             f"/dev/vda 99999999999 1 {self.free} 1% /\n", "")
        if argv[:2] == ("docker", "info"):
            return Result(0, "/var/lib/docker\n", "")
        if argv[:3] == ("docker", "image", "inspect"):
            return Result(0 if argv[-1] in self.present else 1, "x", "")
        if "find" in command.render() and self.dump is not None:
            return Result(0, f"1767225600.0 {self.dump}\n", "")
        return Result(0, "", "")


def test_a_pull_or_a_dump_the_disk_cannot_take_is_refused_with_the_figures(settings):
    from staging_deploy.story import disk
    mb = disk.MB
    refs = {"frontend": "r/f:staging-1", "backend": "r/b:staging-1"}
    sizes = {"frontend": 300 * mb, "backend": 500 * mb}
    reporter = Reporter(stream=io.StringIO())
    runner, _ = recorded(Disk(free=1500 * mb))               # 800 MB + 1024 MB margin > 1500
    with pytest.raises(DeployError) as refused:
        disk.check_images(runner, settings, refs, sizes, reporter)
    assert str(refused.value) == (
        "not enough disk space on the host: /var/lib/docker has 1,500 MB free, but the "
        "release's images take up to 800 MB and DISK_MARGIN keeps 1,024 MB free; free some "
        "(`docker system df` shows what Docker holds) or lower DISK_MARGIN")
    runner, _ = recorded(Disk(free=1500 * mb, present={"r/b:staging-1"}))   # only frontend
    disk.check_images(runner, settings, refs, sizes, reporter)
    runner, _ = recorded(Disk(free=1500 * mb, dump=600 * mb))
    with pytest.raises(DeployError, match="/opt/classroom-manager has 1,500 MB free, but a "
                                          "dump the size of the last one takes 600 MB"):
        disk.check_dump(runner, settings)
    runner, _ = recorded(Disk(free=1500 * mb))                # no dump yet: the margin only
    disk.check_dump(runner, settings)
