import json

from fabfile.health import (
    FAILED,
    HEALTHY,
    WAITING,
    Answer,
    Probe,
    assess,
    wait_until_healthy,
    watch_window,
)
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


def healthy_probe(host_status=200, public_status=200, public_body=None, **changes):
    """Healthy unless told otherwise: the host's port and the public URL answer the sha."""
    probe = Probe(containers(), [Answer("host", host_status, body()),
                                 Answer("public URL", public_status, public_body or body())])
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
    probe.answers[0].status = 503
    assert assess(probe, SHA, SERVICES).state == WAITING


def test_a_candidate_slot_is_judged_by_its_own_answer_only():
    probe = healthy_probe(answers=[Answer("slot blue", 200, body())])
    assert assess(probe, SHA, SERVICES).state == HEALTHY
    probe.answers[0].status = 503
    assert assess(probe, SHA, SERVICES).reason == "slot blue: health answered 503"


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


def test_the_settle_ends_at_its_length_not_at_the_next_whole_interval():
    clock = FakeClock()

    def look():                      # each look takes 0.15 s, as a few docker calls do
        clock.sleep(0.15)
        return healthy_probe()

    outcome = wait_until_healthy(look, SHA, SERVICES, timeout=30, interval=1, settle=2,
                                 clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY
    assert round(clock.now, 2) == 2.15       # looks from 0, 1.15 and 2.0: settled (not at 2.45)


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


# ---- the watch window after the switch ---------------------------------------------------------

def crashed(restarts=1):
    rows = containers()
    for row in rows:
        row.update(Id=row["Service"], RestartCount=restarts if row["Service"] == "backend" else 0)
    return healthy_probe(containers=rows)


def test_a_clean_window_is_observed_every_interval_to_its_very_end():
    clock = FakeClock()
    looks = []

    def observe():
        looks.append(clock.now)
        return healthy_probe()

    clock.now = 0.4   # the switch's own check took a moment
    outcome = watch_window(observe, SHA, SERVICES, seconds=10, went_live=0.0, interval=1,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY and "10s after the switch" in outcome.verdict.reason
    assert looks[0] == 0.4 and looks[-1] == 10.0
    assert all(b - a <= 1.0 + 1e-9 for a, b in zip(looks, looks[1:]))


def test_a_crash_in_the_window_fails_at_once_and_says_when():
    clock = FakeClock()
    probes = iter([healthy_probe()] * 6 + [crashed()])
    outcome = watch_window(lambda: next(probes), SHA, SERVICES, seconds=15, went_live=0.0,
                           interval=1, restarts_before={"backend": 0}, clock=clock,
                           sleep=clock.sleep)
    assert outcome.verdict.state == FAILED
    assert outcome.verdict.reason == ("backend container restarted (crashed, last exit code 0), "
                                      "6.0s after it went live")


def test_one_slow_answer_is_forgiven_two_in_a_row_are_not():
    clock = FakeClock()
    probes = iter([healthy_probe(), healthy_probe(public_status=None), healthy_probe()]
                  + [healthy_probe()] * 10)
    outcome = watch_window(lambda: next(probes), SHA, SERVICES, seconds=5, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY

    clock = FakeClock()
    probes = iter([healthy_probe(), healthy_probe(host_status=503), healthy_probe(host_status=503)])
    outcome = watch_window(lambda: next(probes), SHA, SERVICES, seconds=5, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED
    assert outcome.verdict.reason == "host: health answered 503, 2.0s after it went live"


def test_a_miss_at_the_end_of_the_window_needs_one_more_look():
    clock = FakeClock()
    probes = iter([healthy_probe()] * 3 + [healthy_probe(host_status=503), healthy_probe()])
    outcome = watch_window(lambda: next(probes), SHA, SERVICES, seconds=3, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY and clock.now == 4


def test_the_old_release_answering_users_in_the_window_is_a_failure():
    """The edge hands a failing request to the previous slot: users get its version."""
    clock = FakeClock()
    old = body("d" * 40)
    probes = iter([healthy_probe(public_body=old)] * 2)
    outcome = watch_window(lambda: next(probes), SHA, SERVICES, seconds=5, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED and "serving version dddddddddddd" in outcome.verdict.reason
