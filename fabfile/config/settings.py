"""Settings: read once, validated up front, into one immutable object.

Sources, later wins: `invoke.yaml` (non-secret defaults, under `deploy:`), a dotenv file
(`.env`, or the file named by DEPLOY_ENV_FILE), the process environment.
Every problem is collected and reported in one message before anything runs.
"""
import base64
import contextlib
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from ..errors import ConfigError
from ..story.health import HealthContract
from .build import read_services
from .declared import check_keys, image_variable, plain, read_health_contract, read_routes
from .definitions import SECRET_MIN, SETTINGS, SETTINGS_BY_ENV, SHA_RE, SHORT_SECRET, is_swarm
from .envfile import UNWRITABLE, read_dotenv, unwritable_names


@dataclass(frozen=True)
class Settings:
    """Everything a deploy needs, validated. Built by `load_settings`."""
    project: str
    services: tuple
    compose_dir: str
    data_services: tuple
    migrate_service: str
    migrate_command: tuple         # empty: no migration step
    migrate_entrypoint: str        # empty: the command runs through the image's ENTRYPOINT
    migrate_timeout: float
    migrate_check_command: tuple   # exit 0: no migration to apply (empty: always dump first)
    log_service: str
    database_service: str
    ci_branch: str
    ci_checks: tuple
    health_path: str
    health_interval: float
    connect_timeout: float
    command_timeout: float
    routes: tuple              # Route: where the edge sends each request, in each slot
    health: HealthContract     # what the app's health answer must say
    values: Mapping[str, object] = field(repr=False)
    app: Mapping[str, "AppVariable"] = field(repr=False, default_factory=dict)
    app_secrets: tuple = ()    # the secret variables invoke.yaml declares (set or not)
    build_secrets: Mapping[str, str] = field(repr=False, default_factory=dict)

    # The tool's settings, typed for the checker (their values are in `values`, read through
    # __getattr__); test_config keeps this list equal to SETTINGS. Optional: no default and
    # not required by any group of tasks.
    DEPLOY_TARGET: ClassVar[str]
    STAGING_HOST: ClassVar[str]
    STAGING_PORT: ClassVar[int]
    STAGING_USER: ClassVar[str]
    STAGING_SSH_KEY: ClassVar[str]
    STAGING_KNOWN_HOSTS: ClassVar[str]
    STAGING_URL: ClassVar[str]
    SETUP_USER: ClassVar[str]
    SETUP_SSH_KEY: ClassVar[str]
    STAGING_DIR: ClassVar[str]
    REGISTRY: ClassVar[str]
    REGISTRY_PLAIN_HTTP: ClassVar[bool]
    IMAGE_NAME: ClassVar[str]
    REGISTRY_USER: ClassVar[Optional[str]]
    REGISTRY_PASSWORD: ClassVar[Optional[str]]
    REGISTRY_PULL_USER: ClassVar[Optional[str]]
    REGISTRY_PULL_PASSWORD: ClassVar[Optional[str]]
    APP_PORT: ClassVar[int]
    EDGE_TLS: ClassVar[str]
    HTTPS_PORT: ClassVar[int]
    ACME_DIRECTORY: ClassVar[str]
    ACME_EMAIL: ClassVar[Optional[str]]
    TLS_RENEW_DAYS: ClassVar[float]
    PREVIEW_PORT: ClassVar[int]
    HEALTH_TIMEOUT: ClassVar[float]
    HEALTH_SETTLE: ClassVar[float]
    WATCH_SECONDS: ClassVar[float]
    KEEP_RELEASES: ClassVar[int]
    LOCK_MAX_AGE: ClassVar[float]
    STAGING_WEBHOOK_URL: ClassVar[Optional[str]]
    GITHUB_TOKEN: ClassVar[Optional[str]]
    GITHUB_REPOSITORY: ClassVar[Optional[str]]
    GITHUB_RUN_ID: ClassVar[Optional[str]]
    GITHUB_API_URL: ClassVar[str]
    DB_USER: ClassVar[str]
    DB_NAME: ClassVar[str]
    DB_PASSWORD: ClassVar[str]
    DATABASE_URL: ClassVar[Optional[str]]
    POSTGRES_IMAGE: ClassVar[str]
    REDIS_IMAGE: ClassVar[str]
    EDGE_IMAGE: ClassVar[str]
    DOCKER_CLI_IMAGE: ClassVar[str]
    BUILD_PLATFORM: ClassVar[str]
    DISK_MARGIN: ClassVar[int]
    LOG_MAX_SIZE: ClassVar[str]
    LOG_MAX_FILE: ClassVar[int]

    def __getattr__(self, name: str) -> Any:
        # settings.STAGING_HOST and friends: the validated value of that variable
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    def image_repo(self, service: str) -> str:
        return f"{self.REGISTRY}/{self.IMAGE_NAME}-{service}"

    def image_ref(self, service: str, sha: str) -> str:
        return f"{self.image_repo(service)}:staging-{sha}"

    def image_refs(self, sha: str) -> Dict[str, str]:
        """service -> its image_ref, for every service of the app."""
        return {s.name: self.image_ref(s.name, sha) for s in self.services}

    @property
    def on_swarm(self) -> bool:
        """DEPLOY_TARGET is `swarm` (targets.target_for picks the target by it)."""
        return is_swarm(self.values)

    @property
    def secrets(self) -> list:
        """Every secret value, and `user:password` of each credential pair (whose base64 is an
        HTTP Basic auth header): what the Reporter masks, in every form (report.secret_forms)."""
        found = [str(self.values[s.env]) for s in SETTINGS if s.secret and self.values.get(s.env)]
        found += [v.value for v in self.app.values() if v.secret and v.value]
        found += [value for value in self.build_secrets.values() if value]
        for user, password in (("REGISTRY_USER", "REGISTRY_PASSWORD"), ("DB_USER", "DB_PASSWORD"),
                               ("REGISTRY_PULL_USER", "REGISTRY_PULL_PASSWORD")):
            if self.values.get(user) and self.values.get(password):
                found.append(f"{self.values[user]}:{self.values[password]}")
        return sorted(set(found), key=len, reverse=True)

    def app_env(self, sha: str) -> dict:
        """The variables the compose files read on the host (written to the release's .env):
        the stack's own (ports, database, images, where things are) and the app's declared
        ones (invoke.yaml `app_env`)."""
        names = ["APP_PORT", "HTTPS_PORT", "PREVIEW_PORT", "STAGING_URL", "DB_USER", "DB_NAME", "DB_PASSWORD",
                 "DATABASE_URL", "POSTGRES_IMAGE", "REDIS_IMAGE", "EDGE_IMAGE", "LOG_MAX_SIZE",
                 "LOG_MAX_FILE"]
        env = {name: str(self.values[name]) for name in names if self.values.get(name) is not None}
        env.update({name: variable.value for name, variable in self.app.items()})
        env["EDGE_DIR"] = posixpath.join(self.STAGING_DIR, "edge")
        env["APP_NETWORK"] = f"{self.project}_default"  # the stable project's network
        for service in self.services:
            env[image_variable(service.name)] = self.image_ref(service.name, sha)
        env["RELEASE_SHA"] = sha
        return env

    def secret_names(self) -> set:
        """The variables of the host's .env that hold a secret: kept out of a release's own
        .env, in the one secrets file every release reads (see compose.commands.SECRETS_FILE)."""
        return {s.env for s in SETTINGS if s.secret} | set(self.app_secrets)

    def split_secrets(self, env: Mapping[str, str]) -> Tuple[dict, dict]:
        """A release's variables (app_env, or the Swarm target's release_env) as (what the
        release keeps, the secrets)."""
        secret = self.secret_names()
        return ({k: v for k, v in env.items() if k not in secret},
                {k: v for k, v in env.items() if k in secret})

    def carries_secrets(self) -> bool:
        """Whether these settings hold every secret the app's .env needs (a deploy's always do;
        a rollback's from a shell may not, and then the host's current ones stay)."""
        return bool(self.values.get("DB_PASSWORD")) and all(
            name in self.app for name in self.app_secrets)


