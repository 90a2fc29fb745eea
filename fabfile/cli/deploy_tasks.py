"""`deploy.*`: what a developer, CI and the person on call run.

Each task parses its flags, loads validated settings, calls the library, and reports. A user
error ends with one clear line and a non-zero exit (boundary.py), never a traceback.
"""
import os
import sys
from json import dumps
from typing import Optional, Union

from invoke import Collection, Context, Exit, task

from ..compose.certificate import domain, https_on
from ..compose.certificate import ensure as ensure_certificate
from ..compose.slots import reload_edge
from ..config.definitions import SHA_RE
from ..errors import ConfigError, DeployError
from ..ops.incident import exec_in_live, exec_problems, log_problems, show_logs
from ..ops.status import history, read_status, render_history, render_status
from ..report import RedactingStream, Reporter, redact
from ..story.ci_gate import is_required
from ..story.deploy import deploy_staging
from ..story.lock import break_lock, held
from ..story.rollback import rollback_staging
from ..transport.session import HostSession
from .boundary import confirm, lock_wait, quiet_session, reporter_for, user_errors, whole_number
from .project import settings_for


@task(optional=["wait_lock"], help={
    "sha": "full 40-character commit to deploy (CI passes github.sha)",
    "rebuild": "build and push even if staging-<sha> is already in the registry",
    "dry-run": "print the local and remote commands without running anything",
    "force": "deploy even if --sha is older than (an ancestor of) the running release",
    "wait-lock": "if another deploy holds the lock, wait for it (default 600 s, or =SECONDS)",
    "require-ci": "refuse unless the GitHub API says CI passed for --sha and it is on main "
                  "(always on in GitHub Actions)",
})
@user_errors
def staging(c: Context, sha: Optional[str] = None, rebuild: bool = False, dry_run: bool = False,
            force: bool = False, wait_lock: Union[None, bool, str] = None,
            require_ci: bool = False) -> None:
    """Build, push and release commit --sha on the staging host; roll back on any failure."""
    settings = settings_for(c.config.get("deploy", {}), ("host", "build", "app"), sha,
                            need_sha=True)
    assert sha is not None  # settings_for refused a missing or malformed one
    wait = lock_wait(wait_lock)
    reporter = reporter_for(settings)
    reporter.say(f"deploying {sha} to {settings.STAGING_URL}" + (" (dry run)" if dry_run else ""))
    deploy_staging(settings, sha, reporter, rebuild=rebuild, dry_run=dry_run, force=force,
                   wait_lock=wait, require_ci=is_required(os.environ, require_ci))


@task(optional=["wait_lock"], help={
    "to": "the release (full sha) to restore; default (or empty): the last good one before the "
          "current",
    "restore-db": "also restore the database dump taken before the current release's migrations",
    "yes": "do not ask before restoring the database",
    "wait-lock": "if a deploy holds the lock, wait for it (default 600 s, or =SECONDS)",
})
@user_errors
def rollback(c: Context, to: Optional[str] = None, restore_db: bool = False, yes: bool = False,
             wait_lock: Union[None, bool, str] = None) -> None:
    """Restore the previous good release (or --to SHA) from images kept on the host."""
    settings = settings_for(c.config.get("deploy", {}), ("host", "build"))
    to = to or None   # an empty --to (the rollback workflow without input): the default
    if to is not None and not SHA_RE.fullmatch(to):
        raise ConfigError([f"--to {to!r} must be a full 40-character sha (inv deploy.history)"])
    wait = lock_wait(wait_lock)
    rollback_staging(settings, reporter_for(settings), to=to, restore_db=restore_db, yes=yes,
                     wait_lock=wait, confirm=confirm)


@task(name="certificate", optional=["wait_lock"], help={
    "force": "renew even when the certificate in place is not due",
    "wait-lock": "if a deploy holds the lock, wait for it (default 600 s, or =SECONDS)",
    "if-enabled": "with EDGE_TLS other than acme, say so and succeed (the daily workflow)",
})
@user_errors
def certificate_(c: Context, force: bool = False, wait_lock: Union[None, bool, str] = None,
                 if_enabled: bool = False) -> None:
    """Obtain or renew STAGING_URL's HTTPS certificate now, if due (a daily job runs this)."""
    settings = settings_for(c.config.get("deploy", {}), ("host",))
    if if_enabled and not https_on(settings):
        print(f"EDGE_TLS is {settings.EDGE_TLS}: the edge serves no HTTPS, no certificate to renew")
        return
    if not https_on(settings):
        raise ConfigError(["EDGE_TLS is none: the edge serves no HTTPS (set EDGE_TLS=acme and "
                           "an https STAGING_URL to turn it on)"])
    reporter = reporter_for(settings)
    with HostSession(settings, reporter) as host, \
            held(host, settings, "certificate", domain(settings), lock_wait(wait_lock), reporter):
        reporter.say(ensure_certificate(host.runner, settings, reporter,
                                        lambda: reload_edge(host.runner, settings), force=force))


