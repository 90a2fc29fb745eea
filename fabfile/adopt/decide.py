"""From a team's compose file and repository to the tool's settings, with every decision said.

Pure: it reads files of the repository but changes nothing. `adopt(...)` returns an Adoption:
the values render.py writes (invoke.yaml's `deploy:` keys, the slot file's services) and two
lists of lines for the person running init: what was decided, and what they must confirm.
"""
import re
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from ..config.declared import NAME
from ..config.definitions import SETTINGS_BY_ENV
from ..errors import DeployError
from .adoption import Adoption, SlotService
from .compose_file import Build, ComposeFile, ComposeService, references
from .repository import ci_checks, migrations

# What the tool itself puts in every release's .env (config/settings.py Settings.app_env): a
# compose reference to one of these is the tool's, never a new setting.
TOOL_VARIABLES = {"APP_PORT", "HTTPS_PORT", "PREVIEW_PORT", "STAGING_URL", "DB_USER", "DB_NAME",
                  "DB_PASSWORD", "DATABASE_URL", "POSTGRES_IMAGE", "REDIS_IMAGE", "EDGE_IMAGE",
                  "LOG_MAX_SIZE", "LOG_MAX_FILE", "EDGE_DIR", "APP_NETWORK", "RELEASE_SHA"}
LOOKS_SECRET = re.compile(r".*(PASSWORD|SECRET|TOKEN|_KEY|APIKEY|CREDENTIALS)$")
FRONT_NAMES = ("frontend", "web", "client", "ui", "www", "app")
API_NAMES = ("backend", "api", "server")
# Where a Dockerfile of an image-only service is looked for, in this order.
DOCKERFILE_PLACES = ("docker/Dockerfile.{s}", "Dockerfile.{s}", "{s}/Dockerfile",
                     "packages/{s}/Dockerfile", "apps/{s}/Dockerfile", "services/{s}/Dockerfile")
POSTGRES, REDIS = "postgres", "redis"


def adopt(compose: ComposeFile, repo: Path, project: str = "",
          dockerfiles: Optional[Mapping[str, str]] = None) -> Adoption:
    """Decide everything staging.init writes; raise DeployError with one line if the compose
    file has nothing the tool can deploy."""
    said = Adoption({}, [], [], "")
    data, apps, left = classify(compose, said)
    if not apps:
        raise DeployError(f"{compose.path.name} has no service the tool can build (one with "
                          "`build:`, or an `image:` whose Dockerfile is found: pass --dockerfile "
                          "SERVICE=PATH)" if not left else
                          f"{compose.path.name}: no service to build among {', '.join(left)}")
    deploy: Dict[str, object] = {"project": project_name(project, compose, repo, said)}
    services = {s.name: build_spec(s, repo, dict(dockerfiles or {}), said) for s in apps}
    deploy["services"] = services
    deploy.update(data_settings(data, said))
    routes, api = choose_routes(apps, repo, services, said)
    deploy["routes"] = routes
    deploy["health_path"] = health_path(api)
    said.confirm.append(f"{api.name} answers GET {deploy['health_path']} with 200 and "
                        '{"success": true, "data": {"status": "healthy"}} (the story\'s health '
                        "body); if it answers only 200, set health_body: any in invoke.yaml")
    clear, secret = declare_environment(apps, services, said)
    fill_in(clear, routes, data, said)
    deploy.update(migrations(api, repo, services[api.name], said))
    deploy["log_service"] = api.name
    deploy["migrate_service"] = api.name
    ci, checks = ci_checks(repo, said)
    deploy["ci_checks"] = checks
    deploy["app_env"] = {"clear": clear, "secret": secret}
    said.deploy, said.ci_workflow = deploy, ci
    said.secrets = ["DB_PASSWORD", *secret] if data.get(POSTGRES) else list(secret)
    said.slot = [slot_service(s, apps, deploy) for s in apps]
    return said


def classify(compose: ComposeFile, said: Adoption) -> Tuple[Dict[str, ComposeService],
                                                             List[ComposeService], List[str]]:
    """Data services (PostgreSQL and Redis, by image), the app's services (built, or an image
    of the team's own), and the services left out."""
    data: Dict[str, ComposeService] = {}
    apps, left = [], []
    for service in compose.services.values():
        kind = image_kind(service.image)
        if kind in (POSTGRES, REDIS) and not service.build:
            if kind in data:
                raise DeployError(f"{compose.path.name}: two {kind} services ({data[kind].name}, "
                                  f"{service.name}); the tool runs one")
            data[kind] = service
            said.decided.append(f"{service.name}: {'PostgreSQL' if kind == POSTGRES else 'Redis'} "
                                f"({service.image}), a data service: it runs once, beside every "
                                f"release, as `{kind}`" + (f" (your name was {service.name}: the "
                                                           f"app reaches it as {kind})"
                                                           if service.name != kind else ""))
        elif service.build or own_image(service.image):
            apps.append(service)
        else:
            left.append(service.name)
            said.decided.append(f"{service.name} ({service.image or 'no image'}) is left out: the "
                                "tool deploys the images you build and PostgreSQL/Redis"
                                + ("; its edge (nginx) routes requests" if "nginx" in service.image
                                   or "traefik" in service.image or "caddy" in service.image else
                                   "; add it to the slot file by hand if the app needs it"))
        if service.name not in [d.name for d in data.values()]:
            said.confirm += service.notes    # a data service's volume is the tool's to keep
    return data, apps, left


def image_kind(image: str) -> str:
    """postgres, redis, or "" for any other image (by its repository's last path part)."""
    repository = image.rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    if repository in ("postgres", "postgis"):
        return POSTGRES
    if repository in ("redis", "valkey"):
        return REDIS
    return ""


def own_image(image: str) -> bool:
    """An image the team builds itself: named with a variable (ghcr.io/${GITHUB_REPO}-web) or in
    a registry path of their own, tagged for an environment rather than a version."""
    return "$" in image or ":staging" in image or image.endswith(":latest") and "/" in image


def project_name(given: str, compose: ComposeFile, repo: Path, said: Adoption) -> str:
    name = given or compose.name or re.sub(r"[^a-z0-9_-]+", "-", repo.name.lower()).strip("-_")
    if not NAME.fullmatch(name):
        raise DeployError(f"project name {name!r} must be lower case letters, digits, _ and - "
                          "(pass --project NAME)")
    said.decided.append(f"project {name}: the compose project on the server, STAGING_DIR "
                        f"/opt/{name}" + ("" if given else " (--project NAME to change it)"))
    return name


def build_spec(service: ComposeService, repo: Path, given: Dict[str, str],
               said: Adoption) -> Dict[str, object]:
    """Where and how the service's image is built: its `build:`, else its Dockerfile found by
    name (--dockerfile SERVICE=PATH first)."""
    build = service.build
    how = "its build: section"
    if service.name in given:
        build, how = dockerfile_build(given[service.name], repo, service.name), "--dockerfile"
    elif build is None:
        found = next((p.format(s=service.name) for p in DOCKERFILE_PLACES
                      if (repo / p.format(s=service.name)).is_file()), None)
        if found is None:
            raise DeployError(f"no Dockerfile found for {service.name} (image {service.image}): "
                              f"looked for {', '.join(p.format(s=service.name) for p in DOCKERFILE_PLACES)}; "
                              f"pass --dockerfile {service.name}=PATH")
        build, how = dockerfile_build(found, repo, service.name), "found by name"
    dockerfile = repo / build.context / build.dockerfile
    if not dockerfile.is_file():
        raise DeployError(f"{service.name}: {build.context}/{build.dockerfile} is not a file "
                          "(the compose file's build: context and dockerfile)")
    spec: Dict[str, object] = {"context": build.context, "dockerfile": build.dockerfile}
    args = dict(build.args)
    for arg in dockerfile_args(dockerfile):   # an ARG the service's environment also sets
        if arg not in args and arg in service.environment:
            args[arg] = service.environment[arg]
            said.decided.append(f"{service.name}: build arg {arg} = {service.environment[arg]} "
                                f"(the Dockerfile reads ARG {arg}; baked into the image)")
    secret_args = [a for a in args if LOOKS_SECRET.match(a) or any(
        LOOKS_SECRET.match(name) for name, _ in references(args[a]))]
    for arg in secret_args:
        args.pop(arg)
        said.confirm.append(f"{service.name}: build arg {arg} looks secret and is not passed (a "
                            "build arg stays in the image's history): make it a build secret "
                            f"(secrets: [{arg}] and RUN --mount=type=secret,id={arg})")
    if args:
        spec["args"] = args
    if build.target:
        spec["target"] = build.target
    if build.secrets:
        spec["secrets"] = list(build.secrets)
    said.decided.append(f"{service.name}: built from {build.dockerfile} with context "
                        f"{build.context} ({how})")
    return spec


