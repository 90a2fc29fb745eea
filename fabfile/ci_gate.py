"""Only tested commits reach staging.

In GitHub Actions (or with --require-ci), before anything is built, the GitHub API must say
that the sha is on the main branch and that every required CI check succeeded for it. YAML
`needs:` already orders the jobs; this check makes the rule hold for manual dispatches, re-runs
and developer shells too.
"""
from typing import Callable, List

import requests

from .errors import DeployError

TIMEOUT = 10


def is_required(environ, flag: bool) -> bool:
    return flag or environ.get("GITHUB_ACTIONS") == "true"


def on_branch(compare: dict) -> bool:
    """`compare/<branch>...<sha>`: the sha is on the branch when it is identical or behind it."""
    return compare.get("status") in ("identical", "behind")


def check_problems(check_runs: List[dict], required: List[str]) -> List[str]:
    """For each required check name (also matched as `<caller> / <name>` from a reusable
    workflow), the latest run must have completed with success."""
    problems = []
    for name in required:
        runs = [r for r in check_runs
                if r.get("name") == name or str(r.get("name", "")).endswith(" / " + name)]
        if not runs:
            problems.append(f"CI check {name!r} has not run for this commit")
            continue
        latest = max(runs, key=lambda r: (r.get("started_at") or "", r.get("id") or 0))
        if latest.get("status") != "completed":
            problems.append(f"CI check {name!r} is still {latest.get('status')}")
        elif latest.get("conclusion") != "success":
            problems.append(f"CI check {name!r} concluded {latest.get('conclusion')}")
    return problems


def verify(sha: str, api: str, repo: str, token: str, branch: str, required: List[str],
           get: Callable = None) -> List[str]:
    """Ask the GitHub API; return what stops this sha from being deployed (empty: go ahead)."""
    get = get or requests.get
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    base = f"{api.rstrip('/')}/repos/{repo}"
    try:
        compare = get(f"{base}/compare/{branch}...{sha}", headers=headers, timeout=TIMEOUT)
        runs = get(f"{base}/commits/{sha}/check-runs", params={"per_page": 100},
                   headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        return [f"cannot ask the GitHub API whether CI passed ({type(exc).__name__})"]
    problems = []
    if compare.status_code != 200:
        problems.append(f"GitHub API answered {compare.status_code} comparing {sha[:12]} with {branch}")
    elif not on_branch(compare.json()):
        problems.append(f"{sha[:12]} is not on {branch}")
    if runs.status_code != 200:
        problems.append(f"GitHub API answered {runs.status_code} listing check runs of {sha[:12]}")
    else:
        problems += check_problems(runs.json().get("check_runs", []), required)
    return problems


def enforce(settings, sha: str, reporter, get: Callable = None) -> None:
    """Raise DeployError unless the GitHub API confirms the sha is on the branch and CI passed."""
    missing = [n for n in ("GITHUB_TOKEN", "GITHUB_REPOSITORY") if not settings.values.get(n)]
    if missing:
        raise DeployError(f"cannot verify that CI passed for {sha[:12]}: {', '.join(missing)} not "
                          "set (in Actions, pass GITHUB_TOKEN to the deploy step)")
    with reporter.step(f"verify CI passed for {sha[:12]} and it is on {settings.ci_branch}"):
        problems = verify(sha, settings.GITHUB_API_URL, settings.GITHUB_REPOSITORY,
                          settings.GITHUB_TOKEN, settings.ci_branch, settings.ci_checks, get)
        if problems:
            raise DeployError(f"refusing to deploy an untested commit: {'; '.join(problems)}")
