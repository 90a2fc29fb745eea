"""The ledger's size as a dimension of `inv bench-db`: a redeploy and `deploy.status` with the
ledger as it is (a few dozen deploys) and with 20,000 past deploys added (about a year for a
team that ships 50 times a day). The added events are synthetic (a start and an end each, the
size of real ones) and are removed afterwards: the ledger is put back byte for byte.
"""
import json
import statistics
import time
from typing import Dict, List

from testbed.bench import inv, on_host
from testbed.bench_db import testbed_env

LEDGER = "/opt/classroom-manager/ledger.jsonl"
PAST_DEPLOYS = 20_000


def past_events(count: int) -> str:
    """`count` finished deploys, oldest first, as ledger lines."""
    lines = []
    for n in range(count):
        sha = f"{n:040x}"
        lines.append(json.dumps({"event": "start", "id": f"20250101T000000Z-{n:06x}",
                                 "action": "deploy", "sha": sha, "previous": sha, "by": "bench",
                                 "started": "2025-01-01T00:00:00Z"}))
        lines.append(json.dumps({"event": "end", "id": f"20250101T000000Z-{n:06x}",
                                 "result": "succeeded", "ended": "2025-01-01T00:00:30Z",
                                 "duration": 30.0, "images": {
                                     "backend": f"r/b:staging-{sha}@sha256:{'0' * 64}",
                                     "frontend": f"r/f:staging-{sha}@sha256:{'0' * 64}"}}))
    return "\n".join(lines) + "\n"


def timed(*args: str) -> float:
    started = time.monotonic()
    result = inv(*args, env=testbed_env())
    if result.returncode != 0:
        raise RuntimeError(f"bench-db: inv {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return time.monotonic() - started


def measure(runs: int, live: str) -> Dict[str, List[float]]:
    return {"redeploy": [timed("deploy.staging", "--sha", live) for _ in range(runs)],
            "status": [timed("deploy.status") for _ in range(runs)]}


def main(runs: int, say=print) -> str:
    live = json.loads(inv("deploy.status", "--json", env=testbed_env()).stdout)["sha"]
    original = on_host(f"cat {LEDGER}").stdout
    small = measure(runs, live)
    say(f"  ledger of {original.count(chr(10))} events: {small}")
    on_host(f"cat - {LEDGER} > {LEDGER}.bench && mv {LEDGER}.bench {LEDGER}",
            stdin=past_events(PAST_DEPLOYS))
    try:
        big = measure(runs, live)
        say(f"  ledger with {PAST_DEPLOYS} past deploys added: {big}")
    finally:
        current = on_host(f"cat {LEDGER}").stdout
        added = past_events(PAST_DEPLOYS)
        assert current.startswith(added), "the bench's events are not where it put them"
        on_host(f"cat > {LEDGER}.bench && mv {LEDGER}.bench {LEDGER}",
                stdin=current[len(added):])
    rows = [f"| {what} | {statistics.median(small[what]):.1f}s | "
            f"{statistics.median(big[what]):.1f}s |" for what in ("redeploy", "status")]
    return "\n".join([
        "## Deploy and status time against the ledger's size", "",
        f"The same run: a redeploy of the live release and `deploy.status`, with the ledger as "
        f"the testbed had it ({original.count(chr(10))} events) and with {PAST_DEPLOYS:,} past "
        f"deploys added before them (synthetic, removed afterwards). Medians of {runs}.", "",
        f"| | {original.count(chr(10))} events | +{PAST_DEPLOYS:,} deploys |", "|---|---|---|",
        *rows]) + "\n"
