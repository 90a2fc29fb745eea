"""Deploy the classroom-manager stack to staging: `inv --list` shows every task.

Thin entry point: each task parses its flags, loads validated settings, calls the library in
`fabfile/`, and reports. A user error ends with one clear line and a non-zero exit, never a
traceback. The `testbed.*` and `bench*` tasks drive this repository's own test environment
(`testbed/`); they exist only where that folder does and are not part of the installed tool.
"""
import functools
import io
import math
import os
import subprocess
import sys
import traceback
from json import dumps
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, TypeVar, Union

from invoke import Collection, Context, Exit, task

from fabfile.compose.certificate import domain, https_on
from fabfile.compose.certificate import ensure as ensure_certificate
from fabfile.compose.slots import reload_edge
from fabfile.config.definitions import SHA_RE
from fabfile.config.settings import (
    Settings,
    environment_secrets,
    load_settings,
    read_environment,
    validate_sha,
)
from fabfile.errors import ConfigError, DeployError
from fabfile.ops.incident import exec_in_live, exec_problems, log_problems, show_logs
from fabfile.ops.provision import setup_host
from fabfile.ops.status import history, read_status, render_history, render_status
from fabfile.report import KNOWN_SECRETS, RedactingStream, Reporter, redact, secret_forms
from fabfile.story.ci_gate import is_required
from fabfile.story.deploy import deploy_staging
from fabfile.story.images import commit_exists
from fabfile.story.lock import break_lock, held
from fabfile.story.rollback import rollback_staging
from fabfile.transport.session import HostSession

ROOT = Path(__file__).resolve().parent
T = TypeVar("T")


def crash_line(exc: BaseException) -> str:
    """Any exception no task turned into a user error, as one redacted line (and, with
    DEPLOY_DEBUG=1, its traceback first, redacted too, on stderr)."""
    secrets = secret_forms(set(KNOWN_SECRETS) | set(environment_secrets(os.environ)))
    if os.environ.get("DEPLOY_DEBUG") == "1":
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        print(redact(trace, secrets), file=sys.stderr)
    text = " ".join(str(exc).split()) or "no details"
    if "yaml" in type(exc).__module__:   # Invoke reading invoke.yaml (or inv -f FILE)
        return redact(f"error: a config file is not plain YAML (no tags such as !!python): "
                      f"{text[:500]}", secrets)
    return redact(f"error: {type(exc).__name__}: {text[:500]} (DEPLOY_DEBUG=1 shows where; "
                  "please report it)", secrets)


def last_resort(kind: type, exc: BaseException, trace: Any) -> None:
    """sys.excepthook: what fails before a task runs (Invoke reading invoke.yaml) ends the same
    way, in one line."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return
    print(crash_line(exc), file=sys.stderr)


sys.excepthook = last_resort


def user_errors(function: Callable[..., T]) -> Callable[..., T]:
    """Turn DeployError into `error: <message>` and exit 1; Ctrl-C into exit 130; anything else
    into one redacted line and exit 1, never a raw traceback."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        except DeployError as exc:
            raise Exit(redact(f"error: {exc}"), code=1) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None
        except Exit:
            raise
        except Exception as exc:
            raise Exit(crash_line(exc), code=1) from None
    return wrapper


def settings_for(c: Context, groups: Sequence[str], sha: Optional[str] = None,
                 need_sha: bool = False) -> Settings:
    """Load and validate settings (and --sha), reporting every problem in one message."""
    problems: List[str] = []
    settings: Optional[Settings] = None
    try:
        environ = read_environment(os.environ, ROOT)
        settings = load_settings(c.config.deploy, environ, groups, ROOT)
    except ConfigError as exc:
        problems += exc.problems
    if need_sha:
        problem = validate_sha(sha, lambda s: commit_exists(s, git_exit_code))
        if problem:
            problems.append(problem)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def git_exit_code(argv: List[str]) -> int:
    return subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode


def lock_wait(value: Union[None, bool, str]) -> Optional[float]:
    """--wait-lock alone waits up to 10 minutes; --wait-lock=SECONDS that long; absent: no wait."""
    if value in (None, False):
        return None
    if value is True:
        return 600.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and 1 <= seconds <= 86400):
        raise ConfigError([f"--wait-lock={str(value)[:40]!r} must be a number of seconds from 1 "
                           "to 86400"])
    return seconds


