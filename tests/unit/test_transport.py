"""The transports behind transport.runner.Runner: this machine for real, and the recorder."""
import io
import os
import stat
import time

import pytest

from staging_deploy.errors import ConnectionLost, RemoteCommandError
from staging_deploy.transport.commands import Result, cmd, pipe
from staging_deploy.transport.machines import Action, LocalTransport, Plan, Recorder
from staging_deploy.transport.runner import Runner


@pytest.fixture
def local():
    return Runner(LocalTransport(), "local", timeout=10)


def test_local_commands_run_with_their_stdin_and_pipelines(local):
    assert local.run(cmd("cat", stdin="secret input\n")).stdout == "secret input\n"
    assert local.run(pipe(cmd("printf", "a\\nb\\n"), cmd("wc", "-l"))).stdout.strip() == "2"
    failed = local.run(pipe(cmd("false"), cmd("cat")), check=False)
    assert failed.exited != 0            # pipefail: a failing first part fails the pipeline


def test_a_batch_runs_every_part_in_one_call_and_gives_each_its_own_result(local):
    parts = [cmd("printf", "no newline at the end"), cmd("ls", "/no/such/folder"),
             cmd("printf", "it's\\n--part-end 7\\n"), cmd("true")]
    results = local.run_all(parts, "four reads")
    assert [r.exited for r in results] == [0, 2, 0, 0]
    assert results[0].stdout == "no newline at the end"
    assert "/no/such/folder" in results[1].stderr and results[0].stderr == ""
    assert results[2].stdout == "it's\n--part-end 7\n"     # a look-alike line is output
    plan = Plan()
    recorded = Runner(Recorder(plan, "remote"), "remote").run_all(parts, "four reads")
    assert recorded == [Result(0, "", "")] * 4 and len(plan.actions) == 1


def test_a_failing_command_names_what_failed_with_its_output(local):
    with pytest.raises(RemoteCommandError, match="listing the moon failed:\nno moon"):
        local.run(cmd("sh", "-c", "echo no moon >&2; exit 3"), "listing the moon")


def test_a_command_past_its_limit_is_an_error_not_a_hang(local):
    with pytest.raises(RemoteCommandError, match="timed out after 1s"):
        local.run(cmd("sleep", "5"), "sleeping", timeout=1)


def test_put_sets_the_mode_before_writing_and_replaces_atomically(local, tmp_path):
    path = str(tmp_path / "env")
    local.put(path, "A=1\n", 0o600)
    local.put(path, "A=2\n", 0o600)
    assert open(path).read() == "A=2\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["env"]


def test_hold_keeps_a_command_running_until_released(local, tmp_path):
    marker = tmp_path / "ended"
    held = local.hold(cmd("sh", "-c", f"echo locked $$; cat >/dev/null; touch {marker}"))
    assert held.first_line.startswith("locked ") and not marker.exists()
    held.release()
    assert marker.exists()


def test_stream_writes_output_as_it_comes_and_returns_the_exit_code(local):
    out = io.StringIO()
    assert local.stream(cmd("sh", "-c", "echo one; echo two >&2; exit 4"), out) == 4
    assert out.getvalue() == "one\ntwo\n"


def test_a_dropped_connection_is_never_silently_reopened():
    class Dropped(LocalTransport):
        alive = False

    with pytest.raises(ConnectionLost, match="before: docker"):
        Runner(Dropped(), "remote").run(cmd("docker", "ps"))


def test_the_recorder_runs_nothing_and_keeps_time_virtual(tmp_path):
    plan = Plan()
    runner = Runner(Recorder(plan, "remote"), "remote")
    runner.run(cmd("rm", "-rf", str(tmp_path)))
    runner.put("/srv/x/.env", "A=1\n")
    runner.sleep(30)
    assert tmp_path.exists() and runner.clock() == 30 and runner.dry_run
    assert plan.actions == [Action("remote", f"rm -rf {tmp_path}"),
                            Action("remote", "sftp put /srv/x/.env (mode 0600, 4 bytes)")]
    assert runner.get("https://x.example/health") == (200, "", {})
    assert plan.actions[-1] == Action("local", "GET https://x.example/health (from here)")


