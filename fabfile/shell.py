"""Commands as data, and the one thin place that runs them (locally or on the host).

Builders elsewhere return `Command` values; nothing there executes. `Runner` executes them
through a transport (transport.py: the host over SSH, this machine, or a recorder that only
writes the plan). Secret input travels on stdin only, never in argv.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Protocol, Sequence, Tuple, Union

from . import interrupts
from .errors import ConnectionLost, RemoteCommandError, TimedOut

if TYPE_CHECKING:
    from .transport import Held, HttpAnswer, Transport

# DEPLOY_TRACE=1 prints every action, with its duration and exit code, in the words of the
# dry-run plan (so a trace and a plan can be compared line by line).
TRACE = os.environ.get("DEPLOY_TRACE") == "1"
STDIN_MARK = " <<< (stdin)"
HELD_MARK = "  # held open until the end"
# Ends each part's output in a batch (one call for several reads), with a token no output
# can know in advance (a digest of the batch's text) and the part's exit code.
PART_END = "--part-end-%s "


def put_text(path: str, size: int, mode: int) -> str:
    return f"sftp put {path} (mode {mode:04o}, {size} bytes)"


def get_text(url: str) -> str:
    return f"GET {url} (from here)"


class TextSink(Protocol):
    """Where streamed output goes (a file, sys.stdout, a redacting stream)."""

    def write(self, text: str) -> Any: ...
    def flush(self) -> Any: ...


@dataclass(frozen=True)
class Command:
    argv: Tuple[str, ...]
    stdin: Optional[str] = None           # fed on standard input; never printed or logged
    upstream: Optional["Command"] = None  # its stdout is piped into this command
    output_file: Optional[str] = None     # stdout goes to this file (on the side that runs it)
    input_file: Optional[str] = None      # stdin comes from this file
    then: Optional["Command"] = None      # runs after this one, if this one succeeded
    parts: Tuple["Command", ...] = ()     # a batch: each runs, whatever the others did; argv
                                          # is then its part-end mark (see batch())

    def render(self) -> str:
        """Shell text: argv quoted with shlex; a pipeline fails if any part fails."""
        if self.parts:
            return "; ".join(f"{part.render()}; printf '\\n{self.argv[0]}%d\\n' \"$?\""
                             for part in self.parts)
        text = shlex.join(self.argv)
        if self.input_file:
            text += " < " + shlex.quote(self.input_file)
        if self.upstream is not None:
            text = ("set -o pipefail; " + self.upstream.render().replace("set -o pipefail; ", "")
                    + " | " + text)
        if self.output_file:
            text = whole_file(text, self.output_file)
        return text if self.then is None else text + " && " + self.then.render()


def whole_file(text: str, path: str) -> str:
    """Shell `text` with its stdout into `path`, made for our user only (a dump holds the whole
    database) and whole or not at all: written under a temporary name, renamed when `text`
    succeeded, removed when it failed (a full disk leaves nothing that looks like a backup)."""
    partial = shlex.quote(path + ".partial")
    return (f"umask 077; {{ {text} > {partial} && mv -f -- {partial} {shlex.quote(path)}; }} "
            f"|| {{ rm -f -- {partial}; false; }}")


def cmd(*argv: Union[str, int], stdin: Optional[str] = None) -> Command:
    return Command(tuple(str(a) for a in argv), stdin=stdin)


def chain(*commands: Command) -> Command:
    """One remote call for several commands, each run only if the one before succeeded (none
    may read stdin)."""
    last = commands[-1]
    for command in reversed(commands[:-1]):
        last = replace(command, then=last)
    return last


def batch(*commands: Command) -> Command:
    """One remote call for several commands that read (none may read stdin); `split` gives
    each one's own result back."""
    assert all(c.stdin is None for c in commands)
    text = "\n".join(c.render() for c in commands)
    return Command((PART_END % hashlib.sha256(text.encode()).hexdigest()[:16],), parts=commands)


def split(batch: Command, batched: Result) -> List[Result]:
    """The result of each of a batch's parts. The parts share one stderr: a part that failed
    carries all of it. A part the call never reached (the shell died) exits 255."""
    pieces = re.split(r"\n%s(\d+)\n" % re.escape(batch.argv[0]), batched.stdout)
    count = len(batch.parts)
    results = [Result(int(code), text, "" if code == "0" else batched.stderr)
               for text, code in zip(pieces[0::2], pieces[1::2])]
    return (results + [Result(255, "", batched.stderr or "not run")] * count)[:count]


def joined(batch: Command, results: Sequence[Result]) -> Result:
    """A batch's output, as `split` reads it (the recorder answers a batch with this)."""
    return Result(0, "".join(f"{r.stdout}\n{batch.argv[0]}{r.exited}\n" for r in results), "")


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
    """Runs Commands through a transport (transport.py): the one place that executes anything.

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
            raise RemoteCommandError(what or f"{self.label}: {command.argv[0]}",
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
