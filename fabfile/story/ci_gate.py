"""Only tested commits reach staging.

In GitHub Actions (or with --require-ci), before anything is built, the GitHub API must say
that the sha is on the main branch and that every required CI check succeeded for it. YAML
`needs:` already orders the jobs; this check makes the rule hold for manual dispatches, re-runs
and developer shells too.

Only check runs made by GitHub Actions count (any app can create a check run with any name).
In Actions, only those of the deploy's own workflow run count too (its check suite): CI runs
in that run as a reusable workflow, so no other run's checks, in progress or failed, can decide.
Every page of check runs is read. Any answer that is not what the API documents fails closed.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Sequence
from urllib.parse import urlparse

import requests

from ..errors import DeployError

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter

TIMEOUT = 10
ACTIONS_APP = "github-actions"
API_VERSION = "2022-11-28"
MAX_PAGES = 20   # 2,000 check runs on one commit: far past any real CI


class GateAnswer(Exception):
    """The API answered something the gate cannot trust; the message says what."""


def is_required(environ: Mapping[str, str], flag: bool) -> bool:
    return flag or environ.get("GITHUB_ACTIONS") == "true"


def on_branch(compare: dict) -> bool:
    """`compare/<branch>...<sha>`: the sha is on the branch when it is identical or behind it."""
    return compare.get("status") in ("identical", "behind")


# The job of deploy-staging.yml that runs ci.yml as a reusable workflow: its check runs are
# named `ci / <job name>`.
CI_CALLER = "ci"


def matches(run_name: str, required: str, any_caller: bool = False) -> bool:
    """A required job's check run, run directly or as deploy-staging.yml's reusable workflow
    (`ci / <name>`). Any `<caller> / <name>` only within the deploy's own workflow run
    (`any_caller`): outside it, another workflow's job could carry the name."""
    if run_name in (required, f"{CI_CALLER} / {required}"):
        return True
    return any_caller and run_name.endswith(" / " + required)


def check_problems(check_runs: List[dict], required: Sequence[str],
                   suite: Optional[int] = None) -> List[str]:
    """For each required check, the latest run made by GitHub Actions (in `suite`, when given)
    must have completed with success."""
    ours = [r for r in check_runs if (r.get("app") or {}).get("slug") == ACTIONS_APP
            and (suite is None or (r.get("check_suite") or {}).get("id") == suite)]
    problems = []
    for name in required:
        runs = [r for r in ours if matches(str(r.get("name", "")), name, suite is not None)]
        if not runs:
            problems.append(f"CI check {name!r} has not run for this commit"
                            + (" in this workflow run" if suite is not None else ""))
            continue
        latest = max(runs, key=lambda r: (r.get("started_at") or "", r.get("id") or 0))
        if latest.get("status") != "completed":
            problems.append(f"CI check {name!r} is still {latest.get('status')}")
        elif latest.get("conclusion") != "success":
            problems.append(f"CI check {name!r} concluded {latest.get('conclusion')}")
    return problems


def next_page(link_header: str) -> Optional[str]:
    """The `rel="next"` URL of a GitHub `Link` header, if any."""
    match = re.search(r'<([^>]+)>;\s*rel="next"', link_header or "")
    return match.group(1) if match else None


