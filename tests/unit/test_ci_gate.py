"""Only tested commits deploy: the GitHub API's answers decide, here from canned answers and a
local stand-in for the API on 127.0.0.1."""
import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fabfile.ci_gate import check_problems, is_required, on_branch, verify
from tests.unit.test_cli import inv

SHA = "9" * 40
REQUIRED = ["Lint and unit tests", "Integration tests"]


def run(name, conclusion="success", status="completed", started="2026-01-01T00:00:00Z", run_id=1):
    return {"name": name, "status": status, "conclusion": conclusion, "started_at": started, "id": run_id}


def test_required_in_actions_or_when_asked():
    assert is_required({"GITHUB_ACTIONS": "true"}, False)
    assert is_required({}, True)
    assert not is_required({}, False)


def test_on_branch_means_identical_or_behind_the_branch_head():
    assert on_branch({"status": "behind"}) and on_branch({"status": "identical"})
    assert not on_branch({"status": "ahead"}) and not on_branch({"status": "diverged"})


def test_every_required_check_must_have_succeeded():
    runs = [run("ci / Lint and unit tests"), run("Integration tests", "failure")]
    assert check_problems(runs, REQUIRED) == ["CI check 'Integration tests' concluded failure"]
    assert check_problems([run("Lint and unit tests")], REQUIRED) == [
        "CI check 'Integration tests' has not run for this commit"]
    assert check_problems([run("Lint and unit tests", None, "in_progress"), run("Integration tests")],
                          REQUIRED) == ["CI check 'Lint and unit tests' is still in_progress"]


def test_a_successful_re_run_counts():
    runs = [run("Integration tests", "failure", run_id=1),
            run("Integration tests", started="2026-01-02T00:00:00Z", run_id=2),
            run("Lint and unit tests")]
    assert check_problems(runs, REQUIRED) == []


class Answer:
    def __init__(self, status, body):
        self.status_code, self.body = status, body

    def json(self):
        return self.body


def test_verify_asks_compare_and_check_runs(mocker):
    get = mocker.Mock(side_effect=[Answer(200, {"status": "ahead"}),
                                   Answer(200, {"check_runs": [run(n) for n in REQUIRED]})])
    problems = verify(SHA, "https://api.example", "acme/app", "tok", "main", REQUIRED, get)
    assert problems == [f"{SHA[:12]} is not on main"]
    first_url = get.call_args_list[0].args[0]
    assert first_url == f"https://api.example/repos/acme/app/compare/main...{SHA}"
    assert get.call_args_list[0].kwargs["headers"]["Authorization"] == "Bearer tok"


class FakeGitHub(BaseHTTPRequestHandler):
    """Answers like the GitHub API for one commit whose integration tests failed."""
    seen = []

    def do_GET(self):
        FakeGitHub.seen.append((self.path, self.headers.get("Authorization")))
        if "/compare/" in self.path:
            body = {"status": "behind"}
        else:
            body = {"check_runs": [run("ci / Lint and unit tests"),
                                   run("ci / Integration tests (real registry, SSH staging host)",
                                       "failure")]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_github():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_in_actions_an_untested_commit_is_refused_before_anything_is_built(environ, fake_github):
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result = inv("deploy.staging", "--sha", head, env=dict(
        environ, GITHUB_ACTIONS="true", GITHUB_API_URL=fake_github, GITHUB_REPOSITORY="acme/app",
        GITHUB_TOKEN="ghs_secret_token_value"))
    assert result.returncode == 1
    assert ("refusing to deploy an untested commit: CI check 'Integration tests (real registry, "
            "SSH staging host)' concluded failure") in result.stderr
    assert "--> build" not in result.stdout
    assert "ghs_secret_token_value" not in result.stdout + result.stderr
    assert FakeGitHub.seen and FakeGitHub.seen[0][1] == "Bearer ghs_secret_token_value"
