"""Deploy the classroom-manager stack to staging: `inv --list` shows every task.

Thin entry point: each task parses its flags, loads validated settings, calls the library in
`fabfile/` (deploy) or `testbed/` (local test environment), and reports. A user error ends
with one clear line and a non-zero exit, never a traceback.
"""
import functools
import os
import subprocess
from pathlib import Path

from invoke import Collection, Exit, task

import testbed as testbed_lib
from fabfile.config import load_settings, read_environment, validate_sha
from fabfile.deploy import deploy_staging
from fabfile.errors import ConfigError, DeployError
from fabfile.images import commit_exists
from fabfile.report import Reporter

ROOT = Path(__file__).resolve().parent


def user_errors(function):
    """Turn DeployError into `error: <message>` and exit 1; Ctrl-C into exit 130."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except DeployError as exc:
            raise Exit(f"error: {exc}", code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
    return wrapper


def settings_for(c, groups, sha=None, need_sha=False):
    """Load and validate settings (and --sha), reporting every problem in one message."""
    problems, settings = [], None
    try:
        environ = read_environment(os.environ, ROOT)
        settings = load_settings(c.config.deploy, environ, groups, ROOT)
    except ConfigError as exc:
        problems += exc.problems
    if need_sha:
        problem = validate_sha(sha, lambda s: commit_exists(s, git_exit_code))
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(problems)
    return settings


def git_exit_code(argv) -> int:
    return subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


@task(help={
    "sha": "full 40-character commit to deploy (CI passes github.sha)",
    "rebuild": "build and push even if staging-<sha> is already in the registry",
    "dry-run": "print the local and remote commands without running anything",
})
@user_errors
def staging(c, sha=None, rebuild=False, dry_run=False):
    """Build, push and release commit --sha on the staging host; wait until it is healthy."""
    settings = settings_for(c, ("ssh", "build", "app"), sha, need_sha=True)
    reporter = Reporter(settings.secrets)
    reporter.say(f"deploying {sha} to {settings.STAGING_URL}" + (" (dry run)" if dry_run else ""))
    deploy_staging(settings, sha, c, reporter, rebuild=rebuild, dry_run=dry_run)


@task(name="up")
@user_errors
def testbed_up(c):
    """Start the local testbed (engine, registry, SSH staging host) and write .env.testbed."""
    path = testbed_lib.up()
    print(f"next: DEPLOY_ENV_FILE={path.name} inv deploy.staging --sha $(git rev-parse HEAD)")


@task(name="down", help={"images": "also remove the images the testbed built"})
@user_errors
def testbed_down(c, images=False):
    """Remove everything the testbed made: containers, network, volumes, keys, .env.testbed."""
    testbed_lib.down(remove_images=images)


deploy = Collection("deploy")
deploy.add_task(staging)
testbed = Collection("testbed")
testbed.add_task(testbed_up)
testbed.add_task(testbed_down)
namespace = Collection(deploy, testbed)