def whole_number(flag: str, value: Union[int, str], most: int = 100000) -> int:
    """A flag that counts something (Invoke's own cast would end in a traceback): ASCII digits
    only (`²` is a digit to Python, not to int())."""
    text = str(value)
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= most):
        raise DeployError(f"{flag} {text[:40]!r} must be a whole number from 1 to {most}")
    return int(text)


def reporter_for(settings: Settings) -> Reporter:
    return Reporter(settings.secrets)


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
    settings = settings_for(c, ("host", "build", "app"), sha, need_sha=True)
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
    settings = settings_for(c, ("host", "build"))
    to = to or None   # an empty --to (the rollback workflow without input): the default
    if to is not None and not SHA_RE.fullmatch(to):
        raise ConfigError([f"--to {to!r} must be a full 40-character sha (inv deploy.history)"])
    wait = lock_wait(wait_lock)
    rollback_staging(settings, reporter_for(settings), to=to, restore_db=restore_db, yes=yes,
                     wait_lock=wait, confirm=confirm)


@task(name="certificate", optional=["wait_lock"], help={
    "force": "renew even when the certificate in place is not due",
    "wait-lock": "if a deploy holds the lock, wait for it (default 600 s, or =SECONDS)",
})
@user_errors
def certificate_(c: Context, force: bool = False, wait_lock: Union[None, bool, str] = None) -> None:
    """Obtain or renew STAGING_URL's HTTPS certificate now, if due (a daily job runs this)."""
    settings = settings_for(c, ("host",))
    if not https_on(settings):
        raise ConfigError(["EDGE_TLS is none: the edge serves no HTTPS (set EDGE_TLS=acme and "
                           "an https STAGING_URL to turn it on)"])
    reporter = reporter_for(settings)
    with HostSession(settings, reporter) as host, \
            held(host, settings, "certificate", domain(settings), lock_wait(wait_lock), reporter):
        reporter.say(ensure_certificate(host.runner, settings, reporter,
                                        lambda: reload_edge(host.runner, settings), force=force))


def confirm(question: str) -> str:
    if not sys.stdin.isatty():
        raise ConfigError(["--restore-db needs confirmation: add --yes when not at a terminal"])
    return input(question)


@task(name="status", help={"json": "print machine-readable JSON"})
@user_errors
def status(c: Context, json: bool = False) -> None:
    """Show the running release, its health, the deploy lock and the last ledger entry."""
    settings = settings_for(c, ("host",))
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
    settings = settings_for(c, ("host",))
    with quiet_session(settings) as host:
        rows = history(host.runner, settings, count)
    reporter_for(settings).say(dumps(rows, indent=2) if json else render_history(rows))


@task(help={"yes": "do not ask first"})
@user_errors
def unlock(c: Context, yes: bool = False) -> None:
    """Remove the deploy lock by hand, ending whatever process on the host holds it."""
    settings = settings_for(c, ("host",))
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
    settings = settings_for(c, ("host",))
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
    settings = settings_for(c, ("host",))
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


def quiet_session(settings: Settings) -> HostSession:
    """A HostSession whose step lines are not printed (status and history print only results)."""
    return HostSession(settings, Reporter(settings.secrets, stream=io.StringIO()))


