"""`--dry-run`: the deploy itself, run against a recorder instead of the host.

Nothing is guessed by hand: the real deploy code runs, its every action (local and remote) is
recorded in order, and a simulated staging host answers it as a typical one would: a healthy
release, `<running-sha>` (RUNNING), live in slot green, the database up, migrations to apply. Values that
only the host can know are written as `<placeholders>`; the lines that carry them are marked
`# depends on the host`. Polls run on a virtual clock, so a plan takes milliseconds; repeated
looks are folded into one line that says how often they repeat.
"""
from __future__ import annotations

import contextlib
import io
import json
import posixpath
import re
import shlex
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..compose.commands import (
    EDGE_SERVICE,
    PROJECT_LABEL,
    SLOTS,
    compose_version,
    edge_dir,
    running_services,
    slot_project,
    stable_digest,
    stable_digest_path,
    stable_text,
)
from ..compose.edge import LIVE_FILE, live_conf, parse_live_conf
from ..report import Reporter
from ..swarm import stacks
from ..transport.commands import Command, Result
from ..transport.machines import Action, HttpAnswer, Plan, Recorder, Script
from ..transport.runner import Runner
from . import pins
from .health import SLOT_HEADER
from .images import SHA_LABEL
from .ledger import ReleaseLedger

if TYPE_CHECKING:
    from ..config.settings import Settings

# The running release's sha as the simulated host answers it: shaped like a real one (what the
# tool reads back from a host must be a sha, or it is refused), printed as PLACEHOLDER.
RUNNING = "5ca1ab1e" * 5
PLACEHOLDER = "<running-sha>"
PLAN_LIVE_SLOT = "green"
DEPENDS = "  # depends on the host"


