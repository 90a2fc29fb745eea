"""Deciding whether a release is healthy, waiting for it with a deadline, and watching it once live.

A release is healthy when, at the same moment: every service container is running (and
healthy where it has a healthcheck), and every place it is asked (its slot through the edge's
candidate port; once live, the host's public port and the public URL too) answers the health
path with 200 and a body that says healthy (the app's own contract, `HealthContract`). Which
release answered is proven by what the tool controls, so the app needs to report nothing: on
one server, the edge names the slot that answered (`X-Deploy-Slot`) and that slot's containers
were built from the sha; on Swarm, every task runs the sha's image. An app that does report
its version (invoke.yaml `health_version`) must report the deployed sha too. An exited or
restarting container fails at once instead of waiting out the deadline.
"""
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

HEALTHY, WAITING, FAILED = "healthy", "waiting", "failed"
# The response header the edge adds to every answer: the slot that gave it.
SLOT_HEADER = "X-Deploy-Slot"
# health_body: the story's format (`{"success": true, "data": {"status": "healthy"}}`), or any
# body at all with a 200.
STORY, ANY_BODY = "story", "any"


@dataclass
class Answer:
    """What one place answered on the health path."""
    where: str                     # "slot green", "host", "public URL"
    status: Optional[int]          # None: nothing answered
    body: str = ""
    headers: Dict[str, str] = field(default_factory=dict)   # names in lower case

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())


@dataclass
class Probe:
    """One observation of the release, from the host and from the caller."""
    containers: List[dict] = field(default_factory=list)   # running.parse_inspect rows
    answers: List[Answer] = field(default_factory=list)
    error: str = ""


@dataclass
class Verdict:
    state: str
    reason: str


def json_at(body: str, path: str) -> object:
    """The value at dotted `path` (`data.version`) of a JSON body, or None."""
    try:
        value = json.loads(body)
        for key in path.split("."):
            value = value[key]
        return value
    except (ValueError, KeyError, TypeError, IndexError):
        return None


@dataclass(frozen=True)
class HealthContract:
    """What the app's health answer must say (invoke.yaml `health_body`, `health_version`)."""
    body: str = STORY
    version_at: str = ""   # where the app reports its sha: `data.version`, `header:X-Version`

    def body_problem(self, body: str) -> Optional[str]:
        """Why a 200 answer's body does not say healthy, or None when it does."""
        if self.body == ANY_BODY:
            return None
        if json_at(body, "success") is True and json_at(body, "data.status") == "healthy":
            return None
        return (f"health body does not say healthy (success: true, data.status: healthy): "
                f"{body.strip()[:120] or '(empty)'}")

    def version(self, answer: Answer) -> Optional[str]:
        """The version the app reported in `answer` (None: it reported none)."""
        if self.version_at.startswith("header:"):
            return answer.header(self.version_at[len("header:"):])
        value = json_at(answer.body, self.version_at)
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Expected:
    """The release a probe must find: its sha and services (`built`: those built from the sha,
    whose containers' revision label must be it), what its health answers must say, and on one
    server the slot the edge must name as the one that answered (None on Swarm)."""
    sha: str
    services: Sequence[str]
    built: Sequence[str] = ()
    contract: HealthContract = HealthContract()
    slot: Optional[str] = None


def failing_checks(body: str) -> str:
    """` (database: error: ...)` from a health body's failing checks, or ''."""
    checks = json_at(body, "data.checks")
    if not isinstance(checks, dict):
        return ""
    bad = [f"{k}: {v}" for k, v in checks.items() if v != "ok"]
    return f" ({'; '.join(bad)[:200]})" if bad else ""


def who_answered(answer: Answer, expected: Expected) -> Optional[str]:
    """Why `answer` may not be the expected release's (another slot, another version), or None."""
    if expected.slot:
        slot = answer.header(SLOT_HEADER)
        if slot is None:
            return (f"{answer.where}: the answer has no {SLOT_HEADER} header (not through the "
                    "tool's edge proxy?)")
        if slot != expected.slot:
            return f"{answer.where}: answered by slot {slot}, not {expected.slot}"
    if expected.contract.version_at:
        version = expected.contract.version(answer)
        if version != expected.sha:
            return (f"{answer.where}: serving version {(version or '?')[:12]}, "
                    f"not {expected.sha[:12]}")
    return None