@task(name="setup", help={
    "compose-deb": "a docker-compose-plugin .deb to install where apt has no Compose v2 "
                   "(Debian bookworm)",
    "nodes": "Swarm target: comma-separated hostnames that must be in the swarm and Ready "
             "(setup fails naming any that is not, and how to fix it)",
})
@user_errors
def setup(c: Context, compose_deb: Optional[str] = None, nodes: str = "") -> None:
    """Provision a fresh Debian/Ubuntu server (Docker, deploy user, STAGING_DIR); idempotent.
    With DEPLOY_TARGET=swarm: this server a swarm manager, a node labelled for the data, and
    every node's state."""
    settings = settings_for(c, ("host", "setup"))
    if compose_deb and not Path(compose_deb).is_file():
        raise ConfigError([f"--compose-deb {compose_deb} is not a file"])
    wanted = [n.strip() for n in nodes.split(",") if n.strip()]
    if wanted and settings.DEPLOY_TARGET != "swarm":
        raise ConfigError(["--nodes is for the swarm target: set DEPLOY_TARGET=swarm"])
    reporter = reporter_for(settings)
    with HostSession(settings, reporter, settings.SETUP_USER, settings.SETUP_SSH_KEY) as host:
        line = setup_host(settings, host.runner, reporter, compose_deb, wanted)
    reporter.say(f"ready for deploys as {settings.STAGING_USER}. Pin this host key "
                 f"(STAGING_KNOWN_HOSTS), after checking its fingerprint on the server:\n{line}")


INSTANCE_HELP = ("which testbed (0-60; default 0): each has its own names, ports and "
                 ".env.testbed-<N>, so several run side by side")


def testbed_instance(instance: str) -> None:
    """Select testbed instance N for the testbed package (it reads TESTBED_INSTANCE)."""
    if not (instance.isascii() and instance.isdigit()) or int(instance) > 60:
        raise DeployError(f"--instance {instance!r} must be a whole number from 0 to 60")
    os.environ["TESTBED_INSTANCE"] = str(int(instance))


@task(name="up", help={"swarm": "also a three-node Docker Swarm (instance 0: manager ssh "
                                 "127.0.0.1:2224, app 127.0.0.1:8082) and .env.testbed-swarm",
                       "instance": INSTANCE_HELP})
@user_errors
def testbed_up(c: Context, swarm: bool = False, instance: str = "0") -> None:
    """Start the local testbed (engine, registry, SSH staging host) and write .env.testbed."""
    testbed_instance(instance)
    from testbed import up
    path = up(swarm=swarm)
    print(f"next: DEPLOY_ENV_FILE={path.name} inv deploy.staging --sha $(git rev-parse HEAD)")


@task(name="down", help={"images": "also remove the images the testbed built",
                         "instance": INSTANCE_HELP, "all": "every instance (what the tests made)"})
@user_errors
def testbed_down(c: Context, images: bool = False, instance: str = "0", all: bool = False) -> None:
    """Remove a testbed: its containers, network, volumes and env files (the keys with the last)."""
    testbed_instance(instance)
    from testbed import down, down_all
    if all:
        down_all()
    down(remove_images=images)


@task(help={"runs": "runs of each scenario (median reported; default 5)",
            "swarm-runs": "runs of each scenario on the testbed's swarm (default 3; 0: none)",
            "https": "ours over HTTPS (EDGE_TLS=acme, the testbed's ACME server), with what a "
                     "TLS handshake costs a request"})
@user_errors
def bench(c: Context, runs: str = "5", swarm_runs: str = "3", https: bool = False) -> None:
    """Benchmark the story's original pipeline against ours (compose and swarm) -> docs/BENCHMARKS.md."""
    from testbed.bench import main
    print(main(whole_number("--runs", runs),
               0 if swarm_runs == "0" else whole_number("--swarm-runs", swarm_runs), https))


@task(name="bench-db", help={"runs": "deploys per size and side (median reported; default 3)"})
@user_errors
def bench_db(c: Context, runs: str = "3") -> None:
    """Deploy time against database size (with and without the migration check) and against
    the ledger's size -> docs/BENCHMARKS.md."""
    from testbed import bench_ledger
    from testbed.bench_db import main, write
    count = whole_number("--runs", runs)
    text = main(count) + "\n" + bench_ledger.main(count)
    write(text)
    print(text)


deploy = Collection("deploy")
for deploy_task in (staging, rollback, status, history_, logs, exec_, unlock, certificate_):
    deploy.add_task(deploy_task)
staging_hosts = Collection("staging")
staging_hosts.add_task(setup)
namespace = Collection(deploy, staging_hosts)
if (ROOT / "testbed").is_dir():   # this repository's own test environment; not a user's
    namespace.add_collection(Collection("testbed", testbed_up, testbed_down))
    namespace.add_task(bench)
    namespace.add_task(bench_db)
