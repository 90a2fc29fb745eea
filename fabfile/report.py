"""What the person running the deploy sees: step lines with elapsed time, and the summary.

Everything printed goes through `Reporter.say`, which replaces every secret value with ***,
so no command output, error or summary can show one.
"""
import base64
import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Set, TextIO
from urllib.parse import quote, quote_plus

# Every secret form any Reporter was given, so the final error line of a task is redacted too.
KNOWN_SECRETS: Set[str] = set()
# A line of a multi-line secret (a key) shorter than this is a header or padding, not secret.
SECRET_LINE = 16


def secret_forms(secrets: Iterable[str]) -> List[str]:
    """Every form in which a secret may turn up in output: as is, without surrounding blanks,
    URL-encoded (both ways), base64 (standard and URL-safe, with and without padding; so a
    `user:password` secret covers HTTP Basic auth), and each long line of a multi-line one.
    Longest first, so a longer form is replaced before a shorter one inside it."""
    forms = set()

    def add(text: str) -> None:
        if not text:
            return
        forms.update({text, quote(text, safe=""), quote_plus(text)})
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(text.encode()).decode()
            forms.update({encoded, encoded.rstrip("=")})

    for secret in secrets:
        add(secret)
        add(secret.strip())
        for line in secret.splitlines():
            if len(line.strip()) >= SECRET_LINE and not line.startswith("-----"):
                add(line.strip())
    return sorted((f for f in forms if f), key=len, reverse=True)


def redact(text: str, secrets: Optional[Iterable[str]] = None) -> str:
    for secret in sorted(KNOWN_SECRETS if secrets is None else secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def redact_all(value: Any, secrets: Optional[Iterable[str]] = None) -> Any:
    """`value` (text, or lists and dicts of it, as a ledger event) with every secret masked."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: redact_all(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(v, secrets) for v in value]
    return value


def held_back(text: str, secrets: Iterable[str]) -> int:
    """How many characters at the end of `text` could be the start of a secret (and so must
    wait for the rest of a stream before they can be shown)."""
    longest = 0
    for secret in secrets:
        for length in range(min(len(secret) - 1, len(text)), longest, -1):
            if secret.startswith(text[-length:]):
                longest = length
                break
    return longest


class RedactingStream:
    """A writable stream for a command's streamed output: every secret replaced by ***, also one
    that arrives split across writes (text that could start a secret waits for the next write)."""

    def __init__(self, secrets: Iterable[Optional[str]], out: Optional[TextIO] = None) -> None:
        self.secrets = secret_forms(s for s in secrets if s)
        self.out = out or sys.stdout
        self.pending = ""

    def write(self, text: str) -> None:
        text = redact(self.pending + text, self.secrets)
        keep = held_back(text, self.secrets)
        self.pending = text[len(text) - keep:] if keep else ""
        self.out.write(text[:len(text) - keep])
        self.out.flush()

    def flush(self) -> None:
        self.out.flush()

    def close(self) -> None:
        """The stream ended: what was held back was not a secret after all."""
        self.out.write(self.pending)
        self.pending = ""
        self.out.flush()


class Reporter:
    def __init__(self, secrets: Iterable[Optional[str]] = (), stream: Optional[TextIO] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.secrets = secret_forms(s for s in secrets if s)
        KNOWN_SECRETS.update(self.secrets)
        self.stream = stream or sys.stdout
        self.clock = clock
        self.started = clock()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def elapsed(self) -> float:
        return self.clock() - self.started

    def say(self, text: str) -> None:
        self.stream.write(self.redact(text) + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self.say(f"[{self.elapsed():6.1f}s]     {text}")

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Print the step when it starts and, with its duration, when it ends or fails."""
        begun = self.clock()
        self.say(f"[{self.elapsed():6.1f}s] --> {name}")
        try:
            yield
        except BaseException:
            self.say(f"[{self.elapsed():6.1f}s] !!! {name} FAILED after {self.clock() - begun:.1f}s")
            raise
        self.say(f"[{self.elapsed():6.1f}s]  ok {name} ({self.clock() - begun:.1f}s)")


def table_cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(text.replace("|", "/").split())


@dataclass
class Summary:
    """The end-of-deploy record: printed, and written to the CI job summary."""
    action: str
    sha: str
    result: str = "running"                 # succeeded | failed
    images: Dict[str, str] = field(default_factory=dict)     # service -> ref@digest
    health: str = ""
    watch: str = ""                         # the watch window after the switch, and its result
    duration: float = 0.0
    cause: str = ""
    url: str = ""
    logs: str = ""
    logs_from: str = "backend"              # whose log lines `logs` are (invoke.yaml log_service)
    backup: Optional[str] = None            # database dump taken before the migrations
    notes: List[str] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"{self.action} {self.result.upper()}: {self.sha}",
                 f"  duration  {self.duration:.1f}s",
                 f"  health    {self.health or 'not checked'}"]
        if self.watch:
            lines.append(f"  watch     {self.watch}")
        if self.url:
            lines.append(f"  url       {self.url}")
        for service, image in sorted(self.images.items()):
            lines.append(f"  {service:<9} {image}")
        if self.backup:
            lines.append(f"  backup    {self.backup}")
        if self.cause:
            lines.append(f"  cause     {self.cause}")
        lines += [f"  note      {n}" for n in self.notes]
        if self.logs:
            lines.append(f"  last {self.logs_from} log lines:")
            lines += ["    " + line for line in self.logs.splitlines()]
        return "\n".join(lines)

    def markdown(self) -> str:
        icon = "✅" if self.result == "succeeded" else "❌"
        rows = [f"## {icon} {self.action} {self.result}: `{self.sha[:12]}`", "",
                "| | |", "|---|---|",
                f"| commit | `{self.sha}` |", f"| duration | {self.duration:.1f}s |",
                f"| health | {self.health or 'not checked'} |"]
        if self.watch:
            rows.append(f"| watch | {self.watch} |")
        if self.url:
            rows.append(f"| url | {self.url} |")
        rows += [f"| {s} | `{i}` |" for s, i in sorted(self.images.items())]
        if self.backup:
            rows.append(f"| database backup | `{self.backup}` |")
        if self.cause:
            rows.append(f"| cause | {table_cell(self.cause)} |")
        rows += [f"| note | {table_cell(n)} |" for n in self.notes]
        if self.logs:
            # a fence longer than any run of backticks in the logs: they cannot close it
            fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", self.logs)), default=0))
            rows += ["", f"<details><summary>last {self.logs_from} log lines</summary>", "", fence,
                     self.logs, fence, "</details>"]
        return "\n".join(rows) + "\n"

    def publish(self, reporter: Reporter, environ: Mapping[str, str] = os.environ) -> None:
        reporter.say(self.text())
        path: Optional[str] = environ.get("GITHUB_STEP_SUMMARY")
        if path:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(reporter.redact(self.markdown()))
