"""A steady, bounded HTTP load against a 127.0.0.1 URL, and what users would have seen.

`SteadyLoad` sends one GET every 1/rate seconds from a background thread (each on a small
worker pool, so a slow answer does not delay the schedule) until stopped, and never for longer
than `max_seconds`. `LoadStats` counts failed requests (non-200 or no answer) and the longest
time without a successful answer.
"""
import concurrent.futures
import threading
import time
from dataclasses import dataclass
from typing import List, Tuple
from urllib.parse import urlparse

import requests


@dataclass
class LoadStats:
    sent: int
    failed: int
    longest_gap: float        # seconds without a successful answer, edges of the run included

    def line(self) -> str:
        return f"{self.sent} requests, {self.failed} failed, longest gap {self.longest_gap:.2f}s"


def stats(results: List[Tuple[float, float, bool]], started: float, stopped: float) -> LoadStats:
    """results: (sent at, answered at, ok) per request."""
    successes = sorted(done for _, done, ok in results if ok)
    edges = [started] + successes + [stopped]
    gap = max(b - a for a, b in zip(edges, edges[1:])) if len(edges) > 1 else 0.0
    return LoadStats(len(results), sum(1 for _, _, ok in results if not ok), gap)


class SteadyLoad:
    def __init__(self, url: str, rate: float = 50, max_seconds: float = 300, timeout: float = 2):
        host = urlparse(url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"load only goes to loopback addresses, not {host}")
        self.url, self.rate, self.max_seconds, self.timeout = url, rate, max_seconds, timeout
        self.results: List[Tuple[float, float, bool]] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=32)
        self.thread = threading.Thread(target=self._schedule, daemon=True)
        self.started = self.stopped = 0.0

    def _one(self):
        sent = time.monotonic()
        try:
            ok = requests.get(self.url, timeout=self.timeout).status_code == 200
        except requests.RequestException:
            ok = False
        with self.lock:
            self.results.append((sent, time.monotonic(), ok))

    def _schedule(self):
        interval = 1.0 / self.rate
        deadline = self.started + self.max_seconds
        tick = self.started
        while not self.stop_event.is_set() and tick < deadline:
            self.pool.submit(self._one)
            tick += interval
            self.stop_event.wait(max(0.0, tick - time.monotonic()))

    def __enter__(self):
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> LoadStats:
        if not self.stopped:
            self.stop_event.set()
            self.thread.join()
            self.pool.shutdown(wait=True)
            self.stopped = time.monotonic()
        with self.lock:
            return stats(list(self.results), self.started, self.stopped)
