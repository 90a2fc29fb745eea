"""How actions reach a machine: one small interface, three implementations.

A transport can
- `run` a Command and return its Result (its stdin, if any, fed in one write);
- `hold` a long-running command (the deploy lock's holder): start it, read its first line, and
  keep it running until `release()` closes its stdin;
- `put` a file (mode set before any byte is written, then renamed into place);
- `stream` a command's output as it comes (on a pty, Ctrl-C reaches it);
- `get` a URL from here (the public health check);
and it has a `clock` and `sleep` (virtual in a recording, so a plan's polling loops cost nothing).

`SSHTransport` is the staging host over one pinned Fabric connection, `LocalTransport` this
machine (docker build and push, git), `Recorder` runs nothing: it writes every action into a
`Plan` and answers from a script (`--dry-run` and the unit tests). `transport.runner.Runner` is the only
caller; nothing else opens a channel or a subprocess.
"""
import codecs
import contextlib
import os
import posixpath
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Protocol, Tuple, Union

import paramiko
import requests
from fabric import Connection

from ..errors import TimedOut
from . import interrupts
from .commands import (
    HELD_MARK,
    STDIN_MARK,
    Command,
    Result,
    TextSink,
    environment_of,
    get_text,
    joined,
    put_text,
)
from .interrupts import stop_requested

# What a GET answered: (status or None, body, response headers with lower-case names).
HttpAnswer = Tuple[Optional[int], str, Dict[str, str]]


class Held:
    """A long-running command started by `Transport.hold`, whose first line has been read."""

    first_line = ""

    def release(self, wait: float = 5) -> None:
        """Close its stdin (it ends) and wait up to `wait` seconds for it."""


def temporary_name(path: str) -> str:
    """Where `put` writes a file before renaming it into place: beside it, hidden."""
    return posixpath.join(posixpath.dirname(path), "." + posixpath.basename(path) + ".tmp")


