"""Only tested commits deploy: the GitHub API's answers decide. Against a local stand-in for the
API on 127.0.0.1 that answers in the shape of GitHub's REST description (2022-11-28): check runs
with `head_sha`, `app`, `check_suite`, nullable `started_at`/`completed_at`, `total_count`,
pages linked by the `Link` header, and `filter=latest` (by `completed_at`) unless told `all`."""
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from staging_deploy.story.ci_gate import check_problems, is_required, next_page, on_branch, verify
from tests.unit.test_cli import inv

SHA = "9" * 40
LINT, INTEGRATION = "Lint and unit tests", "Integration tests (real registry, SSH staging host)"
REQUIRED = [LINT, INTEGRATION]
OUR_SUITE, OTHER_SUITE = 501, 502


def run(name, conclusion="success", status="completed", started="2026-01-01T00:00:00Z",
        run_id=1, app="github-actions", suite=OUR_SUITE):
    completed = started.replace("00:00:00", "00:05:00") if status == "completed" else None
    return {"id": run_id, "head_sha": SHA, "name": name, "status": status,
            "conclusion": conclusion if status == "completed" else None,
            "started_at": started, "completed_at": completed,
            "app": {"id": 15368, "slug": app, "name": app},
            "check_suite": {"id": suite}}


class FakeGitHub(BaseHTTPRequestHandler):
    """The GitHub REST API for one commit, as configured by each test."""
    runs, compare, suite, seen, per_page, broken = [], {"status": "behind"}, OUR_SUITE, [], 100, None
    next_host = None

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        FakeGitHub.seen.append((url.path, query, self.headers.get("Authorization")))
        if FakeGitHub.broken:
            return self.reply(*FakeGitHub.broken)
        if "/compare/" in url.path:
            return self.reply(200, FakeGitHub.compare)
        if "/actions/runs/" in url.path:
            return self.reply(200, {"id": 77, "check_suite_id": FakeGitHub.suite})
        runs = FakeGitHub.runs
        if query.get("filter", ["latest"])[0] == "latest":   # the API's default
            latest = {}
            for r in runs:
                key = r["completed_at"] or "9999"
                if r["name"] not in latest or key > (latest[r["name"]]["completed_at"] or "9999"):
                    latest[r["name"]] = r
            runs = list(latest.values())
        page, size = int(query.get("page", ["1"])[0]), FakeGitHub.per_page
        chunk = runs[(page - 1) * size:page * size]
        link = ""
        if page * size < len(runs):
            link = (f'<http://{FakeGitHub.next_host or self.headers["Host"]}{url.path}?page='
                    f'{page + 1}&per_page={size}'
                    f'&filter={query.get("filter", ["latest"])[0]}>; rel="next"')
        self.reply(200, {"total_count": len(runs), "check_runs": chunk}, link)

    def reply(self, status, body, link=""):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        if link:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def github():
    FakeGitHub.runs, FakeGitHub.compare, FakeGitHub.seen = [], {"status": "behind"}, []
    FakeGitHub.per_page, FakeGitHub.broken, FakeGitHub.suite = 100, None, OUR_SUITE
    FakeGitHub.next_host = None
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def ask(api, run_id="77"):
    return verify(SHA, api, "acme/app", "tok", "main", REQUIRED, run_id)


def test_required_in_actions_or_when_asked():
    assert is_required({"GITHUB_ACTIONS": "true"}, False)
    assert is_required({}, True)
    assert not is_required({}, False)


def test_on_branch_means_identical_or_behind_the_branch_head():
    assert on_branch({"status": "behind"}) and on_branch({"status": "identical"})
    assert not on_branch({"status": "ahead"}) and not on_branch({"status": "diverged"})


def test_every_required_check_must_have_succeeded():
    runs = [run("ci / " + LINT), run(INTEGRATION, "failure")]
    assert check_problems(runs, REQUIRED) == [f"CI check {INTEGRATION!r} concluded failure"]
    assert check_problems([run(LINT)], REQUIRED) == [
        f"CI check {INTEGRATION!r} has not run for this commit"]
    assert check_problems([run(LINT, status="in_progress"), run(INTEGRATION)], REQUIRED) == [
        f"CI check {LINT!r} is still in_progress"]


def test_a_successful_re_run_counts():
    runs = [run(INTEGRATION, "failure", run_id=1),
            run(INTEGRATION, started="2026-01-02T00:00:00Z", run_id=2), run(LINT)]
    assert check_problems(runs, REQUIRED) == []


def test_a_passing_run_of_the_same_name_from_another_app_does_not_count(github):
    FakeGitHub.runs = [run("ci / " + LINT, run_id=1),
                       run("ci / " + INTEGRATION, "failure", run_id=2),
                       run("anything / " + INTEGRATION, started="2026-01-03T00:00:00Z", run_id=3,
                           app="some-other-app")]
    assert ask(github) == [f"CI check {INTEGRATION!r} concluded failure"]


def test_in_actions_only_the_deploys_own_workflow_run_counts(github):
    """The other run's checks (still running, or failed) cannot decide for this one."""
    FakeGitHub.runs = [run("ci / " + LINT, run_id=1), run("ci / " + INTEGRATION, run_id=2),
                       run(LINT, status="in_progress", started="2026-01-02T00:00:00Z", run_id=3,
                           suite=OTHER_SUITE),
                       run(INTEGRATION, "failure", started="2026-01-02T00:00:00Z", run_id=4,
                           suite=OTHER_SUITE)]
    assert ask(github) == []
    paths = [path for path, _, _ in FakeGitHub.seen]
    assert "/repos/acme/app/actions/runs/77" in paths
    FakeGitHub.suite = OTHER_SUITE       # the deploy's run is the other one
    assert ask(github) == [f"CI check {LINT!r} is still in_progress",
                           f"CI check {INTEGRATION!r} concluded failure"]
    assert ask(github, run_id=None)[0] == f"CI check {LINT!r} is still in_progress"   # a shell


