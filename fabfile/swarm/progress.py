"""What a Swarm update is doing: its services, tasks and nodes, read and judged."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from ..config.definitions import sha_or_empty
from ..errors import DeployError
from ..story.health import Answer, Expected, who_answered
from .stacks import (
    ENDED,
    GAVE_UP,
    RELEASE_LABEL,
    ROLLING_BACK,
    list_nodes,
    list_services,
    list_tasks,
    remove_service,
    service_logs,
)

if TYPE_CHECKING:
    from ..transport.commands import Command
    from ..transport.runner import Runner


@dataclass
class Service:
    name: str                  # without the stack prefix
    sha: str                   # its deploy.release label
    image: str                 # as pinned in its spec
    replicas: int
    update: str = ""           # UpdateStatus.State ("" before any update)
    message: str = ""


# Errors Swarm reports for a task it was stopping, not for the task's own failure.
TEARDOWN_ERRORS = ("error while removing network",)


@dataclass
class Task:
    service: str
    image: str
    node: str
    desired: str               # Running | Shutdown | ...
    current: str               # "Running 5 seconds ago", "Failed 2 seconds ago", ...
    error: str = ""
    slot: str = ""             # the replica it fills ("" when not known: it counts on its own)
    id: str = ""

    @property
    def running(self) -> bool:
        return self.desired == "Running" and self.current.startswith("Running")

    @property
    def failed(self) -> bool:
        """The task itself failed (its container exited non-zero, or could not start), not
        Swarm while stopping it: "error while removing network" is Swarm failing to detach a
        task it was shutting down (an update or a node's loss replacing it), which says nothing
        about the release (ci5, ci7: a task of the new release stopped by a restarted update)."""
        return bool(self.error) and self.current.startswith(("Failed", "Rejected")) and \
            not self.error.startswith(TEARDOWN_ERRORS)


def parse_services(output: str, stack: str) -> Dict[str, Service]:
    """`docker service inspect` JSON -> short service name -> Service."""
    services = {}
    for spec in json.loads(output or "[]"):
        full = spec["Spec"]["Name"]
        name = full[len(stack) + 1:] if full.startswith(stack + "_") else full
        replicated = spec["Spec"].get("Mode", {}).get("Replicated") or {}
        status = spec.get("UpdateStatus") or {}
        services[name] = Service(name, sha_or_empty((spec["Spec"].get("Labels") or {}).get(RELEASE_LABEL)),
                                 spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"],
                                 int(replicated.get("Replicas", 1)), status.get("State", ""),
                                 status.get("Message", ""))
    return services


def json_rows(output: str) -> Iterator[dict]:
    """The rows of a `docker ... --format '{{json .}}'` listing; a line that is not JSON (a
    warning the CLI printed) is skipped."""
    for line in output.splitlines():
        try:
            yield json.loads(line)
        except ValueError:
            continue


def parse_tasks(output: str, stack: str) -> List[Task]:
    tasks = []
    for row in json_rows(output):
        service, _, slot = row.get("Name", "").partition(".")
        service = service[len(stack) + 1:] if service.startswith(stack + "_") else service
        tasks.append(Task(service, row.get("Image", ""), row.get("Node", ""),
                          row.get("DesiredState", ""), row.get("CurrentState", ""),
                          row.get("Error", ""), slot, row.get("ID", "")))
    return tasks


def service_names(runner: Runner, stack: str) -> List[str]:
    return runner.run(list_services(stack), check=False).stdout.split()


def read_tasks(runner: Runner, stack: str, names: Sequence[str]) -> List[Task]:
    return parse_tasks(runner.run(list_tasks(names), "docker service ps").stdout, stack)


def parse_down_nodes(output: str) -> List[str]:
    """`docker node ls` JSON lines -> the hostnames of the nodes that are not Ready (down,
    unknown, disconnected): the last state their tasks reported is not to be believed."""
    return sorted(row.get("Hostname", "?") for row in json_rows(output)
                  if row.get("Status", "Ready") != "Ready")


def node_states(output: str) -> Dict[str, str]:
    """`docker node ls` JSON lines -> hostname: status (Ready, Down, Unknown, Disconnected)."""
    return {row.get("Hostname", "?"): row.get("Status", "?") for row in json_rows(output)}


def nodes_down_note(down: Sequence[str]) -> str:
    if not down:
        return ""
    return (f"node {', '.join(down)} {'is' if len(down) == 1 else 'are'} down: Swarm runs "
            "the tasks on the other nodes, and tasks there are not counted")


@dataclass
class Look:
    """One look at the app stack: its services, their tasks, and what the public port says."""
    services: Dict[str, Service] = field(default_factory=dict)
    tasks: List[Task] = field(default_factory=list)
    answer: Answer = field(default_factory=lambda: Answer("public port", None))
    error: str = ""
    down: List[str] = field(default_factory=list)   # nodes not Ready


def failed_task_error(look: Look, service: str) -> str:
    """The newest error Swarm recorded for a task of `service` (what made it give up)."""
    for task in look.tasks:
        if task.service == service and task.error:
            return f"{task.error} ({task.current.split(' ')[0].lower()} on {task.node})"
    return ""


@dataclass
class Stall:
    """An update to our release that a node going down holds up: started again (a forced
    update: Swarm places every task anew on the nodes that are up) once it lasted `after` s."""
    service: str
    why: str
    after: float = 0.0


def serving_slots(look: Look, name: str) -> Dict[str, List[Task]]:
    """The running tasks of `name` on nodes that are up, by the replica (slot) they fill."""
    slots: Dict[str, List[Task]] = {}
    for n, task in enumerate(look.tasks):
        if task.service == name and task.running and task.node not in look.down:
            slots.setdefault(task.slot or f"#{n}", []).append(task)
    return slots


def stalls(look: Look, sha: str, services: Sequence[str], patience: float) -> List[Stall]:
    """The app services whose update to `sha` waits on a node that is down. Swarm's start-first
    updater waits for each new task to start with no time limit (swarmkit's updater.go: "TODO:
    Consider adding a timeout here"), so:
    - a task of the update placed on the node before it went down never starts: the update
      hangs until the node returns (start it again now);
    - Swarm restarts the node's tasks elsewhere while the update replaces them, so a replica
      can run two tasks of the release; the update then usually ends within its window and drops
      one, but was seen waiting for good (CI, 240 s): start it again after `patience` s."""
    found = []
    for name in services:
        service = look.services.get(name)
        if service is None or service.sha != sha or service.update != "updating" or not look.down:
            continue
        placed = [t.node for t in look.tasks if t.service == name and t.node in look.down
                  and t.image == service.image
                  and not t.current.startswith(("Running",) + ENDED)]
        twice = [slot for slot, tasks in serving_slots(look, name).items()
                 if len(tasks) > 1 and all(t.image == service.image for t in tasks)]
        if placed:
            found.append(Stall(name, f"waits for a task on node {placed[0]}, which is down "
                                     "(Swarm would wait until the node returns)"))
        elif twice:
            found.append(Stall(name, f"runs two tasks for replica {twice[0]} since node "
                                     f"{', '.join(look.down)} went down, and is not over after "
                                     f"{patience:.0f}s", patience))
    return found


class Unsticker:
    """Which stalls are due: one that lasted its `after` seconds (without a break), once per
    service (a second hang is left to the deadline)."""

    def __init__(self) -> None:
        self.since: Dict[str, float] = {}
        self.done: Set[str] = set()

    def due(self, found: Sequence[Stall], now: float) -> List[Stall]:
        self.since = {s.service: self.since.get(s.service, now) for s in found}
        due = [s for s in found if s.service not in self.done and now - self.since[s.service] >= s.after]
        self.done.update(s.service for s in due)
        return due


def judge(look: Look, expected: Expected) -> tuple:
    """(state, reason) of the expected release in this look: "healthy" (every service runs its
    sha in each of its replicas on Ready nodes and nothing else, so whatever answers is that
    release (a replica may briefly run two tasks of it, see `stalls`), and the
    public port answers healthy, as the app's health contract says), "failed" (Swarm gave up on
    the update: the task's error), or "waiting". A task on a node that is down is not counted,
    whatever it last reported: Swarm replaces it on the other nodes."""
    sha, services = expected.sha, expected.services
    if look.error:
        return "waiting", look.error
    for name in services:
        service = look.services.get(name)
        if service is None:
            return "waiting", f"service {name} does not exist (yet)"
        # Swarm rolling back puts the previous spec (its label) back: a rollback state under
        # this release's label is an earlier update's, still shown until this one starts.
        if service.update == ROLLING_BACK and service.sha != sha:
            why = failed_task_error(look, name) or service.message
            return "waiting", f"Swarm is rolling {name} back ({why})"
        if service.update in GAVE_UP and (service.sha != sha or service.update == "paused"):
            why = failed_task_error(look, name) or service.message or "no task error recorded"
            return "failed", f"Swarm gave up on the update of {name} ({service.update}): {why}"
        if service.sha != sha:
            return "waiting", f"{name} runs {service.sha[:12] or 'another release'}"
        slots = serving_slots(look, name)
        if len(slots) != service.replicas or any(t.image != service.image
                                                 for tasks in slots.values() for t in tasks):
            return "waiting", (f"{name}: {len(slots)} of {service.replicas} tasks of {sha[:12]} "
                               f"running" + (f" (Swarm's update: {service.update})"
                                             if service.update else ""))
        if service.update == "updating":
            return "waiting", f"{name}: update in progress"
    answer = look.answer
    problem = (f"{answer.where} answered {answer.status or 'nothing'}" if answer.status != 200
               else expected.contract.body_problem(answer.body) or who_answered(answer, expected))
    if problem:
        return "waiting", problem
    reason = f"{len(services)} services at full strength; health 200" + (
        " with the version" if expected.contract.version_at else "")
    return "healthy", "; ".join(filter(None, [reason, nodes_down_note(look.down)]))


def on_every_node(runner: Runner, name: str, job: Command, deadline_seconds: float,
                  logs: Optional[List[str]] = None) -> Tuple[List[Task], List[str]]:
    """Run global job `job` (service `name`), wait for every task to end, and remove it;
    returns the tasks that did not complete and the nodes that are down (their task never
    ends: they are skipped). With `logs`, the job's output is added to it."""
    runner.run(remove_service(name), check=False)   # left by an interrupted deploy
    runner.run(job, f"starting {name} on the nodes")
    deadline = runner.clock() + deadline_seconds
    down: List[str] = []
    try:
        while True:
            tasks = parse_tasks(runner.run(list_tasks([name])).stdout, name)
            pending = [t for t in tasks if t.current.split(" ")[0] not in ENDED]
            if pending:
                down = parse_down_nodes(runner.run(list_nodes(), check=False).stdout)
                pending = [t for t in pending if t.node not in down]
            if tasks and not pending:
                break
            if runner.clock() > deadline:
                raise DeployError(f"{name} did not end on every node in time")
            runner.sleep(0.5)
        if logs is not None:
            logs += runner.run(service_logs([name], "all", None, False),
                               check=False).stdout.splitlines()
        failed = [t for t in tasks
                  if not t.current.startswith("Complete") and t.node not in down]
        return failed, sorted({t.node for t in tasks if t.node in down})
    finally:
        runner.run(remove_service(name), check=False)
