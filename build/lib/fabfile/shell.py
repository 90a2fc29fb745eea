"""Commands as data, and the one thin place that runs them (locally or on the host).

Builders elsewhere return `Command` values; nothing there executes. `Runner` executes a
Command through an Invoke Context (local) or a Fabric Connection (remote): both share the
same `run()` signature. Secret input travels on stdin only, never in argv.
"""
import codecs
import os
import shlex
import socket
import subprocess
import time
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from invoke.exceptions import CommandTimedOut

from .errors import ConnectionLost, RemoteCommandError

# DEPLOY_TRACE=1 prints every command run, with its duration and exit code.
TRACE = os.environ.get("DEPLOY_TRACE") == "1"


@dataclass(frozen=True)
class Command:
    argv: Tuple[str, ...]
    stdin: Optional[str] = None           # fed on standard input; never printed or logged
    upstream: Optional["Command"] = None  # its stdout is piped into this command
    output_file: Optional[str] = None     # stdout goes to this file (on the side that runs it)
    input_file: Optional[str] = None      # stdin comes from this file

    def render(self) -> str:
        """Shell text: argv quoted with shlex; a pipeline fails if any part fails."""
        text = shlex.join(self.argv)
        if self.input_file:
            text += " < " + shlex.quote(self.input_file)
        if self.output_file:
            text += " > " + shlex.quote(self.output_file)
        if self.upstream is None:
            return text
        return "set -o pipefail; " + self.upstream.render().replace("set -o pipefail; ", "") + " | " + text

    def __str__(self) -> str:
        return self.render()


def cmd(*argv, stdin: Optional[str] = None) -> Command:
    return Command(tuple(str(a) for a in argv), stdin=stdin)


def pipe(first: Command, second: Command) -> Command:
    return replace(second, upstream=first)


def to_file(command: Command, path: str) -> Command:
    return replace(command, output_file=path)


def from_file(command: Command, path: str) -> Command:
    return replace(command, input_file=path)


@dataclass
class Result:
    exited: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exited == 0

    def tail(self, lines: int = 15) -> str:
        text = (self.stdout.rstrip() + "\n" + self.stderr.rstrip()).strip()
        return "\n".join(text.splitlines()[-lines:])


class Runner:
    """Runs Commands on `target` (invoke Context or fabric Connection), or prints them in dry-run."""

    def __init__(self, target, label: str, dry_run: bool = False, echo=print,
                 timeout: Optional[float] = None):
        self.target = target
        self.label = label
        self.dry_run = dry_run
        self.echo = echo
        self.timeout = timeout

    def run(self, command: Command, what: str = "", check: bool = True,
            timeout: Optional[float] = None) -> Result:
        if self.dry_run:
            self.echo(f"[{self.label}] {command.render()}" + (" <<< (stdin)" if command.stdin else ""))
            return Result(0, "", "")
        if not getattr(self.target, "is_connected", True):
            # Fabric would quietly open a new connection; a deploy must notice the drop instead.
            raise ConnectionLost(f"lost the SSH connection to the host (before: {what or command.argv[0]})")
        limit = timeout or self.timeout
        began = time.monotonic()
        try:
            if command.stdin is not None:
                result = self._run_with_input(command, limit)
            else:
                raw = self.target.run(command.render(), hide=True, warn=True, pty=False,
                                      in_stream=False, timeout=limit)
                result = Result(raw.exited, raw.stdout, raw.stderr)
        except (CommandTimedOut, socket.timeout, subprocess.TimeoutExpired):
            raise RemoteCommandError(what or f"{self.label}: {command.argv[0]}",
                                     f"timed out after {limit:.0f}s") from None
        if TRACE:
            self.echo(f"[{self.label} {time.monotonic() - began:.2f}s exit {result.exited}] "
                      f"{command.render()}")
        if check and not result.ok:
            raise RemoteCommandError(what or f"{self.label}: {command.argv[0]}", result.tail())
        return result

    def stream(self, command: Command, out, pty: bool = False, keys: bool = False) -> int:
        """Run `command` on the host with its output (stdout and stderr) written to `out` as it
        comes; returns its exit code. On a `pty`, Ctrl-C reaches the remote command and ends it
        (and, with `keys`, every key typed here is forwarded: a shell). Without one,
        `command.stdin`, if any, is its whole input."""
        if self.dry_run:
            self.echo(f"[{self.label}] {command.render()}")
            return 0
        if pty:
            result = self.target.run(command.render(), pty=True, warn=True, hide=False,
                                     in_stream=None if keys else False,
                                     out_stream=out, err_stream=out)
            return result.exited
        channel = self.target.client.get_transport().open_session()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            channel.set_combine_stderr(True)
            channel.exec_command(command.render())
            if command.stdin:
                channel.sendall(command.stdin.encode())
            channel.shutdown_write()
            while True:
                chunk = channel.recv(32768)
                if not chunk:
                    break
                out.write(decoder.decode(chunk))
            return channel.recv_exit_status()
        finally:
            channel.close()

    def _run_with_input(self, command: Command, limit: Optional[float]) -> Result:
        """Feed stdin in one write (Invoke's stdin pump moves one byte per 10 ms)."""
        if not hasattr(self.target, "client"):  # a local invoke Context
            done = subprocess.run(["bash", "-c", command.render()], input=command.stdin,
                                  capture_output=True, text=True, timeout=limit)
            return Result(done.returncode, done.stdout, done.stderr)
        channel = self.target.client.get_transport().open_session()
        try:
            channel.settimeout(limit)
            channel.exec_command(command.render())
            channel.sendall(command.stdin.encode())
            channel.shutdown_write()
            stdout, stderr = channel.makefile("rb").read(), channel.makefile_stderr("rb").read()
            return Result(channel.recv_exit_status(), stdout.decode(errors="replace"),
                          stderr.decode(errors="replace"))
        finally:
            channel.close()
