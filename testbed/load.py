"""A steady, bounded HTTP load against a 127.0.0.1 URL, and what users would have seen.

`SteadyLoad` sends one GET every 1/rate seconds from a background thread (each on a small
worker pool, so a slow answer does not delay the schedule) until stopped, and never for longer
than `max_seconds`; given several paths (the story's app: its API and its frontend), it takes
them in turn. `stats` counts failed requests (non-200 or no answer) and the longest time
without a successful answer; each result also keeps the release that answered (the stand-in
names it in its `X-App-Version` header; its health body has the story's shape, no version).
"""
import collections
import concurrent.futures
import itertools
import threading
import time
from dataclasses import dataclass
from typing import List, NamedTuple, Optional, Sequence, Union
from urllib.parse import urlparse

import requests

VERSION_HEADER = "X-App-Version"
# The story's app has two public routes: its API (asked at its health path) and its frontend.
STORY_ROUTES = ("/api/health", "/")


def health_of(url: str):
    """(status, release that answered) of one GET, or (None, None) when nothing answered."""
    try:
        response = requests.get(url, timeout=5)
        return response.status_code, response.headers.get(VERSION_HEADER)
    except requests.RequestException:
        return None, None


class Answer(NamedTuple):
    sent: float          # time.time() when sent
    done: float          # time.time() when answered (or failed)
    ok: bool             # HTTP 200
    version: Optional[str] = None
    status: str = ""     # the HTTP code, or the exception's name when there was no answer
    path: str = ""       # which route it asked


@dataclass
class LoadStats:
    sent: int
    failed: int
    longest_gap: float        # seconds without a successful answer, edges of the run included
    last_failure: Optional[float] = None   # seconds from the start to the last failed answer
    kinds: str = ""                        # what the failures were, e.g. "502 x1, ReadTimeout x2"
    routes: str = ""                       # per path when there were several: "/api/health 0 of 50"
    failed_sent: str = ""                  # when the first failed ones were sent: "17.7s /api/health"
    slowest: float = 0.0                   # the longest request, sent to answered (or failed)

    def line(self) -> str:
        kinds = f" ({self.kinds})" if self.kinds else ""
        routes = f"; failed per route: {self.routes}" if self.routes else ""
        sent = f"; failed ones sent at {self.failed_sent} from the start" if self.failed_sent else ""
        return (f"{self.sent} requests, {self.failed} failed{kinds}, "
                f"longest gap {self.longest_gap:.2f}s, longest request {self.slowest:.2f}s"
                f"{routes}{sent}")


def stats(results: List[Answer], started: float, stopped: float) -> LoadStats:
    successes = sorted(a.done for a in results if a.ok)
    failed = sorted((a for a in results if not a.ok), key=lambda a: a.sent)
    failures = [a.done for a in failed]
    edges = [started] + successes + [stopped]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    kinds = collections.Counter(a.status for a in results if not a.ok)
    paths = sorted({a.path for a in results})
    routes = ", ".join(f"{path} {sum(not a.ok for a in results if a.path == path)} of "
                       f"{sum(a.path == path for a in results)}" for path in paths)
    return LoadStats(len(results), len(failures), gap,
                     (max(failures) - started) if failures else None,
                     ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items())),
                     routes if len(paths) > 1 else "",
                     ", ".join(f"{a.sent - started:.1f}s {a.path}".rstrip() for a in failed[:5]),
                     max((a.done - a.sent for a in results), default=0.0))


def first_serving(results: List[Answer], version: str, after: float) -> Optional[float]:
    """When `version` first answered 200 after `after` (time.time()), or None."""
    times = [a.done for a in results if a.ok and a.version == version and a.done >= after]
    return min(times) if times else None


class SteadyLoad:
    def __init__(self, url: str, rate: float = 50, max_seconds: float = 300, timeout: float = 2,
                 paths: Sequence[str] = ("",), verify: Union[bool, str] = True):
        host = urlparse(url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load only goes to loopback addresses, not {host}")
        self.url, self.rate, self.max_seconds, self.timeout = url, rate, max_seconds, timeout
        self.verify = verify     # https: the CA bundle that signed the edge's certificate
        self.paths = itertools.cycle(paths)
        self.results: List[Answer] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
        self.thread = threading.Thread(target=self._schedule, daemon=True)
        self.started = self.stopped = 0.0

    def _one(self, path):
        sent, version = time.time(), None
        try:
            response = requests.get(self.url + path, timeout=self.timeout, verify=self.verify)
            ok, status = response.status_code == 200, str(response.status_code)
            version = response.headers.get(VERSION_HEADER)
        except requests.RequestException as exc:
            ok, status = False, type(exc).__name__
        with self.lock:
            self.results.append(Answer(sent, time.time(), ok, version, status, path))

    def _schedule(self):
        interval = 1.0 / self.rate
        deadline = time.monotonic() + self.max_seconds
        tick = time.monotonic()
        while not self.stop_event.is_set() and tick < deadline:
            self.pool.submit(self._one, next(self.paths))
            tick += interval
            self.stop_event.wait(max(0.0, tick - time.monotonic()))

    def __enter__(self):
        self.started = time.time()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> LoadStats:
        if not self.stopped:
            self.stop_event.set()
            self.thread.join()
            self.pool.shutdown(wait=True)
            self.stopped = time.time()
        with self.lock:
            return stats(list(self.results), self.started, self.stopped)