class HttpFromHere:
    """`get` for the transports that reach the network from this machine."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def get(self, url: str, headers: dict, timeout: float) -> HttpAnswer:
        """(status, body, response headers with lower-case names), or (None, "(<error kind>)",
        {}) when nothing answered."""
        try:
            response = self.session.get(url, headers=headers, timeout=timeout)
            return (response.status_code, response.text,
                    {name.lower(): value for name, value in response.headers.items()})
        except requests.RequestException as exc:
            return None, f"({type(exc).__name__})", {}


class SSHTransport(HttpFromHere):
    """The staging host, over one Fabric Connection (opened and watched by host.connect)."""

    records = False
    clock, sleep = staticmethod(time.monotonic), staticmethod(interrupts.pause)

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    @property
    def alive(self) -> bool:
        return bool(self.conn.transport and self.conn.transport.is_active())

    def run(self, command: Command, timeout: Optional[float]) -> Result:
        """Exec on a channel of its own (a few ms; Invoke's runner adds some 40 ms a command):
        stdin, if any, in one write; both outputs drained as they come, so no amount of output
        can stall the command; `timeout` bounds the whole command."""
        assert not environment_of(command), "a command's environment never leaves this machine"
        channel = self._channel()
        try:
            channel.settimeout(timeout)
            channel.exec_command(command.render())
            if command.stdin is not None:
                channel.sendall(command.stdin.encode())
            channel.shutdown_write()
            out, err = bytearray(), bytearray()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                finished = channel.status_event.wait(0.1)  # set on exit, or when the channel closes
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if finished:
                    break
                interrupts.check()                         # Ctrl-C/SIGTERM: a safe point
                if deadline is not None and time.monotonic() > deadline:
                    raise TimedOut()
            out += channel.makefile("rb").read()          # anything after the exit, up to EOF
            err += channel.makefile_stderr("rb").read()
            status = channel.recv_exit_status()
        except TimeoutError:  # socket.timeout: the host took no stdin for too long
            raise TimedOut() from None
        finally:
            channel.close()
        if status == -1:
            raise EOFError("the connection to the host closed while a command ran")
        return Result(status, out.decode(errors="replace"), err.decode(errors="replace"))

    def hold(self, command: Command, timeout: Optional[float]) -> Held:
        channel = self._channel()
        channel.settimeout(0.5)
        channel.exec_command(command.render())
        line = b""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not line.endswith(b"\n"):
                try:
                    chunk = channel.recv(64)
                except socket.timeout:                 # still waiting (for the lock, say)
                    interrupts.check()
                    if deadline is not None and time.monotonic() > deadline:
                        break
                    continue
                if not chunk:
                    break
                line += chunk
        except OSError:
            pass
        except BaseException:
            channel.close()
            raise
        channel.settimeout(timeout)
        return HeldChannel(channel, line.decode(errors="replace").strip())

    def put(self, path: str, data: bytes, mode: int) -> None:
        sftp = self.conn.sftp()
        temporary = temporary_name(path)
        with sftp.open(temporary, "w") as handle:
            handle.chmod(mode)
            handle.write(data)
        sftp.posix_rename(temporary, path)

    def stream(self, command: Command, out: TextSink, pty: bool, keys: bool) -> int:
        """With `keys` (a shell), Fabric forwards every key typed here. Otherwise the output is
        read here, a look every half second; on a pty (following logs), Ctrl-C (a flag:
        interrupts.stop_requested) ends the loop and closes the channel, whose pty then hangs the
        remote command up (SIGHUP): it ends, and this returns 0 (the user ended it, as intended).
        No key has to travel through the pty for it."""
        if keys:
            return self.conn.run(command.render(), pty=True, warn=True, hide=False,
                                 out_stream=out, err_stream=out).exited
        channel = self._channel()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            if pty:
                channel.get_pty()
            channel.set_combine_stderr(True)
            channel.exec_command(command.render())
            if command.stdin:
                channel.sendall(command.stdin.encode())
            channel.shutdown_write()
            channel.settimeout(0.5)
            with stop_requested() if pty else contextlib.nullcontext(threading.Event()) as stop:
                while not stop.is_set():
                    try:
                        chunk = channel.recv(32768)
                    except socket.timeout:     # nothing new yet
                        continue
                    if not chunk:
                        return channel.recv_exit_status()
                    out.write(decoder.decode(chunk))
            return 0                           # Ctrl-C: the user ended it
        except KeyboardInterrupt:
            if not pty:
                raise
            return 0
        finally:
            channel.close()

    def _channel(self) -> paramiko.Channel:
        return self.conn.client.get_transport().open_session()


class HeldChannel(Held):
    def __init__(self, channel: paramiko.Channel, first_line: str) -> None:
        self.channel, self.first_line = channel, first_line

    def release(self, wait: float = 5) -> None:
        try:
            self.channel.shutdown_write()
            self.channel.status_event.wait(wait)
        except Exception:  # the connection is gone: so is the held process
            pass
        finally:
            self.channel.close()


class LocalTransport(HttpFromHere):
    """This machine: bash runs each command (they may be pipelines)."""

    records = False
    alive = True
    clock, sleep = staticmethod(time.monotonic), staticmethod(interrupts.pause)

    def run(self, command: Command, timeout: Optional[float]) -> Result:
        added = dict(environment_of(command))
        process = subprocess.Popen(["bash", "-c", command.render()], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **added} if added else None)
        deadline = None if timeout is None else time.monotonic() + timeout
        given: Optional[str] = command.stdin or ""
        try:
            while True:
                try:
                    out, err = process.communicate(given, timeout=0.1)
                    return Result(process.returncode, out, err)
                except subprocess.TimeoutExpired:
                    given = None                       # sent with the first call
                interrupts.check()                     # Ctrl-C/SIGTERM: a safe point
                if deadline is not None and time.monotonic() > deadline:
                    raise TimedOut()
        finally:
            if process.returncode is None:             # interrupted or timed out: end it
                process.kill()
                process.communicate()

    def hold(self, command: Command, timeout: Optional[float]) -> Held:
        process = subprocess.Popen(["bash", "-c", command.render()], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        return HeldProcess(process, process.stdout.readline().strip())

    def put(self, path: str, data: bytes, mode: int) -> None:
        temporary = temporary_name(path)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(temporary, path)

    def stream(self, command: Command, out: TextSink, pty: bool, keys: bool) -> int:
        process = subprocess.Popen(["bash", "-c", command.render()], text=True,
                                   stdin=None if keys else subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        if process.stdin is not None:
            process.stdin.write(command.stdin or "")
            process.stdin.close()
        for line in process.stdout:
            out.write(line)
        return process.wait()


class HeldProcess(Held):
    def __init__(self, process: subprocess.Popen, first_line: str) -> None:
        self.process, self.first_line = process, first_line

    def release(self, wait: float = 5) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.process.kill()


@dataclass
class Action:
    """One recorded action: `[label] text`, and whether its exact arguments came from what the
    (scripted) host answered rather than from the settings and the sha."""
    label: str
    text: str
    depends: bool = False


@dataclass
class Plan:
    """What a recording did, in order: actions and the steps they ran under."""
    actions: List[Union[Action, str]] = field(default_factory=list)   # or a step title
    now: float = 0.0                                        # the virtual clock

    def step(self, title: str) -> None:
        self.actions.append(title)


class Script:
    """How a Recorder's (imaginary) machine answers: success and no output, unless told."""

    placeholders = ("<",)   # an argument containing one came from an answer (see Action.depends)

    def answer(self, command: Command) -> Result:
        return Result(0, "", "")

    def put(self, path: str, data: bytes) -> None:
        pass

    def get(self, url: str) -> HttpAnswer:
        return 200, "", {}


class Recorder:
    """Runs nothing: records each action in `plan` and answers from `script`."""

    records = True
    alive = True

    def __init__(self, plan: Plan, label: str, script: Optional[Script] = None):
        self.plan, self.label, self.script = plan, label, script or Script()

    def clock(self) -> float:
        return self.plan.now

    def sleep(self, seconds: float) -> None:
        self.plan.now += max(0.0, seconds)

    def _record(self, text: str, label: str = "") -> None:
        depends = any(mark in text for mark in self.script.placeholders)
        self.plan.actions.append(Action(label or self.label, text, depends))

    def run(self, command: Command, timeout: Optional[float]) -> Result:
        self._record(command.render() + (STDIN_MARK if command.stdin is not None else ""))
        if command.parts:
            return joined(command, [self.script.answer(part) for part in command.parts])
        return self.script.answer(command)

    def hold(self, command: Command, timeout: Optional[float]) -> Held:
        self._record(command.render() + HELD_MARK)
        held = Held()
        held.first_line = self.script.answer(command).stdout.strip()
        return held

    def put(self, path: str, data: bytes, mode: int) -> None:
        self._record(put_text(path, len(data), mode))
        self.script.put(path, data)

    def stream(self, command: Command, out: TextSink, pty: bool, keys: bool) -> int:
        self._record(command.render())
        return self.script.answer(command).exited

    def get(self, url: str, headers: dict, timeout: float) -> HttpAnswer:
        self._record(get_text(url), label="local")
        return self.script.get(url)


class Transport(Protocol):
    """What `transport.runner.Runner` needs of a transport (SSHTransport, LocalTransport, Recorder)."""

    @property
    def records(self) -> bool: ...       # True: nothing runs, actions are written to a plan
    @property
    def alive(self) -> bool: ...         # False once the connection dropped

    def clock(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    def run(self, command: Command, timeout: Optional[float]) -> Result: ...
    def hold(self, command: Command, timeout: Optional[float]) -> Held: ...
    def put(self, path: str, data: bytes, mode: int) -> None: ...
    def stream(self, command: Command, out: TextSink, pty: bool, keys: bool) -> int: ...
    def get(self, url: str, headers: dict, timeout: float) -> HttpAnswer: ...
