"""Commands as data, and the one thin place that runs them (locally or on the host).

Builders elsewhere return `Command` values; nothing there executes. `Runner` executes them
through a transport (transport/machines.py: the host over SSH, this machine, or a recorder that only
writes the plan). Secret input travels on stdin only, never in argv.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
from dataclasses import dataclass, replace
from typing import Any, List, Optional, Protocol, Sequence, Tuple, Union

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
    # variables added to the environment of a command run on this machine (a build secret the
    # docker CLI reads by name): never rendered, printed or sent to the host
    environment: Tuple[Tuple[str, str], ...] = ()

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


def environment_of(command: Command) -> Tuple[Tuple[str, str], ...]:
    """Every variable a command (its pipeline and chain included) adds to the environment."""
    found = command.environment
    for other in (command.upstream, command.then, *command.parts):
        if other is not None:
            found += environment_of(other)
    return found


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
