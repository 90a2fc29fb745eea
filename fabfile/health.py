"""Deciding whether a release is healthy, waiting for it with a deadline, and watching it once live.

A release is healthy when, at the same moment: every service container is running (and
healthy where it has a healthcheck), and every place it is asked (its slot through the edge's
candidate port; once live, the host's public port and the public URL too) answers the health
path with 200 and reports the deployed sha as `version`. An exited or restarting container
fails at once instead of waiting out the deadline.
"""
import json
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

HEALTHY, WAITING, FAILED = "healthy", "waiting", "failed"


@dataclass
class Answer:
    """What one place answered on the health path."""
    where: str                     # "slot green", "host", "public URL"
    status: Optional[int]          # None: nothing answered
    body: str = ""


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


def reported_version(body: str) -> Optional[str]:
    try:
        return json.loads(body)["data"]["version"]
    except (ValueError, KeyError, TypeError):
        return None


def failing_checks(body: str) -> str:
    """` (database: error: ...)` from a health body's failing checks, or ''."""
    try:
        checks = json.loads(body)["data"]["checks"]
    except (ValueError, KeyError, TypeError):
        return ""
    bad = [f"{k}: {v}" for k, v in checks.items() if v != "ok"]
    return f" ({'; '.join(bad)[:200]})" if bad else ""


def assess(probe: Probe, sha: str, services: Sequence[str],
           restarts_before: Optional[Dict[str, int]] = None) -> Verdict:
    """Pure decision: healthy, still waiting (with why), or failed for good (with why).

    `restarts_before` maps container id -> restart count seen before the switch; a container
    that restarted since (or a new one that restarted at all) has crashed."""
    restarts_before = restarts_before or {}
    by_service = {c.get("Service"): c for c in probe.containers}
    for name in services:
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
    if probe.error:
        return Verdict(WAITING, probe.error)
    for answer in probe.answers:
        if answer.status != 200:
            return Verdict(WAITING, f"{answer.where}: health answered {answer.status or 'nothing'}"
                                    + failing_checks(answer.body))
    for name in services:
        # "starting": its own healthcheck has not run yet; the HTTP checks above just passed
        # through the whole chain, which is what that healthcheck would find out.
        health = by_service[name].get("Health", "")
        if health not in ("", "healthy", "starting"):
            return Verdict(WAITING, f"{name}: {health}")
    for answer in probe.answers:
        version = reported_version(answer.body)
        if version != sha:
            return Verdict(WAITING, f"{answer.where}: serving version {(version or '?')[:12]}, "
                                    f"not {sha[:12]}")
    return Verdict(HEALTHY, "all services running; health 200 with the deployed version")


@dataclass
class Outcome:
    verdict: Verdict
    probe: Probe
    waited: float


def wait_until_healthy(observe: Callable[[], Probe], sha: str, services: Sequence[str],
                       timeout: float, interval: float = 1.0, settle: float = 0.0,
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
        verdict = assess(probe, sha, services, restarts_before)
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


def watch_window(observe: Callable[[], Probe], sha: str, services: Sequence[str], seconds: float,
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
        verdict = assess(probe, sha, services, restarts_before)
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
