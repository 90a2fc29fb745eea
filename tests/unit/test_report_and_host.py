import io
import threading
import time

import paramiko
import pytest

from staging_deploy.errors import ConfigError
from staging_deploy.report import Reporter, Summary
from staging_deploy.transport.known_hosts import host_key_name, pinned_host_keys
from staging_deploy.transport.session import watch_liveness

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_reporter_redacts_every_secret():
    out = io.StringIO()
    reporter = Reporter(["hunter2", "tok"], stream=out)
    reporter.say("password hunter2 and tok in one line")
    assert out.getvalue() == "password *** and *** in one line\n"


def test_secrets_of_every_reporter_are_redacted_from_final_errors():
    from staging_deploy.report import redact
    Reporter(["final-secret"], stream=io.StringIO())
    assert redact("error: login failed for final-secret") == "error: login failed for ***"


def test_step_reports_start_end_and_failure():
    out = io.StringIO()
    ticks = iter(range(100))
    reporter = Reporter([], stream=out, clock=lambda: next(ticks))
    with reporter.step("pull"):
        pass
    with pytest.raises(RuntimeError):
        with reporter.step("up"):
            raise RuntimeError
    text = out.getvalue()
    assert "--> pull" in text and " ok pull" in text and "!!! up FAILED" in text


def test_summary_goes_to_the_ci_job_summary_redacted(tmp_path):
    out, path = io.StringIO(), tmp_path / "summary.md"
    summary = Summary("deploy", "e" * 40, result="failed", cause="boom with s3cret",
                      images={"backend": "r/b:staging-x@sha256:1"}, duration=12.34)
    summary.publish(Reporter(["s3cret"], stream=out), {"GITHUB_STEP_SUMMARY": str(path)})
    markdown = path.read_text()
    assert "deploy failed" in markdown and "`r/b:staging-x@sha256:1`" in markdown
    assert "s3cret" not in markdown + out.getvalue()
    assert "duration  12.3s" in out.getvalue()


def test_log_lines_cannot_break_out_of_the_job_summary():
    logs = 'ok\n```\n# Injected heading\n````\n| fake | row |'
    markdown = Summary("deploy", "e" * 40, result="failed", cause="line one\nline | two",
                       logs=logs).markdown()
    fence = "`````"                               # longer than the longest run in the logs
    assert f"\n{fence}\n{logs}\n{fence}\n</details>" in markdown
    assert "| cause | line one line / two |" in markdown


def test_the_ledger_stores_causes_with_secrets_masked():
    from staging_deploy.story.ledger import ReleaseLedger, end_event

    class Place:
        STAGING_DIR = "/opt/app"
    Reporter(["ledger-s3cret"], stream=io.StringIO())     # every task's reporter registers them
    event = end_event("id1", "rolled_back", cause="docker login failed: ledger-s3cret rejected",
                      images={"backend": "x"})
    stored = ReleaseLedger(Place()).append(event).stdin
    assert "ledger-s3cret" not in stored and "docker login failed: *** rejected" in stored


def test_known_hosts_for_a_non_standard_port_uses_brackets():
    assert host_key_name("10.0.0.5", 22) == "10.0.0.5"
    assert host_key_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    keys = pinned_host_keys(f"[127.0.0.1]:2222 {KEY}\n", "127.0.0.1", 2222)
    assert isinstance(keys.lookup("[127.0.0.1]:2222")["ssh-ed25519"], paramiko.PKey)


def test_pin_for_another_port_is_refused_with_the_fix():
    with pytest.raises(ConfigError, match=r"ssh-keyscan -p 2222 127.0.0.1"):
        pinned_host_keys(f"127.0.0.1 {KEY}", "127.0.0.1", 2222)


def test_garbage_pin_is_refused():
    with pytest.raises(ConfigError, match="not a known_hosts entry"):
        pinned_host_keys("hello world", "h", 22)


class FakeTransport:
    """Answers liveness requests until `frozen` is set; then, like a frozen host, never."""

    def __init__(self):
        self.active = True
        self.frozen = threading.Event()
        self.asked = 0
        self.closed = threading.Event()

    def is_active(self):
        return self.active

    def global_request(self, kind, wait):
        assert kind == "keepalive@openssh.com" and wait
        self.asked += 1
        if self.frozen.is_set():
            self.closed.wait()
        return None  # OpenSSH answers "failure": still an answer

    def close(self):
        self.active = False
        self.closed.set()


def test_liveness_watch_keeps_an_answering_connection_and_closes_a_silent_one():
    transport = FakeTransport()
    watcher = watch_liveness(transport, interval=0.01, deadline=0.2)
    deadline = time.monotonic() + 5
    while transport.asked < 3:
        assert watcher.is_alive() and time.monotonic() < deadline
    assert transport.active
    transport.frozen.set()
    assert transport.closed.wait(5), "a connection whose server stopped answering was not closed"
    watcher.join(5)
    assert not watcher.is_alive()


def test_liveness_watch_ends_with_the_connection():
    transport = FakeTransport()
    watcher = watch_liveness(transport, interval=0.01, deadline=5)
    transport.active = False
    watcher.join(5)
    assert not watcher.is_alive() and not transport.closed.is_set()


def test_a_reconnect_keeps_the_runner_and_moves_it_to_the_new_connection(settings, mocker):
    """The recovery's undo steps hold the session's Runner from before a drop (a reboot): after
    the reconnect that same Runner must run on the new connection, not the dead one."""
    from staging_deploy.transport.session import HostSession
    connections = [mocker.Mock(name="first"), mocker.Mock(name="second")]
    mocker.patch("staging_deploy.transport.session.connect", side_effect=connections)
    session = HostSession(settings, mocker.Mock())
    session._open()
    runner = session.runner
    session.reconnect(within=1)
    assert session.runner is runner and runner.transport.conn is connections[1]
