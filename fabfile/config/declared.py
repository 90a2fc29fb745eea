"""What invoke.yaml declares about the project (its images, routes, services' roles, commands,
checks, timings): every key typed and checked, an unknown key refused.

The keys that also have an environment variable (`STAGING_DIR`, `HEALTH_TIMEOUT`, ...) are checked
with that variable (config.SETTINGS). Every value here may end up in nginx config, a compose
command or a shell command on the host, so names are allowlisted, paths normalised, numbers
finite and in range, and a list that a check iterates may not be empty.
"""
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from ..story.health import ANY_BODY, STORY, HealthContract

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")            # a compose service or project
REL_PATH = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/-]{0,199}")
ARG = re.compile(r"[^\0\n\r]{1,1000}")                    # one word of a command (an argv item)
CHECK_NAME = re.compile(r"[^\0\n\r]{1,200}")
ROUTE_PATH = re.compile(r"/[A-Za-z0-9._~/-]*")
HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~/%-]*(\?[A-Za-z0-9._~=&%-]*)?")
HEALTH_VERSION = re.compile(r"header:[A-Za-z0-9-]{1,64}|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+){0,7}")
ROUTE_EXAMPLE = "{path: /api/, service: backend, port: 4000}"
REPLACED = {"entry_service", "entry_port"}                # by `routes`: read_routes says how


@dataclass(frozen=True)
class Route:
    """Requests whose path starts with `path` go to `service` of the release, on `port` (the
    longest matching prefix wins, as nginx chooses); invoke.yaml `routes`."""
    path: str
    service: str
    port: int


@dataclass(frozen=True)
class Service:
    """An image the project builds: its build context (relative to the repository; `.` is the
    repository itself) and Dockerfile (relative to the context), and what the build is given:
    build args (resolved values: never a secret, they stay in the image's history), a target
    stage, and the names of build secrets (BuildKit `--secret`, read from the environment)."""
    name: str
    context: str
    dockerfile: str = "Dockerfile"
    args: Tuple[Tuple[str, str], ...] = ()
    target: str = ""
    secrets: Tuple[str, ...] = ()


def image_variable(service: str) -> str:
    """The variable that names a service's image in a release's .env (FRONTEND_IMAGE)."""
    return service.upper().replace("-", "_") + "_IMAGE"


def _name(value: Any) -> Optional[str]:
    return None if isinstance(value, str) and NAME.fullmatch(value) else \
        "a service name in lower case (letters, digits, _ and -)"


def _rel_path(value: Any) -> Optional[str]:
    ok = isinstance(value, str) and REL_PATH.fullmatch(value) and \
        not any(part in (".", "..") for part in value.split("/"))
    return None if ok else "a relative path inside the repository (no `..`), such as app/backend"


def _context(value: Any) -> Optional[str]:
    """A build context: the repository itself (`.`) or a folder inside it."""
    return None if value == "." else _rel_path(value)


def _path(value: Any) -> Optional[str]:
    """A local folder: relative to the repository, or absolute; normalised either way."""
    text = value[1:] if isinstance(value, str) and value.startswith("/") else value
    return _rel_path(text) and "a normalised path (no `..`), relative to the repository or absolute"


def _names(empty_ok: bool) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        ok = isinstance(value, list) and (empty_ok or value) and \
            all(_name(item) is None for item in value) and len(set(value)) == len(value)
        return None if ok else ("a list" + ("" if empty_ok else ", not empty,") +
                                " of service names, each once, such as [postgres, redis]")
    return check


def _argv(empty_ok: bool) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        ok = isinstance(value, list) and (empty_ok or value) and \
            all(isinstance(word, str) and ARG.fullmatch(word) for word in value)
        return None if ok else ("a command as a list of words, such as [migrate]"
                                + (" ([] for none)" if empty_ok else ""))
    return check


def _seconds(low: float, high: float) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
            math.isfinite(value) and low <= value <= high
        return None if ok else f"a number of seconds from {low:g} to {high:g}"
    return check


def _branch(value: Any) -> Optional[str]:
    ok = isinstance(value, str) and BRANCH.fullmatch(value) and ".." not in value
    return None if ok else "a branch name such as main"


