"""Ctrl-C and SIGTERM during a deploy become an exception the deploy can recover from.

Inside `interruptible()`, SIGINT and SIGTERM raise `Interrupted` (a BaseException, so no
`except Exception` swallows it, and unlike KeyboardInterrupt Invoke does not absorb it while
waiting on a command). Inside `shielded()`, used while rolling back, they are noted and ignored:
stopping a rollback half-way is what would leave staging broken. Inside `stop_requested()`,
used by `deploy.logs --follow`, Ctrl-C sets a flag the loop checks.
"""
import contextlib
import signal
import threading
from types import FrameType
from typing import Callable, ContextManager, Iterator, Optional

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


def interruptible() -> ContextManager[None]:
    def handler(signum: int, frame: Optional[FrameType]) -> None:
        raise Interrupted(signum)
    return _handlers(handler)


def shielded(say: Callable[[str], None]) -> ContextManager[None]:
    def handler(signum: int, frame: Optional[FrameType]) -> None:
        say(f"received {signal.Signals(signum).name} while restoring staging: finishing that first")
    return _handlers(handler)


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
