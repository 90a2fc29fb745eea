"""The tasks users run, and the `staging-deploy` command that runs them.

`staging-deploy X` is `inv X` with the tool's tasks, in any repository (no tasks.py needed):
the project's invoke.yaml, compose folder and .env are read from the project root
(project.py). A project that wants `inv deploy.staging` mounts the same tasks in a tasks.py of
its own:

    from staging_deploy.cli import collection
    namespace = collection()
"""
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import List, Optional

from invoke import Collection, Program

from . import deploy_tasks, staging_tasks
from .boundary import last_resort
from .project import project_root

DISTRIBUTION = "staging-deploy"


def collection() -> Collection:
    """Every task of the tool (`deploy.*`, `staging.*`), as a fresh root collection."""
    sys.excepthook = last_resort   # what fails before a task runs ends in one line too
    return Collection(deploy_tasks.collection(), staging_tasks.collection())


def tool_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:   # run from a source tree that was never installed
        return "unknown"


class ProjectProgram(Program):
    """Invoke's Program with the tool's tasks, reading the project's invoke.yaml from the project
    root (Invoke would only read one beside a tasks.py it loaded)."""

    def parse_collection(self) -> None:
        self.config.set_project_location(str(project_root()))
        self.config.load_project()
        super().parse_collection()


def main(argv: Optional[List[str]] = None) -> None:
    """The `staging-deploy` console command."""
    ProjectProgram(namespace=collection(), version=tool_version(), name="staging-deploy",
                   binary="staging-deploy").run(argv)