def dockerfile_build(path: str, repo: Path, service: str) -> Build:
    """A Dockerfile named per service (Dockerfile.<service>, in a shared folder) builds with the
    repository as its context; one in a folder of its own, with that folder."""
    relative = Path(path)
    if relative.is_absolute() or ".." in relative.parts:
        raise DeployError(f"--dockerfile {service}={path}: a path inside the repository, please")
    if not (repo / relative).is_file():
        raise DeployError(f"--dockerfile {service}={path}: no such file in the repository")
    if relative.name == "Dockerfile" and len(relative.parts) > 1:
        return Build(context=str(relative.parent), dockerfile="Dockerfile")
    return Build(context=".", dockerfile=str(relative))


def dockerfile_args(path: Path) -> List[str]:
    return re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", path.read_text(errors="replace"),
                      re.M | re.I)


def data_settings(data: Mapping[str, ComposeService], said: Adoption) -> Dict[str, object]:
    """data_services, their images (major versions kept) and the database's user and name."""
    settings: Dict[str, object] = {"data_services": [k for k in (POSTGRES, REDIS) if k in data]}
    if POSTGRES in data:
        database = data[POSTGRES]
        settings["database_service"] = POSTGRES
        settings["postgres_image"] = database.image
        for variable, key in (("POSTGRES_USER", "db_user"), ("POSTGRES_DB", "db_name")):
            value = database.environment.get(variable, "")
            if value and not references(value):
                settings[key] = value
            elif not value and key == "db_user":
                settings[key] = "postgres"        # the image's own default
        if database.environment.get("POSTGRES_PASSWORD") and not references(
                database.environment["POSTGRES_PASSWORD"]):
            said.confirm.append("POSTGRES_PASSWORD is written in the compose file: on staging it "
                                "is the secret DB_PASSWORD (.env or CI secrets), the same value "
                                "if the server already holds your data")
        said.confirm.append("DB_USER, DB_NAME and DB_PASSWORD are those of the database already on "
                            "your server, if it runs there (docs/ADOPTING.md)")
    if REDIS in data:
        settings["redis_image"] = data[REDIS].image
    return settings


def choose_routes(apps: Sequence[ComposeService], repo: Path, services: Mapping[str, Mapping],
                  said: Adoption) -> Tuple[List[Dict[str, object]], ComposeService]:
    """The service on port 80 or serving static files gets `/`, the API `/api/`; one service
    alone gets `/`. Returns the routes and the API (whose health path is asked)."""
    def port(service: ComposeService, default: int) -> int:
        declared = service.environment.get("PORT", "")
        return service.ports[0] if service.ports else int(declared) if declared.isdigit() else default

    if len(apps) == 1:
        only = apps[0]
        said.decided.append(f"route / -> {only.name}:{port(only, 80)} (the only service)")
        return [{"path": "/", "service": only.name, "port": port(only, 80)}], only
    front = next((s for s in apps if serves_static(s, repo, services[s.name])), None) or \
        next((s for s in apps if s.name in FRONT_NAMES), None)
    api = next((s for s in apps if s is not front and s.name in API_NAMES), None) or \
        next((s for s in apps if s is not front), apps[0])
    if front is None:
        front = next(s for s in apps if s is not api)
    routes = [{"path": "/api/", "service": api.name, "port": port(api, 4000)},
              {"path": "/", "service": front.name, "port": port(front, 80)}]
    said.decided.append(f"route /api/ -> {api.name}:{routes[0]['port']}, everything else -> "
                        f"{front.name}:{routes[1]['port']}: one origin (STAGING_URL) for both")
    for other in apps:
        if other not in (api, front):
            said.decided.append(f"{other.name}: no route (a worker?); add one to invoke.yaml "
                                "routes if users reach it")
    return routes, api


