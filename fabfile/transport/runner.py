"""The one place that runs a Command: through a transport, with a timeout, an error naming
what failed, the DEPLOY_TRACE line, and the refusal to go on over a dropped connection.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Union

from ..errors import CommandTimedOut, ConnectionLost, RemoteCommandError, TimedOut
from . import interrupts
from .commands import (
    HELD_MARK,
    STDIN_MARK,
    TRACE,
    Command,
    Result,
    TextSink,
    batch,
    get_text,
    put_text,
    split,
)

if TYPE_CHECKING:
    from .machines import Held, HttpAnswer, Transport


class Runner:
    """Runs Commands through a transport (transport/machines.py): the one place that executes anything.

    Adds what every caller wants: a timeout, an error naming what failed (`check`), the
    DEPLOY_TRACE line, and the refusal to go on over a connection that dropped."""

    def __init__(self, transport: "Transport", label: str, echo: Callable[[str], None] = print,
                 timeout: Optional[float] = None):
        self.transport = transport
        self.label = label
        self.echo = echo
        self.timeout = timeout

    @property
    def dry_run(self) -> bool:
        """Recording a plan (nothing runs; answers come from a script)."""
        return self.transport.records

    def clock(self) -> float:
        return self.transport.clock()

    def sleep(self, seconds: float) -> None:
        self.transport.sleep(seconds)

    def run(self, command: Command, what: str = "", check: bool = True,
            timeout: Optional[float] = None) -> Result:
        interrupts.check()                 # a safe point for Ctrl-C/SIGTERM (interrupts.py)
        self._connected(what or command.argv[0])
        limit = timeout or self.timeout
        began = time.monotonic()
        try:
            result = self.transport.run(command, limit)
        except TimedOut:
            raise CommandTimedOut(what or f"{self.label}: {command.argv[0]}",
                                  f"timed out after {limit:.0f}s") from None
        self._trace(began, f"exit {result.exited}",
                    command.render() + (STDIN_MARK if command.stdin is not None else ""))
        if check and not result.ok:
            raise RemoteCommandError(what or f"{self.label}: {command.argv[0]}", result.tail())
        return result

    def run_all(self, commands: Sequence[Command], what: str) -> List[Result]:
        """Several reads in one call (`batch`); their results in order, each checked by the
        caller (only the call itself failing raises)."""
        command = batch(*commands)
        return split(command, self.run(command, what))

    def hold(self, command: Command, timeout: Optional[float] = None) -> "Held":
        """Start a long-running command and read its first line (see transport.Held)."""
        self._connected(command.argv[0])
        began = time.monotonic()
        held = self.transport.hold(command, timeout)
        self._trace(began, "held", command.render() + HELD_MARK)
        return held

    def put(self, path: str, content: Union[str, bytes], mode: int = 0o600) -> None:
        """Write `content` to `path` (mode set before any byte is written, renamed into place)."""
        data = content.encode() if isinstance(content, str) else content
        self._connected("upload of " + path)
        began = time.monotonic()
        self.transport.put(path, data, mode)
        self._trace(began, "done", put_text(path, len(data), mode))

    def put_file(self, path: str, local_path: str, mode: int = 0o644) -> None:
        with open(local_path, "rb") as handle:
            self.put(path, handle.read(), mode)

    def get(self, url: str, headers: Optional[dict] = None,
            timeout: float = 3) -> HttpAnswer:
        """A GET from here (the public URL): (status, body, headers), or (None, "(error kind)",
        {})."""
        began = time.monotonic()
        answer = self.transport.get(url, headers or {}, timeout)
        self._trace(began, f"status {answer[0]}", get_text(url), label="local")
        return answer

    def stream(self, command: Command, out: TextSink, pty: bool = False, keys: bool = False) -> int:
        """Run `command` with its output (stdout and stderr) written to `out` as it comes;
        returns its exit code. On a `pty`, Ctrl-C reaches the command and ends it (and, with
        `keys`, every key typed here is forwarded: a shell). Without one, `command.stdin`, if
        any, is its whole input."""
        self._connected(command.argv[0])
        return self.transport.stream(command, out, pty, keys)

    def _connected(self, what: str) -> None:
        if not self.transport.alive:
            # Fabric would quietly open a new connection; a deploy must notice the drop instead.
            raise ConnectionLost(f"lost the SSH connection to the host (before: {what})")

    def _trace(self, began: float, outcome: str, text: str, label: str = "") -> None:
        if TRACE and not self.dry_run:
            self.echo(f"[{label or self.label} {time.monotonic() - began:.2f}s {outcome}] {text}")
