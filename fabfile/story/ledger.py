"""The release ledger: an append-only JSON-lines file in STAGING_DIR on the host.

Each deploy or rollback writes a `start` event before it changes anything and an `end` event
when it finishes (succeeded, failed, rolled_back, rollback_failed). A start without an end is a
deploy that died (SIGKILL, lost runner); the next deploy or rollback closes it as `abandoned`.
Reading merges the events of each id into one `Entry`.
"""
from __future__ import annotations

import datetime
import getpass
import json
import os
import posixpath
import socket
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Mapping, Optional

from ..config.definitions import is_sha
from ..errors import DeployError
from ..report import redact_all
from ..transport.commands import Command, cmd

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.runner import Runner

LEDGER_FILE = "ledger.jsonl"
GOOD = "succeeded"
# How much of the ledger is read: its newest events (a start and an end per deploy, so about
# 2,000 deploys). A start without its end is closed by the next deploy, so an unfinished entry
# is always among them; callers that may need older ones say so (read_entries).
TAIL_LINES = 4000


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def who_runs_this(environ: Mapping[str, str] = os.environ) -> str:
    """CI (`github:<actor> run <id>`) or the local user, for the ledger and the lock."""
    if environ.get("GITHUB_ACTIONS") == "true":
        return f"github:{environ.get('GITHUB_ACTOR', '?')} run {environ.get('GITHUB_RUN_ID', '?')}"
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass
class Entry:
    """One deploy or rollback, merged from its start and end events."""
    id: str
    action: str                        # deploy | rollback
    sha: str
    by: str
    started: str
    previous: Optional[str] = None     # sha running (and healthy) when it began
    ended: Optional[str] = None
    result: Optional[str] = None       # succeeded | failed | rolled_back | rollback_failed | abandoned
    cause: str = ""
    images: dict = field(default_factory=dict)
    backup: Optional[str] = None       # pg_dump taken before its migrations
    rolled_back_to: Optional[str] = None
    duration: Optional[float] = None
    undone: List[str] = field(default_factory=list)   # after a failure: the undos run, in order
    kept: List[str] = field(default_factory=list)     # and what no undo reverses (migrations)

    @property
    def finished(self) -> bool:
        return self.result is not None


def start_event(action: str, sha: str, previous: Optional[str], by: str) -> dict:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return {"event": "start", "id": f"{stamp}-{uuid.uuid4().hex[:6]}", "action": action,
            "sha": sha, "previous": previous, "by": by, "started": now_iso()}


def end_event(entry_id: str, result: str, duration: Optional[float] = None,
              **details: object) -> dict:
    event: Dict[str, object] = {"event": "end", "id": entry_id, "result": result,
                                "ended": now_iso()}
    if duration is not None:
        event["duration"] = round(duration, 1)
    event.update({k: v for k, v in details.items() if v not in (None, "", {}, [])})
    return event


class Entries(List[Entry]):
    """The ledger's entries in start order, and how many lines were skipped as unreadable."""
    skipped = 0


def merge(text: str) -> Entries:
    """Ledger file text -> entries in start order. A line that is not an event of the shape the
    tool writes (not JSON, a field missing or of the wrong kind, a sha that is not one) is
    skipped and counted, not fatal: what the host holds is read, never trusted (a sha becomes a
    path)."""
    entries: Dict[str, Entry] = {}
    order: List[str] = []
    skipped = 0
    for line in filter(str.strip, text.splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            skipped += 1
            continue
        kind = event.pop("event", None)
        if kind == "start" and well_formed_start(event):
            entries[event["id"]] = Entry(**{k: v for k, v in event.items()
                                            if k in Entry.__dataclass_fields__})
            order.append(event["id"])
        elif kind == "end" and none_or_sha(event.get("rolled_back_to")):
            entry = entries.get(event["id"])    # none: its start is older than the tail read
            if entry:
                for key, value in event.items():
                    if key in Entry.__dataclass_fields__ and key != "id":
                        setattr(entry, key, value)
        else:
            skipped += 1
    merged = Entries(entries[i] for i in order)
    merged.skipped = skipped
    return merged


def none_or_sha(value: object) -> bool:
    return value is None or is_sha(value)


def well_formed_start(event: dict) -> bool:
    """A start event as start_event writes it: its sha (and previous) a full sha."""
    return (is_sha(event.get("sha")) and none_or_sha(event.get("previous"))
            and all(isinstance(event.get(k), str) for k in ("action", "by", "started")))


def unfinished(entries: List[Entry]) -> List[Entry]:
    return [e for e in entries if not e.finished]


def good_releases(entries: List[Entry]) -> List[str]:
    """Shas of releases that ended healthy (deploys and rollbacks), newest first, no repeats."""
    shas = []
    for entry in reversed(entries):
        if entry.result == GOOD and entry.sha not in shas:
            shas.append(entry.sha)
    return shas


def rollback_choice(entries: List[Entry], current: Optional[str]) -> Optional[str]:
    """The last good release before the current one."""
    return next((sha for sha in good_releases(entries) if sha != current), None)


def latest_backup(entries: List[Entry]) -> Optional[str]:
    """The dump taken before the last release that changed the schema: the newest dump of any
    deploy (a release with no migration to apply takes none, so the schema is still the one
    that dump's release left)."""
    for entry in reversed(entries):
        if entry.action == "deploy" and entry.backup:
            return entry.backup
    return None


class ReleaseLedger:
    """Commands that read and append the ledger file on the host."""

    def __init__(self, settings: Settings):
        self.path = posixpath.join(settings.STAGING_DIR, LEDGER_FILE)

    def append(self, event: dict) -> Command:
        """Append one event as one line (tee -a: a single O_APPEND write), every secret masked
        (a cause may quote a command's output)."""
        line = json.dumps(redact_all(event), sort_keys=True)
        return cmd("tee", "-a", "--", self.path, stdin=line + "\n")

    def read(self) -> Command:
        """The newest TAIL_LINES events: a year of deploys costs what a week does to read."""
        return cmd("tail", "-n", str(TAIL_LINES), "--", self.path)

    def read_all(self) -> Command:
        return cmd("cat", "--", self.path)


def read_entries(runner: Runner, settings: Settings,
                 enough: Callable[[List[Entry]], bool] = lambda entries: True,
                 text: Optional[str] = None) -> Entries:
    """The ledger's entries from its tail (`text`, when already read with `read()`), or from the
    whole file when the tail was cut and is not `enough` for the caller (fewer good releases
    than prune keeps, no dump for --restore-db: rare, and read in full then)."""
    ledger = ReleaseLedger(settings)
    if text is None:
        text = runner.run(ledger.read(), check=False).stdout
    entries = merge(text)
    if text.count("\n") >= TAIL_LINES and not enough(entries):
        entries = merge(runner.run(ledger.read_all(), check=False).stdout)
    return entries


def record_success(runner: Runner, ledger: ReleaseLedger, event: dict, reporter: Reporter, what: str) -> None:
    """Append the `succeeded` end of a release that is live: if the write fails, the release is
    still live and healthy, so that is a warning, not a failure."""
    try:
        runner.run(ledger.append(event))
    except DeployError as exc:
        reporter.say(f"warning: {what} is live and healthy, but recording that in the ledger "
                     f"failed ({str(exc).splitlines()[-1]}); `inv deploy.history` will show it "
                     "as abandoned")


def as_dict(entry: Entry) -> dict:
    return asdict(entry)