def same_origin(url: str, base: str) -> bool:
    a, b = urlparse(url), urlparse(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


class GitHub:
    """The few GitHub REST calls the gate makes; every answer is checked before use."""

    def __init__(self, api: str, repo: str, token: str, get: Optional[Callable] = None):
        self.base = f"{api.rstrip('/')}/repos/{repo}"
        self.get = get or requests.get
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                        "X-GitHub-Api-Version": API_VERSION}

    def _json(self, url: str, what: str, params: Optional[dict] = None) -> Any:
        try:
            answer = self.get(url, params=params, headers=self.headers, timeout=TIMEOUT,
                              allow_redirects=False)
        except requests.RequestException as exc:
            raise GateAnswer(f"cannot ask the GitHub API {what} ({type(exc).__name__})") from None
        if answer.status_code != 200:
            raise GateAnswer(f"the GitHub API answered {answer.status_code} {what}")
        try:
            body = answer.json()
        except ValueError:
            raise GateAnswer(f"the GitHub API answered {what} with something that is not JSON") from None
        if not isinstance(body, dict):
            raise GateAnswer(f"the GitHub API answered {what} with an unexpected document")
        return body, answer.headers.get("Link", "")

    def compare(self, branch: str, sha: str) -> dict:
        return self._json(f"{self.base}/compare/{branch}...{sha}",
                          f"comparing {sha[:12]} with {branch}")[0]

    def run_suite(self, run_id: str) -> int:
        """The check suite of a workflow run (the deploy's own)."""
        body, _ = self._json(f"{self.base}/actions/runs/{run_id}", f"about workflow run {run_id}")
        if not isinstance(body.get("check_suite_id"), int):
            raise GateAnswer(f"the GitHub API gave no check suite for workflow run {run_id}")
        return body["check_suite_id"]

    def check_runs(self, sha: str) -> List[dict]:
        """Every check run of the commit, all pages; the count must match `total_count`."""
        what = f"listing check runs of {sha[:12]}"
        url, runs, total = f"{self.base}/commits/{sha}/check-runs", [], None
        params: Optional[dict] = {"per_page": 100, "filter": "all"}
        for _ in range(MAX_PAGES):
            body, link = self._json(url, what, params)
            page, count = body.get("check_runs"), body.get("total_count")
            if not isinstance(page, list) or not isinstance(count, int) \
                    or not all(isinstance(r, dict) for r in page):
                raise GateAnswer(f"the GitHub API answered {what} with an unexpected document")
            runs += page
            total = count if total is None else total
            url, params = next_page(link) or "", None
            if not url:
                break
            if not same_origin(url, self.base):   # the token goes only where it was meant to
                raise GateAnswer(f"the GitHub API's next page of {what} is on another host "
                                 f"({urlparse(url).hostname}): not followed")
        else:
            raise GateAnswer(f"more than {MAX_PAGES} pages of check runs {what}")
        if len(runs) != total:
            raise GateAnswer(f"the GitHub API listed {len(runs)} of {total} check runs {what}")
        return runs


def verify(sha: str, api: str, repo: str, token: str, branch: str, required: Sequence[str],
           run_id: Optional[str] = None, get: Optional[Callable] = None) -> List[str]:
    """Ask the GitHub API; return what stops this sha from being deployed (empty: go ahead).
    With `run_id` (in Actions), only that workflow run's own checks count."""
    github = GitHub(api, repo, token, get)
    try:
        problems = [] if on_branch(github.compare(branch, sha)) else [f"{sha[:12]} is not on {branch}"]
        suite = github.run_suite(run_id) if run_id else None
        return problems + check_problems(github.check_runs(sha), required, suite)
    except GateAnswer as exc:
        return [str(exc)]


def enforce(settings: Settings, sha: str, reporter: Reporter, get: Optional[Callable] = None) -> None:
    """Raise DeployError unless the GitHub API confirms the sha is on the branch and CI passed
    (in Actions: in this very workflow run, GITHUB_RUN_ID)."""
    if not settings.ci_checks:
        raise DeployError("cannot verify that CI passed: invoke.yaml deploy.ci_checks names no CI "
                          "check (list the names of your CI workflow's jobs, as GitHub shows them)")
    missing = [n for n in ("GITHUB_TOKEN", "GITHUB_REPOSITORY") if not settings.values.get(n)]
    if missing:
        raise DeployError(f"cannot verify that CI passed for {sha[:12]}: {', '.join(missing)} not "
                          "set (in Actions, pass GITHUB_TOKEN to the deploy step)")
    with reporter.step(f"verify CI passed for {sha[:12]} and it is on {settings.ci_branch}"):
        problems = verify(sha, settings.GITHUB_API_URL, settings.GITHUB_REPOSITORY or "",
                          settings.GITHUB_TOKEN or "", settings.ci_branch, settings.ci_checks,
                          settings.GITHUB_RUN_ID, get)
        if problems:
            raise DeployError(f"refusing to deploy an untested commit: {'; '.join(problems)}")