@dataclass(frozen=True)
class AppVariable:
    """A variable of the app's own environment, declared in invoke.yaml `app_env`."""
    name: str
    value: str
    secret: bool


APP_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
APP_VALUE_MAX = 4096


def read_app_env(declared: Mapping, environ: Mapping[str, str], groups: Sequence[str],
                 problems: List[str], missing: List[str]) -> dict:
    """The app's variables: `clear` ones (NAME: default; the environment overrides it) and
    `secret` ones (names; the value only from the environment or the dotenv file, required
    for a deploy). Each must be writable to the host's .env literally; a secret is never shown."""
    clear = declared.get("clear") or {}
    secret = list(declared.get("secret") or [])
    variables = {}
    for name in list(clear) + secret:
        is_secret = name in secret
        if not APP_NAME.fullmatch(str(name)) or name in SETTINGS_BY_ENV or name in variables:
            problems.append(f"invoke.yaml app_env: {name!r} must be an upper-case variable name "
                            "used once, and not one of the tool's own settings")
            continue
        value = environ.get(name)
        if value is None or (value == "" and not is_secret):
            value = "" if is_secret else str(clear[name] if clear[name] is not None else "")
        if is_secret and value == "":
            if "app" in groups:
                missing.append(name)
            continue
        if is_secret and len(value) < SECRET_MIN:
            problems.append(f"{name} {SHORT_SECRET}")
            continue
        if any(c in value for c in UNWRITABLE) or len(value) > APP_VALUE_MAX:
            problems.append(f"{name} must be at most {APP_VALUE_MAX} characters, without a NUL "
                            "(it is written to the host's .env)"
                            + ("" if is_secret else f"; got {value[:40]!r}"))
            continue
        variables[name] = AppVariable(name, value, is_secret)
    return variables


