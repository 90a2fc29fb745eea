import json

from fabfile.health import FAILED, HEALTHY, WAITING, Probe, assess, wait_until_healthy
from tests.conftest import FakeClock

SHA = "c" * 40
SERVICES = ["frontend", "backend", "postgres", "redis"]


def body(version=SHA, status="healthy"):
    return json.dumps({"success": True, "data": {"status": status, "version": version}})


def containers(**overrides):
    rows = []
    for name in SERVICES:
        state, health = overrides.get(name, ("running", "healthy"))
        rows.append({"Service": name, "State": state, "Health": health, "ExitCode": 0})
    return rows


def healthy_probe(**changes):
    probe = Probe(containers(), 200, body(), 200, body())
    for key, value in changes.items():
        setattr(probe, key, value)
    return probe


def test_all_running_and_both_checks_report_the_sha_is_healthy():
    assert assess(healthy_probe(), SHA, SERVICES).state == HEALTHY


def test_old_version_still_answering_is_not_healthy():
    verdict = assess(healthy_probe(public_body=body("d" * 40)), SHA, SERVICES)
    assert verdict.state == WAITING and "dddddddddddd" in verdict.reason


def test_public_503_keeps_waiting():
    verdict = assess(healthy_probe(public_status=503), SHA, SERVICES)
    assert verdict.state == WAITING and "public URL" in verdict.reason


def test_unhealthy_container_keeps_waiting_even_when_http_answers():
    probe = healthy_probe(containers=containers(backend=("running", "unhealthy")))
    assert assess(probe, SHA, SERVICES).state == WAITING


def test_starting_container_counts_once_the_http_chain_answers_with_the_sha():
    probe = healthy_probe(containers=containers(backend=("running", "starting")))
    assert assess(probe, SHA, SERVICES).state == HEALTHY
    probe.host_status = 503
    assert assess(probe, SHA, SERVICES).state == WAITING


def test_a_candidate_slot_is_judged_without_the_public_url():
    probe = healthy_probe()
    probe.public_checked, probe.public_status, probe.public_body = False, None, ""
    assert assess(probe, SHA, SERVICES).state == HEALTHY


def test_exited_or_restarting_container_fails_at_once():
    for state in ("exited", "restarting", "dead"):
        probe = healthy_probe(containers=containers(backend=(state, "")))
        verdict = assess(probe, SHA, SERVICES)
        assert verdict.state == FAILED and f"backend container is {state}" in verdict.reason


def test_missing_container_keeps_waiting():
    probe = healthy_probe(containers=[c for c in containers() if c["Service"] != "frontend"])
    assert assess(probe, SHA, SERVICES).state == WAITING


def test_wait_returns_as_soon_as_healthy():
    clock = FakeClock()
    probes = iter([healthy_probe(public_status=None)] * 3 + [healthy_probe()])
    outcome = wait_until_healthy(lambda: next(probes), SHA, SERVICES, timeout=30, interval=1,
                                 clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY and outcome.waited == 3


def test_wait_gives_up_at_the_deadline_with_the_last_reason():
    clock = FakeClock()
    outcome = wait_until_healthy(lambda: healthy_probe(host_status=503), SHA, SERVICES,
                                 timeout=10, interval=1, clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED
    assert "not healthy after 10s" in outcome.verdict.reason and "503" in outcome.verdict.reason
    assert clock.now == 10


def test_wait_fails_fast_on_a_crashed_container():
    clock = FakeClock()
    probes = iter([healthy_probe(public_status=None),
                   healthy_probe(containers=containers(backend=("restarting", "")))])
    outcome = wait_until_healthy(lambda: next(probes), SHA, SERVICES, timeout=30, interval=1,
                                 clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED and clock.now == 1
