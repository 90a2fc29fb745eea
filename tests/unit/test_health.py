import json

from staging_deploy.story.health import (
    ANY_BODY,
    FAILED,
    HEALTHY,
    WAITING,
    Answer,
    Expected,
    HealthContract,
    Probe,
    assess,
    wait_until_healthy,
    watch_window,
)
from tests.conftest import FakeClock

SHA = "c" * 40
SERVICES = ["frontend", "backend", "postgres", "redis"]
# The story's app: its health body names no version; the edge names the slot that answered.
EXPECTED = Expected(SHA, SERVICES, slot="green")
STORY_BODY = json.dumps({"success": True, "data": {"status": "healthy",
                                                   "timestamp": "2026-01-21T10:00:00Z"}})
SLOT = {"x-deploy-slot": "green"}


def body(version=SHA, status="healthy"):
    """A health body that also reports the version (an app set up with health_version)."""
    return json.dumps({"success": status == "healthy", "data": {"status": status,
                                                                "version": version}})


def containers(**overrides):
    rows = []
    for name in SERVICES:
        state, health = overrides.get(name, ("running", "healthy"))
        rows.append({"Service": name, "State": state, "Health": health, "ExitCode": 0})
    return rows


def healthy_probe(host_status=200, public_status=200, public_body=None, **changes):
    """Healthy unless told otherwise: the host's port and the public URL answer the sha."""
    probe = Probe(containers(), [Answer("host", host_status, STORY_BODY, SLOT),
                                 Answer("public URL", public_status, public_body or STORY_BODY,
                                        SLOT)])
    for key, value in changes.items():
        setattr(probe, key, value)
    return probe


def test_all_running_and_both_checks_report_the_sha_is_healthy():
    assert assess(healthy_probe(), EXPECTED).state == HEALTHY


def test_the_storys_health_body_with_no_version_is_healthy_from_the_expected_slot():
    probe = healthy_probe()
    assert assess(probe, EXPECTED).reason == "all services running; health 200 answered by slot green"
    probe.answers[1].headers = {"x-deploy-slot": "blue"}       # the old slot answered users
    verdict = assess(probe, EXPECTED)
    assert (verdict.state, verdict.reason) == (WAITING, "public URL: answered by slot blue, not green")
    probe.answers[1].headers = {}                               # not through our edge
    assert "no X-Deploy-Slot header" in assess(probe, EXPECTED).reason


def test_a_200_whose_body_does_not_say_healthy_is_not_healthy():
    for text in ('{"success": false, "data": {"status": "healthy"}}',
                 '{"success": true, "data": {"status": "degraded"}}', "<html>index</html>", ""):
        verdict = assess(healthy_probe(public_body=text or " "), EXPECTED)
        assert verdict.state == WAITING and "health body does not say healthy" in verdict.reason
    # health_body: any (an app whose health path answers "ok")
    anything = Expected(SHA, SERVICES, contract=HealthContract(ANY_BODY), slot="green")
    assert assess(healthy_probe(public_body="ok"), anything).state == HEALTHY


def test_an_app_that_reports_its_version_must_report_the_deployed_sha():
    in_body = Expected(SHA, SERVICES, contract=HealthContract(version_at="data.version"),
                       slot="green")
    old = healthy_probe(answers=[Answer("host", 200, body("d" * 40), SLOT)])
    verdict = assess(old, in_body)
    assert (verdict.state, verdict.reason) == (WAITING, "host: serving version dddddddddddd, "
                                                        "not cccccccccccc")
    assert "serving version ?" in assess(healthy_probe(), in_body).reason      # reports none
    probe = healthy_probe(answers=[Answer("host", 200, body(), SLOT)])
    assert assess(probe, in_body).reason.endswith("answered by slot green, with the deployed version")
    in_header = Expected(SHA, SERVICES, contract=HealthContract(version_at="header:X-App-Version"))
    probe = healthy_probe(answers=[Answer("host", 200, STORY_BODY, {"x-app-version": SHA})])
    assert assess(probe, in_header).state == HEALTHY
    probe.answers[0].headers["x-app-version"] = "d" * 40
    assert assess(probe, in_header).state == WAITING


def test_an_app_container_of_another_release_is_not_the_expected_one():
    rows = containers()
    for row in rows:
        row["Revision"] = SHA if row["Service"] == "frontend" else "d" * 40
    built = Expected(SHA, SERVICES, built=["frontend", "backend"], slot="green")
    verdict = assess(healthy_probe(containers=rows), built)
    assert (verdict.state, verdict.reason) == (WAITING, "backend: runs dddddddddddd, not cccccccccccc")


def test_public_503_keeps_waiting():
    verdict = assess(healthy_probe(public_status=503), EXPECTED)
    assert verdict.state == WAITING and "public URL" in verdict.reason


def test_unhealthy_container_keeps_waiting_even_when_http_answers():
    probe = healthy_probe(containers=containers(backend=("running", "unhealthy")))
    assert assess(probe, EXPECTED).state == WAITING