def _checks(value: Any) -> Optional[str]:
    ok = isinstance(value, list) and \
        all(isinstance(item, str) and CHECK_NAME.fullmatch(item) for item in value)
    return None if ok else ("a list of the CI check runs that must pass, such as "
                            "[Lint and unit tests]")


SERVICE_KEYS = {"context", "dockerfile", "args", "target", "secrets"}
ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
TARGET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _services(value: Any) -> Optional[str]:
    shape = ("a mapping of image names to {context: DIR, dockerfile: FILE, args: {NAME: value}, "
             "target: STAGE, secrets: [NAME]}, such as {backend: {context: ., dockerfile: "
             "docker/Dockerfile.backend}}")
    if not isinstance(value, Mapping) or not value:
        return shape
    for name, spec in value.items():
        wrong = _name(name) or service_problem(spec)
        if wrong:
            return shape + f" ({str(name)[:40]}: {wrong})"
    return None


def service_problem(spec: Any) -> Optional[str]:
    """What is wrong with one service's build spec, or None."""
    if not isinstance(spec, Mapping) or not set(spec) <= SERVICE_KEYS:
        return f"only the keys {', '.join(sorted(SERVICE_KEYS))}"
    if _context(spec.get("context")):
        return "context must be `.` or a folder inside the repository (no `..`)"
    if _rel_path(spec.get("dockerfile", "Dockerfile")):
        return "dockerfile must be a path inside the context (no `..`)"
    args = spec.get("args") or {}
    if not isinstance(args, Mapping) or not all(
            isinstance(k, str) and ARG_NAME.fullmatch(k) and isinstance(v, (str, int, float, bool))
            and "\0" not in str(v) and "\n" not in str(v) for k, v in args.items()):
        return "args must map build-arg names to one-line values"
    if spec.get("target") is not None and not (isinstance(spec["target"], str)
                                               and TARGET.fullmatch(spec["target"])):
        return "target must be a stage name of the Dockerfile"
    secrets = spec.get("secrets") or []
    if not isinstance(secrets, list) or not all(
            isinstance(n, str) and re.fullmatch(r"[A-Z_][A-Z0-9_]{0,63}", n) for n in secrets):
        return "secrets must list upper-case variable names"
    return None


def _app_env(value: Any) -> Optional[str]:
    shape = "{clear: {NAME: default}, secret: [NAME]}"
    if not isinstance(value, Mapping) or not set(value) <= {"clear", "secret"}:
        return shape
    clear, secret = value.get("clear") or {}, value.get("secret") or []
    if not isinstance(clear, Mapping) or not all(
            v is None or isinstance(v, (str, int, float, bool)) for v in clear.values()):
        return shape + " (clear: names with a plain value each)"
    if not isinstance(secret, list) or not all(isinstance(n, str) for n in secret):
        return shape + " (secret: a list of names)"
    return None


def _text_of(choices: Iterable[str]) -> Callable[[Any], Optional[str]]:
    def check(value: Any) -> Optional[str]:
        return None if isinstance(value, str) else "text, such as " + " or ".join(choices)
    return check


# The keys without an environment variable, and what each must be. `routes` and the health
# contract are read (and checked in detail) by read_routes and read_health_contract.
KEYS: Dict[str, Callable[[Any], Optional[str]]] = {
    "project": lambda v: _name(v) and "a compose project name in lower case (letters, digits, _ "
                                      "and -)",
    "compose_dir": _path,
    "services": _services,
    "routes": lambda v: None,
    "data_services": _names(empty_ok=True),
    "database_service": _name,
    "log_service": _name,
    "migrate_service": _name,
    "migrate_command": _argv(empty_ok=True),
    "migrate_entrypoint": lambda v: None if isinstance(v, str) and (v == "" or ARG.fullmatch(v)) \
        else "a program to run instead of the image's ENTRYPOINT, such as /bin/sh (\"\": keep it)",
    "migrate_timeout": _seconds(10, 86400),
    "migrate_check_command": _argv(empty_ok=True),
    "health_path": _text_of(["/api/health"]),
    "health_body": _text_of([STORY, ANY_BODY]),
    "health_version": lambda v: None if v is None or isinstance(v, str) else "text",
    "health_interval": _seconds(0.1, 60),
    "ci_branch": _branch,
    "ci_checks": _checks,
    "connect_timeout": _seconds(1, 300),
    "command_timeout": _seconds(10, 86400),
    "app_env": _app_env,
}