class SimulatedHost(Script):
    """A staging host as the plan assumes it: `<running-sha>` live and healthy in slot green.
    It follows the deploy: `up` in a slot starts that release there, `docker stop`/`rm` remove
    containers, a new edge/live.conf moves the users."""

    def __init__(self, settings: Settings, ledger: Optional[List[dict]] = None):
        self.settings = settings
        self.slots: Dict[str, Optional[str]] = {PLAN_LIVE_SLOT: RUNNING}
        self.live: Optional[str] = PLAN_LIVE_SLOT
        self.stopped: set = set()
        self.ledger_path = ReleaseLedger(settings).path
        self.live_path = posixpath.join(edge_dir(settings), LIVE_FILE)
        self.ledger: List[dict] = list(ledger or [])   # events appended to the ledger file
        self.swarm = settings.on_swarm
        self.stack_sha: Optional[str] = RUNNING        # what the Swarm app stack runs
        # the infrastructure images, pinned by an earlier deploy (pins.py)
        self.pins = {ref: f"{ref}{pins.DIGEST_MARK}<digest>"
                     for ref in pins.tag_refs(settings).values()}
        self.pinned = pins.with_pins(settings, self.pins)

    # -- what runs ---------------------------------------------------------------------------
    def _rows(self) -> List[Tuple[str, str, str, Optional[str]]]:
        """(container id, project, service, sha) of every container."""
        rows: List[Tuple[str, str, str, Optional[str]]] = [
            (f"<container:{name}>", self.settings.project, name, None)
            for name in (*self.settings.data_services, EDGE_SERVICE)]
        for slot, sha in self.slots.items():
            if sha:
                rows += [(f"<container:{s.name}-{slot}>", slot_project(self.settings, slot),
                          s.name, sha) for s in self.settings.services]
        return [row for row in rows if row[0] not in self.stopped]

    def _inspect(self, ids: Sequence[str]) -> str:
        rows = {row[0]: row for row in self._rows()}
        items = []
        for container_id in ids:
            _, project, service, sha = rows[container_id]
            slot = project.rsplit("-", 1)[-1]
            labels = {PROJECT_LABEL: project, "com.docker.compose.service": service}
            if sha:
                labels[SHA_LABEL] = sha
            items.append({"Id": container_id, "RestartCount": 0,
                          "Image": f"<image:{service}-{slot}>" if sha else f"<image:{service}>",
                          "Config": {"Labels": labels},
                          "State": {"Status": "running", "Health": {"Status": "healthy"}}})
        return json.dumps(items)

    def _health(self, slot: Optional[str]) -> Tuple[int, str, Dict[str, str]]:
        """The app's health answer, in the story's shape; through the edge, it names the slot
        that gave it; where the app is set to report its version (health_version), it does."""
        slot = None if self.swarm else slot or self.live
        sha = self.stack_sha if self.swarm else self.slots.get(slot or "")
        body: Dict[str, Any] = {"success": True, "data": {"status": "healthy", "timestamp": "<now>"}}
        headers = {SLOT_HEADER.lower(): slot} if slot else {}
        version_at = self.settings.health.version_at
        if version_at.startswith("header:"):
            headers[version_at[len("header:"):].lower()] = str(sha)
        elif version_at:                           # a JSON path such as data.version
            *parents, last = version_at.split(".")
            node = body
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = sha
        return 200, json.dumps(body), headers

    # -- the Swarm target's manager: the stable stack and the app stack at full strength -----
    def _swarm(self, argv: Sequence[str]) -> Optional[Result]:
        stack, app = self.settings.project, stacks.app_stack(self.settings)
        stable = ["edge", *self.settings.data_services]
        names = {stack: [f"{stack}_{s}" for s in stable],
                 app: [f"{app}_{s.name}" for s in self.settings.services]}
        if argv[:3] == ("docker", "service", "ls"):
            listed = next(a.split("=", 2)[2] for a in argv if a.startswith("label="))
            return Result(0, "".join(f"{n}\n" for n in names.get(listed, [])), "")
        image = lambda name: f"<image:{name}>@{self.stack_sha}"  # noqa: E731
        if argv[:3] == ("docker", "service", "inspect"):
            return Result(0, json.dumps([{"Spec": {
                "Name": n, "Labels": {stacks.RELEASE_LABEL: self.stack_sha},
                "Mode": {"Replicated": {"Replicas": 2}},
                "TaskTemplate": {"ContainerSpec": {"Image": image(n)}}},
                "UpdateStatus": {"State": "completed"}} for n in argv[3:]]), "")
        jobs = {f"{stack}-prune", *(f"{stack}-pull-{s.name}" for s in self.settings.services)}
        if argv[:3] == ("docker", "service", "ps"):
            return Result(0, "".join(json.dumps({
                "Name": f"{n}.{i}", "Image": image(n), "Node": f"node-{i}", "DesiredState":
                "Running", "CurrentState": "Complete 1 second ago" if n in jobs else
                "Running 1 minute ago", "Error": ""}) + "\n"
                for n in argv[6:] for i in (1, 2)), "")
        deployed = re.search(rf"stack deploy .* -c '?[^' ]*/([^/' ]+)/{stacks.APP_FILE}'? ",
                             argv[2]) if argv[:2] == ("sh", "-c") else None
        if deployed:
            self.stack_sha = deployed.group(1)
        if argv == ("cat", posixpath.join(self.settings.STAGING_DIR, stacks.STABLE_DIGEST)):
            env = stacks.release_env(self.pinned, RUNNING, {})
            return Result(0, stacks.stable_digest(stacks.stable_text(self.pinned), env) + "\n", "")
        check = self.settings.migrate_check_command
        if argv[:2] == ("sh", "-c") and check and \
                argv[2].endswith(" ".join(shlex.quote(a) for a in check)):
            return Result(1, "", "")       # the plan shows the dump: migrations to apply
        return None

    # -- Script ------------------------------------------------------------------------------
    def answer(self, command: Command) -> Result:
        argv = command.argv
        text = command.render()
        if self.swarm:
            answer = self._swarm(argv)
            if answer:
                return answer
        if argv[0] == "flock" and "echo locked $$" in text:
            return Result(0, "locked 1\n", "")
        if argv == ("cat", self.live_path):
            return Result(0, live_conf(self.live) if self.live else "", "")
        if argv in (ReleaseLedger(self.settings).read().argv,
                    ReleaseLedger(self.settings).read_all().argv):
            return Result(0, "".join(json.dumps(event) + "\n" for event in self.ledger), "")
        if argv == ("tee", "-a", "--", self.ledger_path):
            self.ledger.append(json.loads(command.stdin or ""))
            return Result(0, command.stdin or "", "")
        if argv == running_services(self.settings.project).argv:
            return Result(0, "".join(f"{row[2]}\n" for row in self._rows()
                                     if row[1] == self.settings.project), "")
        if argv == ("cat", "--", pins.pins_path(self.settings)):
            return Result(0, json.dumps(self.pins), "")
        if argv == ("cat", stable_digest_path(self.settings)):   # unchanged since the last deploy
            digest = stable_digest(self.pinned, stable_text(self.pinned))
            return Result(0, (digest or "") + "\n", "")
        if argv[:2] == ("docker", "ps"):
            return Result(0, "".join(f"{row[0]} {row[1]}\n" for row in self._rows()), "")
        if argv[:2] == ("docker", "inspect"):
            return Result(0, self._inspect(argv[2:]), "")
        if argv[:2] == ("docker", "stop") or argv[:2] == ("docker", "rm"):
            self.stopped.update(argv[2:])
            return Result(0, "", "")
        if argv[0] == "curl":
            slot = next((a.split(": ", 1)[1] for a in argv
                         if a.startswith(f"{SLOT_HEADER}: ")), None)
            status, body, headers = self._health(slot)
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            return Result(0, f"HTTP/1.1 {status} OK\r\n{head}\r\n{body}\n{status}", "")
        if "up" in argv and "docker" in argv and "--wait" not in argv:
            self._start(argv)
        if "run" in argv and self.settings.migrate_check_command and \
                tuple(argv[-len(self.settings.migrate_check_command):]) == \
                tuple(self.settings.migrate_check_command):
            return Result(1, "", "")       # the plan shows the dump: migrations to apply
        if argv[:2] == ("git", "merge-base") or argv[:3] == ("docker", "manifest", "inspect"):
            return Result(1, "", "")       # not an ancestor; not yet in the registry
        platform = "/".join(self.settings.BUILD_PLATFORM.split("/")[:2])  # as the engine says
        if argv[:3] == ("df", "-P", "-B1"):         # room enough
            return Result(0, "Filesystem 1-blocks Used Available Capacity Mounted on\n"
                             f"/dev/sda1 {2 ** 40} {2 ** 30} {2 ** 39} 1% /\n", "")
        if argv == compose_version().argv:
            return Result(0, "2.26.1\n", "")
        if argv[:3] == ("docker", "version", "--format"):
            return Result(0, platform + "\n", "")
        if argv[:5] == ("docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}"):
            return Result(0, f"{platform}\n" * len(argv[5:]), "")
        if argv[:3] == ("docker", "image", "inspect"):
            return Result(0, "[]\n" * len([a for a in argv[3:] if ":" in a]), "")
        return Result(0, "", "")

    def _start(self, argv: Sequence[str]) -> None:
        project = argv[argv.index("-p") + 1]
        for slot in SLOTS:
            if project == slot_project(self.settings, slot):
                release = posixpath.basename(posixpath.dirname(argv[argv.index("-f") + 1]))
                self.slots[slot] = release
                self.stopped -= {f"<container:{s.name}-{slot}>" for s in self.settings.services}

    def put(self, path: str, data: bytes) -> None:
        if posixpath.basename(path) == LIVE_FILE:
            self.live = parse_live_conf(data.decode())

    def get(self, url: str) -> HttpAnswer:
        return self._health(None)


