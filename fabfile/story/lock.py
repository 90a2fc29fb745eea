"""The deploy lock: `flock` on the host, held by a process that lives as long as our SSH session.

The holder is `flock <file> sh -c 'echo locked $$; exec cat'`, held open by the transport: `cat`
waits for our stdin, so when we release (close stdin), exit, get SIGKILLed or lose the network,
the process ends and the kernel drops the lock. A lock can never outlive its holder's process;
`lock.json` beside it says who holds it, from where, for which sha, since when.
"""
from __future__ import annotations

import contextlib
import json
import os
import posixpath
import time
from typing import TYPE_CHECKING, Iterator, List, Optional

from ..errors import DeployError
from ..transport.commands import Command, cmd
from .ledger import who_runs_this

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..report import Reporter
    from ..transport.machines import Held
    from ..transport.runner import Runner
    from ..transport.session import Session

LOCK_FILE = "deploy.lock"
INFO_FILE = "deploy.lock.json"
HELD_EXIT = 75


class LockHeld(DeployError):
    pass


def acquire_command(path: str, wait: Optional[float]) -> Command:
    waiting = ("--timeout", str(int(wait))) if wait else ("--nonblock",)
    return cmd("flock", *waiting, "--conflict-exit-code", str(HELD_EXIT), path,
               "sh", "-c", "echo locked $$; exec cat >/dev/null")


def describe_holder(info: dict, now: float) -> str:
    if not info:
        return "unknown holder"
    age = now - float(info.get("since_epoch", now))
    return (f"{info.get('action', 'deploy')} of {str(info.get('sha', '?'))[:12]} by "
            f"{info.get('by', '?')}, {age:.0f}s ago (host pid {info.get('pid', '?')})")


def is_stale(info: dict, now: float, max_age: float) -> bool:
    return bool(info) and now - float(info.get("since_epoch", now)) > max_age


class DeployLock:
    """Held on the SSH connection of a HostSession for one deploy or rollback."""

    def __init__(self, host: Session, settings: Settings, info: dict) -> None:
        self.host = host
        self.path = posixpath.join(settings.STAGING_DIR, LOCK_FILE)
        self.info_path = posixpath.join(settings.STAGING_DIR, INFO_FILE)
        self.max_age = settings.LOCK_MAX_AGE
        self.settings = settings
        self.info = dict(info)
        self.holder_process: Optional[Held] = None   # while we hold the lock

    def holder(self) -> dict:
        result = self.host.runner.run(cmd("cat", self.info_path), check=False)
        try:
            return json.loads(result.stdout) if result.ok else {}
        except ValueError:
            return {}

    def acquire(self, wait: Optional[float] = None, reporter: Optional[Reporter] = None) -> None:
        """Take the lock now, or within `wait` seconds; take over a lock older than max_age."""
        if self._try(wait):
            return
        holder = self.holder()
        if is_stale(holder, time.time(), self.max_age):
            if reporter:
                reporter.note(f"taking over a stale lock ({describe_holder(holder, time.time())})")
            break_lock(self.host.runner, self.settings)
            if self._try(10):
                return
        raise LockHeld(f"staging is locked by {describe_holder(holder, time.time())}. Wait for it "
                       f"(--wait-lock=SECONDS), or if that deploy is gone for sure, run "
                       f"`inv deploy.unlock`")

    def _try(self, wait: Optional[float]) -> bool:
        held = self.host.runner.hold(acquire_command(self.path, wait), timeout=(wait or 0) + 15)
        words = held.first_line.split()
        if len(words) != 2 or words[0] != "locked" or not words[1].isdigit():
            held.release(0)
            return False
        self.holder_process = held
        self.info.update(pid=int(words[1]), since_epoch=time.time())
        try:
            self.host.runner.run(cmd("tee", self.info_path, stdin=json.dumps(self.info) + "\n"))
        except BaseException:
            self.release()
            raise
        return True

    def reacquire(self, wait: float = 20) -> None:
        """After a reconnect: the old holder ended with the old connection; take the lock again."""
        self.holder_process = None
        self.acquire(wait)

    def release(self) -> None:
        """Close the holder's stdin: `cat` ends, the lock is dropped. Safe to call twice."""
        if self.holder_process is None:
            return
        held, self.holder_process = self.holder_process, None
        try:
            self.host.runner.run(cmd("rm", "-f", self.info_path), check=False)
        except Exception:  # the connection is gone: so is the holder process, and the lock
            pass
        held.release(5)


@contextlib.contextmanager
def held(host: Session, settings: Settings, action: str, sha: str, wait: Optional[float],
         reporter: Reporter) -> Iterator[DeployLock]:
    """The deploy lock for the body of a with-statement; released on every path."""
    lock = DeployLock(host, settings, {"action": action, "sha": sha, "by": who_runs_this()})
    with reporter.step("take the deploy lock" + (f" (waiting up to {wait:.0f}s)" if wait else "")):
        lock.acquire(wait, reporter)
    try:
        yield lock
    finally:
        lock.release()


def file_identity(stat_output: str) -> Optional[str]:
    """`stat -c '%d %i'` of a file as /proc/locks names it: MAJOR:MINOR:INODE, device numbers in
    hex. The inode alone is not enough: another filesystem may have a file with the same one."""
    try:
        device, inode = (int(field) for field in stat_output.split())
    except ValueError:
        return None
    return f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"


def holder_pids(proc_locks: str, identity: str) -> List[int]:
    """Pids holding a flock on the file with this identity, from /proc/locks (the kernel's truth)."""
    pids = []
    for line in proc_locks.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == identity:
            pids.append(int(fields[4]))
    return pids


def lock_holders(runner: Runner, settings: Settings) -> List[int]:
    """The host pids holding the deploy lock, read from the kernel's table. Only looking: asking
    flock would take the lock for an instant, and a deploy starting just then would find it held
    by an unknown holder (deploy.status and deploy.exec ask this)."""
    path = posixpath.join(settings.STAGING_DIR, LOCK_FILE)
    identity = file_identity(runner.run(cmd("stat", "-c", "%d %i", path), check=False).stdout)
    return holder_pids(runner.run(cmd("cat", "/proc/locks")).stdout, identity) if identity else []


def break_lock(runner: Runner, settings: Settings) -> List[int]:
    """For `inv deploy.unlock`: end whatever process holds the lock, remove its note."""
    pids = lock_holders(runner, settings)
    for pid in pids:
        runner.run(cmd("kill", str(pid)), "ending the lock holder")
    runner.run(cmd("rm", "-f", posixpath.join(settings.STAGING_DIR, INFO_FILE)), check=False)
    return pids