def plain(value: Any) -> Any:
    """Invoke's config (its DataProxy objects) as plain dicts and lists, for the checks."""
    if hasattr(value, "items") and callable(value.items):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def check_keys(declared: Mapping, env_keys: Iterable[str]) -> List[str]:
    """A problem for each unknown key and each key whose value is not what it must be. The keys
    that have an environment variable (`env_keys`) are checked with it, elsewhere."""
    known = set(KEYS) | set(env_keys) | REPLACED
    problems = [f"invoke.yaml deploy.{str(key)[:40]} is not a setting of this tool (a typo? the "
                f"settings are listed in docs/CONFIGURATION.md)"
                for key in declared if key not in known]
    for key, check in KEYS.items():
        if key in declared:
            wrong = check(declared[key])
            if wrong:
                problems.append(f"invoke.yaml deploy.{key} must be {wrong}; got "
                                f"{str(declared[key])[:60]!r}")
    return problems


def read_routes(declared: Mapping, health_path: str, problems: List[str]) -> tuple:
    """invoke.yaml `routes`: a list of {path, service, port}, each path used once, one of them
    serving the health path. Each value is written into the edge's nginx config, so only plain
    names are accepted."""
    if REPLACED & set(declared):
        problems.append("invoke.yaml deploy.entry_service and entry_port are replaced by "
                        f"deploy.routes: write `routes: [{{path: /, service: "
                        f"{declared.get('entry_service', 'web')}, port: "
                        f"{declared.get('entry_port', 80)}}}]`")
        return ()
    routes = declared.get("routes")
    if not isinstance(routes, list) or not routes:
        problems.append(f"invoke.yaml deploy.routes must list where requests go, such as "
                        f"[{ROUTE_EXAMPLE}, {{path: /, service: frontend, port: 80}}]")
        return ()
    found: List[Route] = []
    for route in routes:
        spec = route if isinstance(route, Mapping) else {}
        path, service, port = (str(spec.get(k, "")) for k in ("path", "service", "port"))
        if set(spec) != {"path", "service", "port"} or not ROUTE_PATH.fullmatch(path) \
                or not NAME.fullmatch(service) or not port.isascii() or not port.isdigit() \
                or not 0 < int(port) < 65536:
            problems.append(f"invoke.yaml deploy.routes: {str(route)[:80]!r} must be "
                            f"{ROUTE_EXAMPLE}: a path of letters, digits and ._~/-, a service "
                            "name in lower case, a port number")
        elif any(r.path == path for r in found):
            problems.append(f"invoke.yaml deploy.routes: path {path} is routed twice")
        else:
            found.append(Route(path, service, int(port)))
    if found and not any(health_path.startswith(r.path) for r in found):
        problems.append(f"invoke.yaml deploy.routes: no route serves health_path {health_path} "
                        "(add one whose path it starts with)")
    return tuple(found)


def read_health_contract(declared: Mapping, path: str, problems: List[str]) -> HealthContract:
    """invoke.yaml `health_path`, `health_body` and `health_version`."""
    body = str(declared.get("health_body") or STORY)
    version_at = str(declared.get("health_version") or "")
    if not HEALTH_PATH.fullmatch(path):
        problems.append(f"invoke.yaml deploy.health_path {path[:60]!r} must be a path such as "
                        "/api/health")
    if body not in (STORY, ANY_BODY):
        problems.append(f"invoke.yaml deploy.health_body {body[:40]!r} must be `{STORY}` (the "
                        f"body says success: true, data.status: healthy) or `{ANY_BODY}` (a 200 "
                        "is enough)")
    if version_at and not HEALTH_VERSION.fullmatch(version_at):
        problems.append(f"invoke.yaml deploy.health_version {version_at[:60]!r} must be where the "
                        "app reports its sha: a JSON path such as data.version, or "
                        "header:X-App-Version (empty: the app need not report it)")
    return HealthContract(body, version_at)