def test_every_page_is_read(github):
    FakeGitHub.per_page = 2
    FakeGitHub.runs = [run(f"other {i}", run_id=10 + i) for i in range(5)] + \
                      [run("ci / " + LINT, run_id=1), run("ci / " + INTEGRATION, "failure", run_id=2)]
    assert ask(github) == [f"CI check {INTEGRATION!r} concluded failure"]
    pages = [q.get("page", ["1"])[0] for path, q, _ in FakeGitHub.seen if path.endswith("/check-runs")]
    assert pages == ["1", "2", "3", "4"]
    assert all(q.get("filter") == ["all"] for path, q, _ in FakeGitHub.seen
               if path.endswith("/check-runs"))


@pytest.mark.parametrize("answer,expected", [
    ((500, {"message": "boom"}), "the GitHub API answered 500 comparing"),
    ((200, b"<html>proxy login</html>"), "with something that is not JSON"),
    ((200, b"[]"), "with an unexpected document"),
    ((200, b"null"), "with an unexpected document"),
])
def test_any_unexpected_answer_fails_closed_in_one_line(github, answer, expected):
    FakeGitHub.broken = answer
    problems = ask(github)
    assert len(problems) == 1 and expected in problems[0] and "\n" not in problems[0]


def test_a_check_runs_document_of_the_wrong_shape_fails_closed(github, mocker):
    class Odd:
        status_code, headers = 200, {}

        def __init__(self, body):
            self.body = body

        def json(self):
            return self.body

    answers = iter([Odd({"status": "behind"}), Odd({"check_suite_id": OUR_SUITE}),
                    Odd({"total_count": 3, "check_runs": [run(LINT)]})])
    problems = verify(SHA, "https://api.example", "acme/app", "tok", "main", REQUIRED, "77",
                      lambda *a, **k: next(answers))
    assert problems == [f"the GitHub API listed 1 of 3 check runs listing check runs of {SHA[:12]}"]


def test_a_timeout_fails_closed(github, mocker):
    import requests
    get = mocker.Mock(side_effect=requests.Timeout())
    assert verify(SHA, github, "acme/app", "tok", "main", REQUIRED, None, get) == [
        f"cannot ask the GitHub API comparing {SHA[:12]} with main (Timeout)"]


def test_the_next_page_comes_from_the_link_header():
    link = ('<https://api.github.com/x?page=2>; rel="next", '
            '<https://api.github.com/x?page=5>; rel="last"')
    assert next_page(link) == "https://api.github.com/x?page=2"
    assert next_page("") is None


def test_in_actions_an_untested_commit_is_refused_before_anything_is_built(environ, github):
    FakeGitHub.runs = [run("ci / " + LINT), run("ci / " + INTEGRATION, "failure", run_id=2)]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = inv("deploy.staging", "--sha", head, env=dict(
        environ, GITHUB_ACTIONS="true", GITHUB_API_URL=github, GITHUB_REPOSITORY="acme/app",
        GITHUB_TOKEN="ghs_secret_token_value", GITHUB_RUN_ID="77"))
    assert result.returncode == 1
    assert (f"refusing to deploy an untested commit: CI check {INTEGRATION!r} concluded failure"
            in result.stderr)
    assert "--> build" not in result.stdout
    assert "ghs_secret_token_value" not in result.stdout + result.stderr
    assert FakeGitHub.seen and FakeGitHub.seen[0][2] == "Bearer ghs_secret_token_value"


def test_a_next_page_on_another_host_is_not_followed_with_the_token(github):
    FakeGitHub.per_page, FakeGitHub.next_host = 1, "attacker.example:80"
    FakeGitHub.runs = [run("ci / " + LINT, run_id=1), run("ci / " + INTEGRATION, run_id=2)]
    problems = ask(github)
    assert problems == ["the GitHub API's next page of listing check runs of 999999999999 is on "
                        "another host (attacker.example): not followed"]
    assert sum(path.endswith("/check-runs") for path, _, _ in FakeGitHub.seen) == 1


def test_outside_actions_only_the_deploy_workflows_caller_prefix_counts(github):
    """From a shell (no run id) any workflow's checks count: a job of another workflow named
    `evil / Lint and unit tests` must not stand in for ours."""
    FakeGitHub.runs = [run("evil / " + LINT, run_id=1, suite=OTHER_SUITE),
                       run("evil / " + INTEGRATION, run_id=2, suite=OTHER_SUITE)]
    assert ask(github, run_id=None) == [f"CI check {LINT!r} has not run for this commit",
                                        f"CI check {INTEGRATION!r} has not run for this commit"]
    FakeGitHub.runs += [run("ci / " + LINT, run_id=3), run(INTEGRATION, run_id=4)]
    assert ask(github, run_id=None) == []


def test_no_ci_check_named_fails_closed(settings):
    """A project whose invoke.yaml names no CI check (the tool's default) cannot pass the gate."""
    import io
    from dataclasses import replace

    import pytest

    from staging_deploy.errors import DeployError
    from staging_deploy.report import Reporter
    from staging_deploy.story.ci_gate import enforce
    with pytest.raises(DeployError, match="deploy.ci_checks names no CI check"):
        enforce(replace(settings, ci_checks=()), SHA, Reporter(stream=io.StringIO()),
                get=lambda *a, **k: None)
