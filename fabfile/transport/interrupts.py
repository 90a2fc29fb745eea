"""Ctrl-C and SIGTERM during a deploy become an exception the deploy can recover from.

Inside `interruptible()`, SIGINT and SIGTERM are recorded, and `check()` raises `Interrupted`
(a BaseException, so no `except Exception` swallows it) at the next safe point: before each
command, every tenth of a second while one runs or waits for the lock (runner.Runner,
machines.py), in every pause of a polling loop. Not from the signal handler itself: an exception
raised at an arbitrary point can land inside paramiko while its transport thread holds a lock (a deploy
SIGTERMed in its health check then hung in its own undo, CI ci18 of stop 26), or inside a
finalizer, where Python drops it. Inside `shielded()`, used while rolling back, they are noted
and ignored: stopping a rollback half-way is what would leave staging broken. Inside
`stop_requested()`, used by `deploy.logs --follow`, Ctrl-C sets a flag the loop checks.
"""
import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, Iterator, List, Optional

Handler = Callable[[int, Optional[FrameType]], None]


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")


SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _handlers(handler: Handler) -> Iterator[None]:
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


_received: List[int] = []          # signals recorded inside interruptible(), not yet raised
_shields: List[bool] = []          # inside shielded(): nothing is raised
_arrived = threading.Event()         # wakes a pause() at once


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    def handler(signum: int, frame: Optional[FrameType]) -> None:
        _received.append(signum)
        _arrived.set()
    _received.clear()
    _arrived.clear()
    try:
        with _handlers(handler):
            yield
    finally:
        _received.clear()
        _arrived.clear()


def check() -> None:
    """At a safe point: raise Interrupted for a signal `interruptible()` recorded (once; never
    inside `shielded()`, where a rollback must finish)."""
    if _received and not _shields and threading.current_thread() is threading.main_thread():
        signum = _received[0]
        _received.clear()
        _arrived.clear()
        raise Interrupted(signum)


def pause(seconds: float) -> None:
    """time.sleep that a recorded signal ends at once (and raises)."""
    check()
    _arrived.wait(max(0.0, seconds))
    check()


@contextlib.contextmanager
def shielded(say: Callable[[str], None]) -> Iterator[None]:
    def handler(signum: int, frame: Optional[FrameType]) -> None:
        say(f"received {signal.Signals(signum).name} while restoring staging: finishing that first")
    _shields.append(True)
    try:
        with _handlers(handler):
            yield
    finally:
        _shields.pop()


@contextlib.contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An Event that Ctrl-C (SIGINT) sets while inside, for a loop that ends on it. A flag, not
    an exception: Python drops an exception a signal handler raises while a finalizer runs
    (paramiko's Channel.__del__ even swallows it on purpose), and a `--follow` that lost its
    KeyboardInterrupt that way printed on for good (CI, stop 25)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