def test_starting_container_counts_once_the_http_chain_answers_with_the_sha():
    probe = healthy_probe(containers=containers(backend=("running", "starting")))
    assert assess(probe, EXPECTED).state == HEALTHY
    probe.answers[0].status = 503
    assert assess(probe, EXPECTED).state == WAITING


def test_a_candidate_slot_is_judged_by_its_own_answer_only():
    probe = healthy_probe(answers=[Answer("slot green", 200, STORY_BODY, SLOT)])
    assert assess(probe, EXPECTED).state == HEALTHY
    probe.answers[0].status = 503
    assert assess(probe, EXPECTED).reason == "slot green: health answered 503"


def test_exited_or_restarting_container_fails_at_once():
    for state in ("exited", "restarting", "dead"):
        probe = healthy_probe(containers=containers(backend=(state, "")))
        verdict = assess(probe, EXPECTED)
        assert verdict.state == FAILED and f"backend container is {state}" in verdict.reason


def test_missing_container_keeps_waiting():
    probe = healthy_probe(containers=[c for c in containers() if c["Service"] != "frontend"])
    assert assess(probe, EXPECTED).state == WAITING


def test_wait_returns_as_soon_as_healthy():
    clock = FakeClock()
    probes = iter([healthy_probe(public_status=None)] * 3 + [healthy_probe()])
    outcome = wait_until_healthy(lambda: next(probes), EXPECTED, timeout=30, interval=1,
                                 clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY and outcome.waited == 3


def test_the_settle_ends_at_its_length_not_at_the_next_whole_interval():
    clock = FakeClock()

    def look():                      # each look takes 0.15 s, as a few docker calls do
        clock.sleep(0.15)
        return healthy_probe()

    outcome = wait_until_healthy(look, EXPECTED, timeout=30, interval=1, settle=2,
                                 clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY
    assert round(clock.now, 2) == 2.15       # looks from 0, 1.15 and 2.0: settled (not at 2.45)


def test_wait_gives_up_at_the_deadline_with_the_last_reason():
    clock = FakeClock()
    outcome = wait_until_healthy(lambda: healthy_probe(host_status=503), EXPECTED,
                                 timeout=10, interval=1, clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED
    assert "not healthy after 10s" in outcome.verdict.reason and "503" in outcome.verdict.reason
    assert clock.now == 10


def test_wait_fails_fast_on_a_crashed_container():
    clock = FakeClock()
    probes = iter([healthy_probe(public_status=None),
                   healthy_probe(containers=containers(backend=("restarting", "")))])
    outcome = wait_until_healthy(lambda: next(probes), EXPECTED, timeout=30, interval=1,
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
    outcome = watch_window(observe, EXPECTED, seconds=10, went_live=0.0, interval=1,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY and "10s after the switch" in outcome.verdict.reason
    assert looks[0] == 0.4 and looks[-1] == 10.0
    assert all(b - a <= 1.0 + 1e-9 for a, b in zip(looks, looks[1:]))


def test_a_crash_in_the_window_fails_at_once_and_says_when():
    clock = FakeClock()
    probes = iter([healthy_probe()] * 6 + [crashed()])
    outcome = watch_window(lambda: next(probes), EXPECTED, seconds=15, went_live=0.0,
                           interval=1, restarts_before={"backend": 0}, clock=clock,
                           sleep=clock.sleep)
    assert outcome.verdict.state == FAILED
    assert outcome.verdict.reason == ("backend container restarted (crashed, last exit code 0), "
                                      "6.0s after it went live")


def test_one_slow_answer_is_forgiven_two_in_a_row_are_not():
    clock = FakeClock()
    probes = iter([healthy_probe(), healthy_probe(public_status=None), healthy_probe()]
                  + [healthy_probe()] * 10)
    outcome = watch_window(lambda: next(probes), EXPECTED, seconds=5, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY

    clock = FakeClock()
    probes = iter([healthy_probe(), healthy_probe(host_status=503), healthy_probe(host_status=503)])
    outcome = watch_window(lambda: next(probes), EXPECTED, seconds=5, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED
    assert outcome.verdict.reason == "host: health answered 503, 2.0s after it went live"


def test_a_miss_at_the_end_of_the_window_needs_one_more_look():
    clock = FakeClock()
    probes = iter([healthy_probe()] * 3 + [healthy_probe(host_status=503), healthy_probe()])
    outcome = watch_window(lambda: next(probes), EXPECTED, seconds=3, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == HEALTHY and clock.now == 4


def test_the_old_release_answering_users_in_the_window_is_a_failure():
    """The edge hands a failing request to the previous slot: users get its answer."""
    clock = FakeClock()
    old = healthy_probe()
    old.answers[1].headers = {"x-deploy-slot": "blue"}
    probes = iter([old] * 2)
    outcome = watch_window(lambda: next(probes), EXPECTED, seconds=5, went_live=0.0,
                           clock=clock, sleep=clock.sleep)
    assert outcome.verdict.state == FAILED
    assert "public URL: answered by slot blue, not green" in outcome.verdict.reason