def assess(probe: Probe, expected: Expected,
           restarts_before: Optional[Dict[str, int]] = None) -> Verdict:
    """Pure decision: healthy, still waiting (with why), or failed for good (with why).

    `restarts_before` maps container id -> restart count seen before the switch; a container
    that restarted since (or a new one that restarted at all) has crashed."""
    restarts_before = restarts_before or {}
    by_service = {c.get("Service"): c for c in probe.containers}
    for name in expected.services:
        container = by_service.get(name)
        if container is None:
            return Verdict(WAITING, f"{name}: no container yet")
        state = container.get("State", "")
        code = container.get("ExitCode")
        if state in ("exited", "dead", "restarting"):
            return Verdict(FAILED, f"{name} container is {state}"
                           + (f" (exit code {code})" if code not in (None, "") else ""))
        restarts = container.get("RestartCount") or 0
        if restarts > restarts_before.get(container.get("Id") or "", 0):
            return Verdict(FAILED, f"{name} container restarted (crashed, last exit code {code})")
        if state != "running":
            return Verdict(WAITING, f"{name}: {state or 'unknown state'}")
        revision = container.get("Revision") or "an unlabelled image"
        if name in expected.built and revision != expected.sha:
            return Verdict(WAITING, f"{name}: runs {revision[:12]}, not {expected.sha[:12]}")
    if probe.error:
        return Verdict(WAITING, probe.error)
    for answer in probe.answers:
        if answer.status != 200:
            return Verdict(WAITING, f"{answer.where}: health answered {answer.status or 'nothing'}"
                                    + failing_checks(answer.body))
        problem = expected.contract.body_problem(answer.body)
        if problem:
            return Verdict(WAITING, f"{answer.where}: {problem}")
    for name in expected.services:
        # "starting": its own healthcheck has not run yet; the HTTP checks above just passed
        # through the whole chain, which is what that healthcheck would find out.
        health = by_service[name].get("Health", "")
        if health not in ("", "healthy", "starting"):
            return Verdict(WAITING, f"{name}: {health}")
    for answer in probe.answers:
        problem = who_answered(answer, expected)
        if problem:
            return Verdict(WAITING, problem)
    proof = (f"answered by slot {expected.slot}" if expected.slot else "")
    if expected.contract.version_at:
        proof = ", ".join(filter(None, [proof, "with the deployed version"]))
    return Verdict(HEALTHY, "all services running; health 200" + (f" {proof}" if proof else ""))


@dataclass
class Outcome:
    verdict: Verdict
    probe: Probe
    waited: float


def wait_until_healthy(observe: Callable[[], Probe], expected: Expected, timeout: float,
                       interval: float = 1.0, settle: float = 0.0,
                       restarts_before: Optional[Dict[str, int]] = None,
                       on_wait: Optional[Callable[[float, Verdict], None]] = None,
                       clock: Callable[[], float] = time.monotonic,
                       sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Poll `observe` every `interval` until healthy for `settle` seconds in a row, failed, or
    `timeout` seconds have passed. Anything but healthy after the first healthy probe fails:
    a release that crashes right after it came up is not a good release."""
    started = clock()
    healthy_since = None
    while True:
        looked = clock()                 # a look takes time: it counts from when it began
        probe = observe()
        verdict = assess(probe, expected, restarts_before)
        now = clock()
        waited = now - started
        if verdict.state == FAILED:
            return Outcome(verdict, probe, waited)
        if verdict.state == HEALTHY:
            healthy_since = looked if healthy_since is None else healthy_since
            if looked - healthy_since >= settle:
                return Outcome(verdict, probe, waited)
        elif healthy_since is not None:
            return Outcome(Verdict(FAILED, f"unhealthy again {now - healthy_since:.1f}s after it "
                                           f"came up: {verdict.reason}"), probe, waited)
        elif waited >= timeout:
            return Outcome(Verdict(FAILED, f"not healthy after {timeout:.0f}s: {verdict.reason}"),
                           probe, waited)
        if on_wait and verdict.state == WAITING:
            on_wait(waited, verdict)
        if healthy_since is not None:   # the next look: when the settle is over, if sooner
            pause = min(interval, healthy_since + settle - now)
        else:
            pause = min(interval, timeout - waited)
        sleep(max(0.0, pause))


def watch_window(observe: Callable[[], Probe], expected: Expected, seconds: float,
                 went_live: float, interval: float = 1.0,
                 restarts_before: Optional[Dict[str, int]] = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """After the switch: observe every `interval` until `seconds` after `went_live`.

    A crash (a container exited, restarting, or restarted since `restarts_before`) fails at
    once; anything else that is not healthy fails when the next observation agrees (one slow
    answer on a busy host is not a broken release). `waited` is the time since it went live."""
    misses = 0
    while True:
        began = clock()
        probe = observe()
        verdict = assess(probe, expected, restarts_before)
        after = clock() - went_live
        misses = 0 if verdict.state == HEALTHY else misses + 1
        if verdict.state == FAILED or misses >= 2:
            return Outcome(Verdict(FAILED, f"{verdict.reason}, {after:.1f}s after it went live"),
                           probe, after)
        if after >= seconds and not misses:
            return Outcome(Verdict(HEALTHY, f"healthy for {seconds:.0f}s after the switch"),
                           probe, after)
        next_look = began + interval
        if not misses:  # a clean window's last look is at its very end
            next_look = min(next_look, went_live + seconds)
        sleep(max(0.0, next_look - clock()))
