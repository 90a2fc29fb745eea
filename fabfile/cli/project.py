"""The project the tool works on: the team's repository, found from where it runs.

The tool is installed, not copied: its own defaults ship with it (config/defaults.yaml), and
everything that belongs to the app is read from the project: its invoke.yaml (`deploy:` keys
override the tool's defaults), its compose folder, its `.env`, its git history. The project's
root is the nearest folder, from the working directory up, that holds an invoke.yaml or a
tasks.py (where Invoke itself looks), else the git work tree's top, else the working directory.
"""
import os
import subprocess
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

from ..config.defaults import with_tool_defaults
from ..config.settings import Settings, load_settings, read_environment, validate_sha
from ..errors import ConfigError
from ..story.images import commit_exists

MARKERS = ("invoke.yaml", "tasks.py")


def project_root(start: Optional[Path] = None) -> Path:
    """The team's repository root, seen from `start` (the working directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / name).is_file() for name in MARKERS):
            return folder
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=here, text=True,
                         capture_output=True)
    return Path(top.stdout.strip()) if top.returncode == 0 and top.stdout.strip() else here


def settings_for(declared: Mapping, groups: Sequence[str], sha: Optional[str] = None,
                 need_sha: bool = False, root: Optional[Path] = None) -> Settings:
    """Load and validate settings (the project's invoke.yaml `deploy:` keys over the tool's
    defaults, then .env and the environment) and --sha, reporting every problem in one message."""
    root = root or project_root()
    problems: List[str] = []
    settings: Optional[Settings] = None
    try:
        environ = read_environment(os.environ, root)
        settings = load_settings(with_tool_defaults(declared), environ, groups, root)
    except ConfigError as exc:
        problems += exc.problems
    if need_sha:
        problem = validate_sha(sha, lambda s: commit_exists(s, lambda argv: git_exit_code(argv, root)))
        if problem:
            problems.append(problem)
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def git_exit_code(argv: List[str], root: Path) -> int:
    return subprocess.run(argv, cwd=root, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode
