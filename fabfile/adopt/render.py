"""The text of each file staging.init writes, from an Adoption (decide.py)."""
import json
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Dict

import yaml

from ..config.declared import image_variable
from .adoption import Adoption

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCK = Path(__file__).resolve().parent.parent / "files" / "deploy-requirements.txt"
COMPOSE_DIR = "deploy"         # where init puts the slot file (invoke.yaml compose_dir)
SLOT_FILE = "app.yaml"
LOGGING = {"driver": "json-file",
           "options": {"max-size": "${LOG_MAX_SIZE:-10m}", "max-file": "${LOG_MAX_FILE:-3}"}}
SET_BY_DEPLOY = "is set by the deploy"


def files(adoption: Adoption, tasks_py: bool = False) -> Dict[str, str]:
    """Every file init writes, by its path in the repository."""
    written = {
        "invoke.yaml": invoke_yaml(adoption),
        f"{COMPOSE_DIR}/{SLOT_FILE}": slot_file(adoption),
        ".github/workflows/deploy-staging.yml": deploy_workflow(adoption),
        ".github/workflows/rollback-staging.yml": (TEMPLATES / "rollback-staging.yml").read_text(),
        ".github/workflows/certificate-staging.yml": (TEMPLATES / "certificate-staging.yml").read_text(),
        ".github/deploy-requirements.txt": LOCK.read_text(),
        ".github/staging-deploy.txt": tool_requirement(),
        f"{COMPOSE_DIR}/env.example": env_example(adoption),
    }
    if tasks_py:
        written["tasks.py"] = ('"""`inv deploy.staging` and the rest: the tasks of staging-deploy '
                               '(`inv --list`)."""\nfrom staging_deploy.cli import collection\n\n'
                               "namespace = collection()\n")
    return written


class _Plain(yaml.SafeDumper):
    """Writes a value each time it appears (no &anchors, *aliases)."""

    def ignore_aliases(self, data: object) -> bool:
        return True


def dump(value: object) -> str:
    return yaml.dump(value, Dumper=_Plain, sort_keys=False, default_flow_style=None, width=100,
                     allow_unicode=True)


def invoke_yaml(adoption: Adoption) -> str:
    deploy = dict(adoption.deploy, compose_dir=COMPOSE_DIR)
    return ("# staging-deploy's settings for this project (written by `staging-deploy staging.init` "
            "from\n# your compose file; yours to edit). Every key and its default: the tool's "
            "docs/CONFIGURATION.md.\n# Environment variables (or .env) override the keys that "
            "have one; secrets live only there.\n" + dump({"deploy": deploy}))


def slot_file(adoption: Adoption) -> str:
    """The app's services as a release runs them (the tool's compose/app.yaml shape): images
    from the deploy, no published ports (the edge routes to them), on the stack's network."""
    services = {}
    for service in adoption.slot:
        variable = image_variable(service.name)
        spec: Dict[str, object] = {
            "image": f"${{{variable}:?{variable} {SET_BY_DEPLOY}}}",
            "logging": LOGGING,
            "restart": "unless-stopped",
        }
        if service.command is not None:
            spec["command"] = service.command
        if service.environment:
            spec["environment"] = service.environment
        spec["networks"] = {"default": {"aliases": [
            f"{service.name}-${{DEPLOY_SLOT:?DEPLOY_SLOT {SET_BY_DEPLOY}}}"]}}
        if service.depends_on:
            spec["depends_on"] = {name: {"condition": "service_started"}
                                  for name in service.depends_on}
        if service.healthcheck:
            spec["healthcheck"] = service.healthcheck
        services[service.name] = spec
    document = {"services": services, "networks": {"default": {
        "name": f"${{APP_NETWORK:?APP_NETWORK {SET_BY_DEPLOY}}}", "external": True}}}
    return ("# One release of the app, as the deploy runs it beside the live one (compose project "
            "<project>-blue\n# or -green; written by `staging-deploy staging.init` from your "
            "compose file; yours to edit).\n# The edge sends each request to a service as "
            "invoke.yaml `routes` say: no port is published\n# here. Each release's .env gives "
            "the images (*_IMAGE), DEPLOY_SLOT, and the app's variables\n# (invoke.yaml app_env, "
            "DATABASE_URL, STAGING_URL, ...).\n" + dump(document))


def deploy_workflow(adoption: Adoption) -> str:
    text = (TEMPLATES / "deploy-staging.yml").read_text()
    if adoption.ci_workflow:
        ci = (f"  ci:\n    uses: ./.github/workflows/{adoption.ci_workflow}  "
              "# zizmor: ignore[self-repository]\n    permissions:\n      contents: read\n")
        needs = "    needs: ci"
    else:
        ci, needs = "", "    # no CI workflow was found: add `needs: ci` and a `ci:` job calling yours"
    secrets = "".join(f"          {name}: ${{{{ secrets.{name} }}}}\n" for name in adoption.secrets)
    return (text.replace("@@CI_JOB@@\n", ci).replace("@@NEEDS@@", needs)
            .replace("@@SECRETS@@\n", secrets))


def env_example(adoption: Adoption) -> str:
    lines = ["# What staging-deploy needs from you, for `staging-deploy deploy.staging` from a shell:",
             "# copy to .env at the repository's root (never committed) and fill in. In CI the",
             "# same names are secrets and variables of the GitHub environment `staging`",
             "# (docs/ADOPTING.md).",
             "# the server's name or IP address", "STAGING_HOST=",
             "# the SSH user that deploys (in the docker group)", "STAGING_USER=deploy",
             "# its private key, or a path to it", "STAGING_SSH_KEY=",
             "# the server's host key line, as `ssh-keyscan HOST` prints it", "STAGING_KNOWN_HOSTS=",
             "# where users reach the app, such as https://staging.example.com", "STAGING_URL=",
             "# owner/repo: the images are ghcr.io/<owner>/<repo>-<service>", "IMAGE_NAME=",
             "# the secrets"]
    lines += [f"{name}=" for name in adoption.secrets]
    database = [key for key in ("db_user", "db_name") if "postgres_image" in adoption.deploy
                and key not in adoption.deploy]
    if database:
        lines.append("# your database's user and name: those it was made with, if it already "
                     "runs on the server")
        lines += [f"{key.upper()}=" for key in database]
    lines.append("# the app's other variables have defaults in invoke.yaml (app_env); a line here "
                 "overrides one")
    return "\n".join(lines) + "\n"


def tool_requirement() -> str:
    """The line CI installs the tool from: where this copy came from, when that is a place CI
    can reach (a git URL at its commit, a wheel's URL), else the version to pin by hand."""
    version, source = "unknown", ""
    try:
        dist = distribution("staging-deploy")
        version = dist.version
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except (PackageNotFoundError, ValueError):
        direct = {}
    url = str(direct.get("url", ""))
    vcs = direct.get("vcs_info") or {}
    if vcs.get("vcs") == "git" and not url.startswith("file:"):
        source = f"staging-deploy @ git+{url}@{vcs.get('commit_id')}"
    elif url.startswith(("https://", "http://")):
        source = f"staging-deploy @ {url}"
    header = ("# The staging-deploy CI installs (with --no-deps: its dependencies are in "
              "deploy-requirements.txt).\n# Upgrading the tool: change this line, then run "
              "`staging-deploy staging.init --force`\n# to refresh deploy-requirements.txt.\n")
    if source:
        return header + source + "\n"
    return (header + f"# Installed here from a local copy (version {version}): name a place CI "
            "can reach, such as\n# staging-deploy @ git+https://github.com/OWNER/staging-deploy"
            f"@<commit>\nstaging-deploy=={version}\n")