def test_a_plan_shows_a_repeated_look_once_with_its_count():
    from staging_deploy.story.plan import fold_repeats
    lines = ["--> check", "ps", "curl", "ps", "curl", "ps", "curl", "--> switch", "put", "put"]
    assert fold_repeats(lines) == ["--> check", "ps", "curl", "(the 2 lines above again, 2 more times)",
                                   "--> switch", "put", "(the 1 line above again, 1 more time)"]


class Finalizer:
    """Sends this process SIGINT from inside its finalizer and stays there a moment, so the
    signal handler runs while a __del__ runs (as paramiko's Channel.__del__ may, at any time)."""

    def __del__(self):
        import os
        import signal
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            pass


class FollowedChannel:
    """A channel whose remote `logs --follow` prints a line per recv, for ever (200 here)."""

    def __init__(self):
        self.recvs, self.closed = 0, False

    def recv(self, size):
        self.recvs += 1
        if self.recvs == 3:
            Finalizer()                 # collected at once: Ctrl-C arrives inside its __del__
        return b"a line\n" if self.recvs < 200 else b""

    def recv_exit_status(self):
        return 9

    def close(self):
        self.closed = True

    def __getattr__(self, name):        # get_pty, exec_command, settimeout, ...
        return lambda *args: None


def test_ctrl_c_ends_a_follow_even_when_it_lands_in_a_finalizer():
    """Python drops an exception a signal handler raises inside a finalizer: a KeyboardInterrupt
    there never reached the loop, and `deploy.logs --follow` printed on after Ctrl-C (CI, stop
    25). Ctrl-C sets a flag the loop checks instead: it ends, 0, the channel closed."""
    import io
    import signal

    from staging_deploy.transport.commands import cmd
    from staging_deploy.transport.machines import SSHTransport
    transport = SSHTransport.__new__(SSHTransport)
    channel = FollowedChannel()
    transport._channel = lambda: channel
    before = signal.getsignal(signal.SIGINT)
    out = io.StringIO()
    assert transport.stream(cmd("docker", "compose", "logs", "--follow"), out, pty=True,
                            keys=False) == 0
    assert channel.recvs < 10 and channel.closed and out.getvalue().startswith("a line\n")
    assert signal.getsignal(signal.SIGINT) is before


def test_a_signal_during_a_deploy_is_raised_at_a_safe_point_never_inside_the_handler():
    """Inside interruptible(), SIGTERM is recorded, not raised where it lands (inside paramiko
    holding a lock, a SIGTERMed deploy hung in its own undo: ci18, stop 26): a command that
    runs ends within a tenth of a second, killed; the next safe point raises Interrupted once;
    inside shielded() (a rollback) nothing is raised."""
    import signal
    import threading

    from staging_deploy.transport import interrupts
    later = lambda: threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()  # noqa
    with interrupts.interruptible():
        later()
        began = time.monotonic()
        with pytest.raises(interrupts.Interrupted, match="SIGTERM"):
            LocalTransport().run(cmd("sleep", "30"), timeout=None)
        assert time.monotonic() - began < 3
        interrupts.check()                                   # raised once, not again
        later()
        began = time.monotonic()
        with pytest.raises(interrupts.Interrupted):
            interrupts.pause(30)                             # a polling loop's pause ends too
        assert time.monotonic() - began < 3
        with interrupts.shielded(lambda text: None):
            os.kill(os.getpid(), signal.SIGTERM)
            interrupts.pause(0.2)
            interrupts.check()                               # a rollback is never stopped
        os.kill(os.getpid(), signal.SIGTERM)                 # recorded: the handler raises nothing
        with pytest.raises(interrupts.Interrupted):
            Runner(LocalTransport(), "local").run(cmd("true"))
    interrupts.check()                                       # outside: nothing pending