def serves_static(service: ComposeService, repo: Path, spec: Mapping) -> bool:
    """Listens on 80, or its Dockerfile's last stage is a static file server."""
    if 80 in service.ports:
        return True
    dockerfile = repo / str(spec["context"]) / str(spec["dockerfile"])
    stages = re.findall(r"^\s*FROM\s+(\S+)", dockerfile.read_text(errors="replace"), re.M | re.I)
    return bool(stages) and any(server in stages[-1] for server in ("nginx", "caddy", "httpd"))


def health_path(api: ComposeService) -> str:
    """The path the API's own compose healthcheck asks, else the story's /api/health."""
    test = " ".join(map(str, api.healthcheck.get("test") or [])) if api.healthcheck else ""
    found = re.search(r"https?://[^/\s'\"]+(/[A-Za-z0-9._~/-]*)", test)
    return found.group(1) if found and found.group(1) != "/" else "/api/health"


def declare_environment(apps: Sequence[ComposeService], services: Mapping[str, Mapping],
                        said: Adoption) -> Tuple[Dict[str, str], List[str]]:
    """Every variable the app's services and build args read becomes a setting: secret when its
    name says so, else clear with its default; a literal value becomes the clear default (a
    secret-looking one, a secret). The tool's own variables stay the tool's."""
    clear: Dict[str, str] = {}
    secret: List[str] = []

    def declare(name: str, default: str, origin: str) -> None:
        if name in TOOL_VARIABLES or name in clear or name in secret or name.endswith("_IMAGE"):
            return
        if name in SETTINGS_BY_ENV:
            said.confirm.append(f"{origin} reads {name}, a setting of the tool: it gets the "
                                "tool's value")
            return
        if LOOKS_SECRET.match(name):
            secret.append(name)
            said.decided.append(f"{name}: a secret (by its name), read by {origin}: set it in "
                                ".env or the CI secrets")
        else:
            clear[name] = default
    for service in apps:
        for variable, value in service.environment.items():
            found = references(value)
            if not found and LOOKS_SECRET.match(variable):
                declare(variable, "", service.name)
                said.confirm.append(f"{variable} of {service.name} has a value in the compose "
                                    "file: on staging it is a secret (give it in .env or CI)")
            elif not found and variable not in SETTINGS_BY_ENV:
                declare(variable, value, service.name)
            for name, default in found:
                declare(name, default, service.name)
        for arg in (services[service.name].get("args") or {}).values():
            for name, default in references(str(arg)):
                declare(name, default, f"a build arg of {service.name}")
    return clear, secret


def fill_in(clear: Dict[str, str], routes: Sequence[Mapping], data: Mapping[str, object],
            said: Adoption) -> None:
    """Values the server's own .env held that staging-deploy can tell: Redis's URL, and the API's
    URL on the one origin behind the edge; the other URLs are for the team to confirm."""
    api = next((str(r["path"]).rstrip("/") for r in routes if r["path"] != "/"), "")
    for name, value in clear.items():
        if value:
            continue
        if name == "REDIS_URL" and REDIS in data:
            clear[name] = "redis://redis:6379"
            said.decided.append(f"{name} = redis://redis:6379 (the stack's Redis)")
        elif name.endswith("API_URL") and api:
            clear[name] = api
            said.decided.append(f"{name} = {api}: the API's route, on the page's own origin "
                                "(behind the edge, frontend and API share STAGING_URL)")
        elif name.endswith(("_URL", "_ORIGIN")):
            said.confirm.append(f"{name} has no value: behind the tool's edge the frontend and the "
                                "API share STAGING_URL's origin; give it one in invoke.yaml "
                                "app_env if the app needs it")


def slot_service(service: ComposeService, apps: Sequence[ComposeService],
                 deploy: Mapping) -> SlotService:
    """The service as a release runs it: its image from the deploy, its environment reading
    the settings (a literal or a URL with no value, from them), its own healthcheck only."""
    names = {s.name for s in apps}
    clear = deploy["app_env"]["clear"]
    environment = {}
    for variable, value in service.environment.items():
        if not references(value) and (clear.get(variable) == value or LOOKS_SECRET.match(variable)):
            value = f"${{{variable}}}"
        environment[variable] = value
    return SlotService(service.name, environment, service.healthcheck, service.command,
                       [d for d in service.depends_on if d in names])
