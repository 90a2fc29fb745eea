"""Deciding whether a release is healthy, and waiting for it with a deadline.

A release is healthy when, at the same moment: every service container is running (and
healthy where it has a healthcheck), the host's loopback and the public URL both answer the
health path with 200, and both report the deployed sha as `version`. Before the switch, a
release in its slot is checked through the edge's candidate port on the host only. An exited or
restarting container fails at once instead of waiting out the deadline.
"""
import json
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional

HEALTHY, WAITING, FAILED = "healthy", "waiting", "failed"


@dataclass
class Probe:
    """One observation of the release, from the host and from the caller."""
    containers: List[dict] = field(default_factory=list)   # docker compose ps -a --format json
    host_status: Optional[int] = None
    host_body: str = ""
    public_status: Optional[int] = None
    public_body: str = ""
    public_checked: bool = True    # False for a slot that gets no public traffic yet
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


def assess(probe: Probe, sha: str, services, restarts_before=None) -> Verdict:
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
        if restarts > restarts_before.get(container.get("Id"), 0):
            return Verdict(FAILED, f"{name} container restarted (crashed, last exit code {code})")
        if state != "running":
            return Verdict(WAITING, f"{name}: {state or 'unknown state'}")
    if probe.error:
        return Verdict(WAITING, probe.error)
    endpoints = [("host", probe.host_status, probe.host_body)]
    if probe.public_checked:
        endpoints.append(("public URL", probe.public_status, probe.public_body))
    for where, status, body in endpoints:
        if status != 200:
            return Verdict(WAITING, f"{where}: health answered {status or 'nothing'}"
                                    + failing_checks(body))
    for name in services:
        # "starting": its own healthcheck has not run yet; the HTTP checks above just passed
        # through the whole chain, which is what that healthcheck would find out.
        health = by_service[name].get("Health", "")
        if health not in ("", "healthy", "starting"):
            return Verdict(WAITING, f"{name}: {health}")
    for where, _, body in endpoints:
        version = reported_version(body)
        if version != sha:
            return Verdict(WAITING, f"{where}: serving version {(version or '?')[:12]}, "
                                    f"not {sha[:12]}")
    return Verdict(HEALTHY, "all services running; health 200 with the deployed version")


@dataclass
class Outcome:
    verdict: Verdict
    probe: Probe
    waited: float


def wait_until_healthy(observe: Callable[[], Probe], sha: str, services, timeout: float,
                       interval: float = 1.0, settle: float = 0.0, restarts_before=None,
                       on_wait: Callable[[float, Verdict], None] = None,
                       clock=time.monotonic, sleep=time.sleep) -> Outcome:
    """Poll `observe` every `interval` until healthy for `settle` seconds in a row, failed, or
    `timeout` seconds have passed. Anything but healthy after the first healthy probe fails:
    a release that crashes right after it came up is not a good release."""
    started = clock()
    healthy_since = None
    while True:
        probe = observe()
        verdict = assess(probe, sha, services, restarts_before)
        now = clock()
        waited = now - started
        if verdict.state == FAILED:
            return Outcome(verdict, probe, waited)
        if verdict.state == HEALTHY:
            healthy_since = now if healthy_since is None else healthy_since
            if now - healthy_since >= settle:
                return Outcome(verdict, probe, waited)
        elif healthy_since is not None:
            return Outcome(Verdict(FAILED, f"unhealthy again {now - healthy_since:.1f}s after it "
                                           f"came up: {verdict.reason}"), probe, waited)
        elif waited >= timeout:
            return Outcome(Verdict(FAILED, f"not healthy after {timeout:.0f}s: {verdict.reason}"),
                           probe, waited)
        if on_wait and verdict.state == WAITING:
            on_wait(waited, verdict)
        pause = interval if healthy_since is not None else min(interval, timeout - waited)
        sleep(max(0.0, pause))