@task(name="status", help={"json": "print machine-readable JSON"})
@user_errors
def status(c: Context, json: bool = False) -> None:
    """Show the running release, its health, the deploy lock and the last ledger entry."""
    settings = settings_for(c.config.get("deploy", {}), ("host",))
    with quiet_session(settings) as host:
        result = read_status(host.runner, settings)
    reporter_for(settings).say(dumps(result, indent=2) if json else render_status(result))
    if not result["healthy"]:
        raise Exit(code=1)


@task(name="history", help={"json": "print machine-readable JSON", "limit": "how many (default 20)"})
@user_errors
def history_(c: Context, json: bool = False, limit: str = "20") -> None:
    """List the last deploys and rollbacks from the ledger on the host."""
    count = whole_number("--limit", limit)
    settings = settings_for(c.config.get("deploy", {}), ("host",))
    with quiet_session(settings) as host:
        rows = history(host.runner, settings, count)
    reporter_for(settings).say(dumps(rows, indent=2) if json else render_history(rows))


@task(help={"yes": "do not ask first"})
@user_errors
def unlock(c: Context, yes: bool = False) -> None:
    """Remove the deploy lock by hand, ending whatever process on the host holds it."""
    settings = settings_for(c.config.get("deploy", {}), ("host",))
    with quiet_session(settings) as host:
        current = read_status(host.runner, settings)["lock"]
        if current["held"]:
            print(redact(f"the deploy lock is held: {current['description']}"))
            if not yes and confirm("End that holder and free the lock? Type 'yes': ").strip() != "yes":
                raise Exit("not unlocked", code=1)
        pids = break_lock(host.runner, settings)
    print(f"unlocked (ended host process {', '.join(map(str, pids))})" if pids
          else "the deploy lock was free; nothing to do")


@task(help={
    "service": "one service (frontend, backend, postgres, redis, edge); default: frontend and backend",
    "since": "only lines newer than this: a duration (10m, 1h30m) or a time (2026-11-27T10:00:00Z)",
    "tail": "how many lines back to start, per service, or all (default 100)",
    "follow": "keep printing new lines until Ctrl-C",
})
@user_errors
def logs(c: Context, service: Optional[str] = None, since: Optional[str] = None,
         tail: str = "100", follow: bool = False) -> None:
    """Show the live release's logs (frontend and backend, or --service); secrets masked."""
    settings = settings_for(c.config.get("deploy", {}), ("host",))
    problems = log_problems(settings, service, since, str(tail))
    if problems:
        raise DeployError("; ".join(problems))
    out = RedactingStream(settings.secrets)
    try:
        with quiet_session(settings) as host:
            show_logs(host.runner, settings, service, since, str(tail), follow, out)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --follow ends
    finally:
        out.close()


@task(name="exec", positional=["service"], help={
    "service": "the app service (frontend or backend) whose live image and environment to use",
    "force": "run even while a deploy or rollback holds the deploy lock",
})
@user_errors
def exec_(c: Context, service: str, force: bool = False) -> None:
    """Run `-- COMMAND...` in a new container of the live release's SERVICE (a seed, a fix, a shell)."""
    settings = settings_for(c.config.get("deploy", {}), ("host",))
    argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    problems = exec_problems(settings, service, argv)
    if problems:
        raise DeployError("; ".join(problems))
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    stdin = None if interactive else sys.stdin.read()
    out = RedactingStream(settings.secrets)
    notes = Reporter(settings.secrets, stream=sys.stderr)
    try:
        with quiet_session(settings) as host:
            code = exec_in_live(host.runner, settings, service, argv, out, force, interactive,
                                stdin, notes.say)
    finally:
        out.close()
    if code:
        raise Exit(code=code)


def collection() -> Collection:
    """The `deploy` tasks, as a collection of their own."""
    return Collection("deploy", staging, rollback, status, history_, logs, exec_, unlock,
                      certificate_)
