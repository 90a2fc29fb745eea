"""Release commits for tests and the benchmark, made without touching the working tree or branch."""
import os
import subprocess
import uuid
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AUTHOR = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "t@t",
          "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@t"}


def git(*args, env=None, stdin=None) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True,
                          env=env, input=stdin).stdout.strip()


def make_commit(files: dict, parent: str = "HEAD", message: str = "test release",
                keep_as: str = "testbed", env_extra: Optional[dict] = None) -> str:
    """A real commit (parent + changed files) via a private index, kept under refs/<keep_as>/
    so garbage collection leaves it alone."""
    # in git's own directory (`.git` is a file in a worktree: ask where it is)
    index = os.path.join(git("rev-parse", "--absolute-git-dir"), f"test-index-{uuid.uuid4().hex}")
    env = dict(os.environ, GIT_INDEX_FILE=index, **AUTHOR, **(env_extra or {}))
    try:
        git("read-tree", parent, env=env)
        for path, content in files.items():
            blob = git("hash-object", "-w", "--stdin", stdin=content)
            git("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=env)
        tree = git("write-tree", env=env)
        sha = git("commit-tree", tree, "-p", git("rev-parse", parent), "-m", message, env=env)
    finally:
        if os.path.exists(index):
            os.unlink(index)
    git("update-ref", f"refs/{keep_as}/{sha}", sha)
    return sha