def render(plan: Plan) -> str:
    """The plan as text: step titles, then `[local]`/`[remote]` lines; a run of repeated looks
    is shown once, followed by how many times it repeated."""
    lines: List[str] = []
    for item in plan.actions:
        if isinstance(item, Action):
            lines.append(f"[{item.label}] {placeholders(item.text)}"
                         + (DEPENDS if item.depends else ""))
        else:
            lines.append(f"--> {placeholders(item)}")
    return "\n".join(fold_repeats(lines))


def placeholders(text: str) -> str:
    """The simulated running sha, whole or short, as the placeholder it stands for."""
    return text.replace(RUNNING, PLACEHOLDER).replace(RUNNING[:12], PLACEHOLDER)


def fold_repeats(lines: List[str], longest: int = 8) -> List[str]:
    """Show a block of lines that repeats back to back once, then `(... N more times)`."""
    out, i = [], 0
    while i < len(lines):
        for size in range(1, longest + 1):
            block = lines[i:i + size]
            repeats = 0
            while lines[i + size * (repeats + 1):i + size * (repeats + 2)] == block:
                repeats += 1
            if repeats and not any(line.startswith("-->") for line in block):
                out += block
                out.append(f"(the {size} line{'s' if size > 1 else ''} above again, "
                           f"{repeats} more time{'s' if repeats > 1 else ''})")
                i += size * (repeats + 1)
                break
        else:
            out.append(lines[i])
            i += 1
    return out


class PlanReporter(Reporter):
    """In a dry run, step titles go into the plan between the actions; notes are dropped (they
    describe the simulated host's answers, not what will happen)."""

    def __init__(self, plan: Plan, secrets: Iterable[Optional[str]] = ()) -> None:
        super().__init__(secrets, stream=io.StringIO())
        self.plan = plan

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.plan.step(name)
        yield

    def note(self, text: str) -> None:
        pass


class PlannedSession:
    """Stands in for transport.session.HostSession in a dry run: the same steps, a Recorder for the host."""

    def __init__(self, settings: Settings, reporter: Reporter, plan: Plan, script: Script):
        self.settings, self.reporter = settings, reporter
        self.runner = Runner(Recorder(plan, "remote", script), "remote", reporter.say)
        self.alive = True

    def __enter__(self) -> PlannedSession:
        with self.reporter.step(f"connect to {self.settings.STAGING_USER}@"
                                f"{self.settings.STAGING_HOST}:{self.settings.STAGING_PORT} "
                                "(pinned host key)"):
            return self

    def __exit__(self, *exc: object) -> None:
        pass

    def reconnect(self, within: float = 30.0) -> None:
        pass