def read_environment(environ: Mapping[str, str], cwd: Path) -> dict:
    """The process environment over the dotenv file (DEPLOY_ENV_FILE, else .env if present)."""
    named = environ.get("DEPLOY_ENV_FILE")
    path = Path(named) if named else cwd / ".env"
    if not path.is_absolute():
        path = cwd / path
    merged = {}
    if named and not path.is_file():
        raise ConfigError([f"DEPLOY_ENV_FILE: {path} does not exist "
                           "(unset it to use .env, or run `inv testbed.up` to make .env.testbed)"])
    if path.is_file():
        merged.update(read_dotenv(path))
    merged.update(environ)
    return merged


def load_settings(defaults: Mapping, environ: Mapping[str, str],
                  groups: Sequence[str] = ("host", "build", "app"),
                  cwd: Path = Path(".")) -> Settings:
    """Validate every setting the given groups need; raise ConfigError listing all problems."""
    defaults = plain(defaults)
    problems: List[str] = [
        f"{name}: invoke.yaml keys are not read from INVOKE_DEPLOY_* variables (Invoke would "
        "apply them unchecked); set the key in invoke.yaml or a runtime config (inv -f FILE), "
        "or use its own variable where it has one (docs/CONFIGURATION.md)"
        for name in sorted(environ) if name.startswith("INVOKE_DEPLOY_")]
    declared = check_keys(defaults, [s.yaml_key for s in SETTINGS if s.yaml_key])
    if declared:   # the rest reads these keys: stop here, with every problem found so far
        raise ConfigError(problems + declared)
    missing: List[str] = []
    values: Dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env, "")
        raw = raw.strip() if not setting.secret else raw
        if raw == "" and setting.yaml_key and defaults.get(setting.yaml_key) is not None:
            raw = str(defaults[setting.yaml_key])
        if raw == "":
            if setting.group in groups:
                missing.append(setting.env)
            values[setting.env] = None
            continue
        if setting.secret and len(raw) < SECRET_MIN:
            problems.append(f"{setting.env} {SHORT_SECRET}")
            continue
        try:
            values[setting.env] = setting.parse(raw)
        except ValueError as exc:
            reason = str(exc)
            shown = "(secret)" if setting.secret else repr(raw[:60]) + ("..." if len(raw) > 60 else "")
            problems.append(f"{setting.env}={shown} {reason}")
    if missing:
        problems.insert(0, "missing: " + ", ".join(missing))
    project = str(defaults.get("project") or "")
    if not project:
        problems.append("invoke.yaml deploy.project is not set: the compose project name on the "
                        "host (`staging-deploy staging.init` writes it)")
    elif values.get("STAGING_DIR") is None:
        values["STAGING_DIR"] = f"/opt/{project}"

    for name in ("STAGING_SSH_KEY", "SETUP_SSH_KEY"):
        if values.get(name):
            key, problem = _resolve_key(values[name], cwd, name)
            values[name] = key
            if problem:
                problems.append(problem)
    _pair(values, problems, "REGISTRY_USER", "REGISTRY_PASSWORD")
    _pair(values, problems, "REGISTRY_PULL_USER", "REGISTRY_PULL_PASSWORD")
    if all(values.get(n) for n in ("DB_USER", "DB_NAME", "DB_PASSWORD")) \
            and not values.get("DATABASE_URL"):
        values["DATABASE_URL"] = "postgresql://{}:{}@postgres:5432/{}".format(
            quote(values["DB_USER"], safe=""), quote(values["DB_PASSWORD"], safe=""),
            values["DB_NAME"])
    if values.get("EDGE_TLS") == "acme":
        if is_swarm(values):
            problems.append("EDGE_TLS=acme: the swarm target's edge serves plain HTTP only (HTTPS "
                            "is the compose target's, for now); set EDGE_TLS=none and end TLS in "
                            "front of the stack")
        elif values.get("STAGING_URL") and not str(values["STAGING_URL"]).startswith("https://"):
            problems.append(f"EDGE_TLS=acme needs an https STAGING_URL (its host names the "
                            f"certificate), not {values['STAGING_URL']}")
    floor = lock_floor(values, float(defaults.get("command_timeout", 600)))
    if values.get("LOCK_MAX_AGE") is not None and values["LOCK_MAX_AGE"] < floor:
        problems.append(f"LOCK_MAX_AGE={values['LOCK_MAX_AGE']:g} must be at least {floor:g} "
                        "seconds (one command's timeout, the health wait and the watch window): "
                        "a younger lock may belong to a deploy still at work")
    app = read_app_env(defaults.get("app_env") or {}, environ, groups, problems, missing)
    if missing:
        problems[:] = ["missing: " + ", ".join(missing)] + [p for p in problems
                                                            if not p.startswith("missing: ")]
    health_path = str(defaults.get("health_path", "/api/health"))
    routes = read_routes(defaults, health_path, problems)
    health = read_health_contract(defaults, health_path, problems)
    clear = {name: v.value for name, v in app.items() if not v.secret}
    services, build_secrets = read_services(defaults, environ, clear, values, problems)
    if not services:
        problems.append("invoke.yaml: deploy.services lists no images to build (`staging-deploy "
                        "staging.init` writes them from your compose file)")
    if problems:
        raise ConfigError(problems)
    settings = Settings(
        project=project,
        services=services,
        compose_dir=str(cwd / defaults.get("compose_dir", "compose")),
        data_services=tuple(defaults.get("data_services") or ()),
        migrate_service=defaults.get("migrate_service", "backend"),
        migrate_command=tuple(defaults.get("migrate_command") or ()),
        migrate_entrypoint=str(defaults.get("migrate_entrypoint") or ""),
        migrate_timeout=float(defaults.get("migrate_timeout", 600)),
        migrate_check_command=tuple(defaults.get("migrate_check_command") or ()),
        log_service=defaults.get("log_service", "backend"),
        database_service=defaults.get("database_service", "postgres"),
        ci_branch=defaults.get("ci_branch", "main"),
        ci_checks=tuple(defaults.get("ci_checks") or ()),
        health_path=health_path,
        health_interval=float(defaults.get("health_interval", 1)),
        connect_timeout=float(defaults.get("connect_timeout", 10)),
        command_timeout=float(defaults.get("command_timeout", 600)),
        routes=routes,
        health=health,
        values=values,
        app=app,
        app_secrets=tuple((defaults.get("app_env") or {}).get("secret") or ()),
        build_secrets=build_secrets,
    )
    unwritable = unwritable_names(settings.app_env("0" * 40))
    if unwritable:
        raise ConfigError([f"{name} must not contain a NUL (it is written to the host's .env)"
                           for name in unwritable])
    return settings


