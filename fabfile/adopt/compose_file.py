"""A team's compose file, read into what staging.init needs: each service's image or build,
its container port, its environment (values and `${VAR}` references), its healthcheck.

Both shapes a team has: the development file (`build:` sections) and a staging file with only
`image:` references (the story's). Anything this cannot understand is one line saying what.
"""
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from ..errors import DeployError

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, $VAR
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Build:
    context: str
    dockerfile: str = "Dockerfile"
    args: Tuple[Tuple[str, str], ...] = ()
    target: str = ""
    secrets: Tuple[str, ...] = ()


@dataclass
class ComposeService:
    name: str
    image: str = ""
    build: Optional[Build] = None
    ports: List[int] = field(default_factory=list)        # container ports, published or exposed
    environment: Dict[str, str] = field(default_factory=dict)   # NAME -> value as written
    healthcheck: Optional[dict] = None
    command: Any = None
    depends_on: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)        # what is left out, and why


@dataclass
class ComposeFile:
    path: Path
    name: str                                             # the file's top-level `name:`, if any
    services: Dict[str, ComposeService]


def read_compose(path: Path) -> ComposeFile:
    """Parse the file; raise DeployError with one line when it is not a compose file."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeployError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise DeployError(f"{path} is not YAML{line}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(document, Mapping) or not isinstance(document.get("services"), Mapping) \
            or not document["services"]:
        raise DeployError(f"{path} is not a compose file: it has no `services:` mapping")
    services = {}
    for name, spec in document["services"].items():
        if not isinstance(spec, Mapping):
            raise DeployError(f"{path}: service {str(name)[:40]!r} is not a mapping of settings")
        services[str(name)] = read_service(str(name), spec, path)
    return ComposeFile(path, str(document.get("name") or ""), services)


def read_service(name: str, spec: Mapping, path: Path) -> ComposeService:
    service = ComposeService(name, image=str(spec.get("image") or ""))
    if "build" in spec:
        service.build = read_build(name, spec["build"], path)
    service.ports = container_ports(name, spec, path)
    service.environment = read_environment(name, spec.get("environment"), path)
    if isinstance(spec.get("healthcheck"), Mapping) and not spec["healthcheck"].get("disable"):
        service.healthcheck = dict(spec["healthcheck"])
    service.command = spec.get("command")
    depends = spec.get("depends_on") or []
    service.depends_on = [str(d) for d in (depends if isinstance(depends, list) else depends)]
    for key in ("env_file", "volumes", "entrypoint", "secrets", "configs", "network_mode"):
        if spec.get(key):
            service.notes.append(f"`{key}:` of {name} is not carried over ({LEFT_OUT[key]})")
    return service


LEFT_OUT = {
    "env_file": "its variables must be settings: add them under app_env in invoke.yaml",
    "volumes": "a release's containers are replaced at every deploy; keep data in PostgreSQL "
               "or Redis, or add a named volume to compose/app.yaml by hand",
    "entrypoint": "the image's own ENTRYPOINT runs; set it in the Dockerfile",
    "secrets": "compose secrets are not used; secret values are settings (app_env.secret)",
    "configs": "compose configs are not used",
    "network_mode": "every release joins the stack's own network",
}


def read_build(name: str, build: Any, path: Path) -> Build:
    if isinstance(build, str):
        return Build(context=normal_context(build))
    if not isinstance(build, Mapping):
        raise DeployError(f"{path}: build of {name} must be a path or a mapping")
    args = build.get("args") or {}
    if isinstance(args, list):
        args = dict(item.partition("=")[::2] for item in map(str, args))
    secrets = build.get("secrets") or []
    names = tuple(str(s.get("source") if isinstance(s, Mapping) else s).upper() for s in secrets)
    return Build(context=normal_context(str(build.get("context") or ".")),
                 dockerfile=str(build.get("dockerfile") or "Dockerfile"),
                 args=tuple((str(k), "" if v is None else str(v)) for k, v in args.items()),
                 target=str(build.get("target") or ""), secrets=names)


def normal_context(context: str) -> str:
    """A context as the tool writes it: `.` or a folder relative to the repository."""
    text = context.strip()
    while text.startswith("./"):
        text = text[2:]
    return text.rstrip("/") or "."


def container_ports(name: str, spec: Mapping, path: Path) -> List[int]:
    """The ports the service listens on inside its container: `ports:` (short or long syntax)
    and `expose:`, in the order written."""
    found: List[int] = []
    for entry in list(spec.get("ports") or []) + list(spec.get("expose") or []):
        if isinstance(entry, Mapping):
            target = entry.get("target")
        else:
            text = str(entry).split("/")[0]        # "3000:80/tcp"
            target = text.rsplit(":", 1)[-1]       # "127.0.0.1:3000:80" -> 80
        port = str(target).split("-")[0]
        if not port.isdigit():
            raise DeployError(f"{path}: a port of {name} ({str(entry)[:40]!r}) is not a port "
                              "number the tool can route to")
        if int(port) not in found:
            found.append(int(port))
    return found


def read_environment(name: str, environment: Any, path: Path) -> Dict[str, str]:
    """`environment:` as a mapping or a list of NAME=value (a bare NAME passes the variable of
    the same name through: it becomes `${NAME}`)."""
    if environment is None:
        return {}
    if isinstance(environment, Mapping):
        return {str(k): f"${{{k}}}" if v is None else str(v).lower() if isinstance(v, bool)
                else str(v) for k, v in environment.items()}
    if isinstance(environment, list):
        found = {}
        for item in map(str, environment):
            key, sep, value = item.partition("=")
            found[key] = value if sep else f"${{{key}}}"
        return found
    raise DeployError(f"{path}: environment of {name} must be a mapping or a list of NAME=value")


def references(value: str) -> List[Tuple[str, str]]:
    """The variables a value reads: (NAME, default) for each ${NAME}, ${NAME:-default}, $NAME."""
    found = []
    for match in REFERENCE.finditer(value):
        name = match.group(1) or match.group(4)
        default = match.group(3) if match.group(2) in (":-", "-") else ""
        found.append((name, default or ""))
    return found
