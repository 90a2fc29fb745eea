"""What a team's repository itself says, beyond its compose file: how its migrations run (an
entrypoint script that migrates, Django's manage.py, Rails' bin/rails) and which CI workflow
must pass before a deploy (its jobs' names)."""
import re
import shlex
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import yaml

from .adoption import Adoption
from .compose_file import ComposeService


def migrations(api: ComposeService, repo: Path, spec: Mapping, said: Adoption) -> Dict[str, object]:
    """How the release's migrations run: a line of the image's entrypoint script that migrates
    (Prisma's `migrate deploy` and the like) run as its own step before the release starts,
    with the entrypoint set aside so it ends; Django's and Rails' commands when their files are
    there; else no migration step."""
    dockerfile = repo / str(spec["context"]) / str(spec["dockerfile"])
    text = dockerfile.read_text(errors="replace")
    entrypoint = re.findall(r"^\s*ENTRYPOINT\s+(.+)$", text, re.M | re.I)
    script = entrypoint_script(entrypoint[-1] if entrypoint else "", repo, str(spec["context"]))
    line = migrating_line(script) if script else None
    if script and line:
        words = shlex.split(line)
        check = words[:-1] + ["status"] if words[-1] == "deploy" else []
        said.decided.append(f"migrations: `{line}` (from {script.relative_to(repo)}) runs as its "
                            "own step before the release starts, without the image's ENTRYPOINT "
                            "(which migrates, then serves: it would never end); its check: "
                            + (f"`{' '.join(check)}`" if check else "none (a dump before every "
                                                                    "release)"))
        return {"migrate_command": words, "migrate_check_command": check,
                "migrate_entrypoint": "env"}
    for marker, command, check in (("manage.py", ["python", "manage.py", "migrate"],
                                    ["python", "manage.py", "migrate", "--check"]),
                                   ("bin/rails", ["bin/rails", "db:migrate"],
                                    ["bin/rails", "db:abort_if_pending_migrations"])):
        if (repo / str(spec["context"]) / marker).is_file():
            said.decided.append(f"migrations: `{' '.join(command)}` before the release starts "
                                f"(found {marker}); its check: `{' '.join(check)}`")
            return {"migrate_command": command, "migrate_check_command": check}
    said.decided.append("migrations: no migration command found: the release applies its own as "
                        "it starts, if any (a dump is taken before every release)")
    return {"migrate_command": [], "migrate_check_command": []}


def entrypoint_script(instruction: str, repo: Path, context: str) -> Optional[Path]:
    """The repository file an ENTRYPOINT runs, if it is a script of the repository (found by
    its name under the context)."""
    try:
        words = yaml.safe_load(instruction) if instruction.strip().startswith("[") else \
            shlex.split(instruction)
    except (ValueError, yaml.YAMLError):
        return None
    for word in words or []:
        name = Path(str(word)).name
        if name.endswith((".sh", "entrypoint")) or "entrypoint" in name:
            found = sorted((repo / context).rglob(name))
            return next((p for p in found if "node_modules" not in p.parts and p.is_file()), None)
    return None


def migrating_line(script: Path) -> Optional[str]:
    """The first command of the script that migrates (not a comment), without `exec`/`&&`."""
    for raw in script.read_text(errors="replace").splitlines():
        line = raw.strip()
        if line.startswith("#") or "migrate" not in line:
            continue
        line = re.split(r"\s*(?:&&|\|\||;)\s*", line)[0]
        line = re.sub(r"^(exec|command)\s+", "", line)
        if line and re.fullmatch(r"[A-Za-z0-9_./:=@+ -]+", line):
            return line
    return None


def ci_checks(repo: Path, said: Adoption) -> Tuple[str, List[str]]:
    """The team's CI workflow (one run on pull requests) and its jobs' names: the checks that
    must pass before a deploy."""
    folder = repo / ".github" / "workflows"
    for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
        if "deploy" in path.name or "rollback" in path.name:
            continue
        try:
            document = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        triggers = document.get("on", document.get(True)) if isinstance(document, dict) else None
        names = triggers if isinstance(triggers, (list, dict)) else [triggers]
        if "pull_request" not in (names or []) or not isinstance(document.get("jobs"), dict):
            continue
        jobs = [str(job.get("name") or key) for key, job in document["jobs"].items()
                if isinstance(job, dict) and "${{" not in str(job.get("name") or key)]
        said.decided.append(f"CI: {path.name} runs before every deploy (in the deploy's own "
                            f"workflow run); the checks that must pass: {', '.join(jobs)}")
        if "workflow_call" not in (names or []):
            said.confirm.append(f"add `workflow_call:` to the `on:` of {path.name}: the deploy "
                                "workflow calls it")
        return path.name, jobs
    said.confirm.append("no CI workflow found (one that runs on pull_request): the deploy "
                        "workflow then runs without one, and `--require-ci` refuses until "
                        "invoke.yaml ci_checks names your CI's jobs")
    return "", []