def lock_floor(values: Mapping[str, Any], command_timeout: float) -> float:
    """The least LOCK_MAX_AGE may be: what one deploy step may take (a command's timeout) plus
    the health wait, its settling and the watch window, during which the lock is held too."""
    return command_timeout + sum(float(values.get(name) or 0) for name in
                                 ("HEALTH_TIMEOUT", "HEALTH_SETTLE", "WATCH_SECONDS"))


def environment_secrets(environ: Mapping[str, str]) -> List[str]:
    """The values of every secret setting in `environ`, and of any variable named like one
    (…PASSWORD, …SECRET, …TOKEN, …KEY): what an unexpected error's line must not show, even
    before the settings could be read."""
    looks_secret = re.compile(r".*(PASSWORD|SECRET|TOKEN|_KEY)$")
    return [value for name, value in environ.items() if len(value) >= 4 and (
        (name in SETTINGS_BY_ENV and SETTINGS_BY_ENV[name].secret) or looks_secret.match(name))]


def _resolve_key(value: str, cwd: Path, name: str) -> Tuple[Optional[str], Optional[str]]:
    """An SSH key setting holds the key itself (as is, or base64-wrapped as some CI secrets
    hold it) or a path to it; return (key text, problem). The value is never shown."""
    if "PRIVATE KEY-----" in value:
        return value.strip() + "\n", None
    with contextlib.suppress(ValueError):
        decoded = base64.b64decode("".join(value.split()), validate=True).decode()
        if "PRIVATE KEY-----" in decoded:
            return decoded.strip() + "\n", None
    problem = (f"{name} is neither a private key (-----BEGIN ... PRIVATE KEY-----, as is or "
               "base64) nor a readable file")
    if len(value) > 1024 or "\n" in value.strip() or "\0" in value:
        return None, problem   # not a path: asking the filesystem would echo it in an error
    path = Path(os.path.expanduser(value.strip()))
    if not path.is_absolute():
        path = cwd / path
    try:
        return (path.read_text(), None) if path.is_file() else (None, problem)
    except (OSError, UnicodeDecodeError):
        return None, problem


def _pair(values: Mapping[str, Any], problems: List[str], user: str, password: str) -> None:
    if bool(values.get(user)) != bool(values.get(password)):
        problems.append(f"{user} and {password} must be set together")


def validate_sha(sha: Optional[str], commit_exists: Callable[[str], bool]) -> Optional[str]:
    """Return a problem with the given sha, or None when it names a commit of this repository."""
    if not sha:
        return "--sha is required: the full 40-character commit to deploy (git rev-parse HEAD)"
    if not SHA_RE.fullmatch(sha):
        return f"--sha {sha!r} is not a full 40-character lower-case hex commit id (git rev-parse {sha})"
    if not commit_exists(sha):
        return f"--sha {sha} is not a commit in this repository (git fetch, then try again)"
    return None
