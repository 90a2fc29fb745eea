"""docs/BENCHMARKS.md from a finished `inv bench`: the table of medians side by side, every
failed request, our overhead on a good release, what a TLS handshake costs, where the time goes,
and the timelines (one PNG per scenario)."""
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import yaml

import testbed
from staging_deploy.config.defaults import with_tool_defaults
from testbed.timeline import draw

DEFAULTS = with_tool_defaults(yaml.safe_load((testbed.ROOT / "invoke.yaml").read_text())["deploy"])
SIDES = {"baseline": "baseline (story's pipeline)", "ours": "ours (`inv deploy.staging`)",
         "swarm": "ours on Swarm, 3 nodes (`DEPLOY_TARGET=swarm`)"}

# The late crash: after the candidate check and settle (about 5 s here), inside the watch window.
CRASH_AFTER = 12
LATE_CRASH = f"broken: crash after {CRASH_AFTER}s"
BROKEN = ("broken: health-500", "broken: crash", LATE_CRASH)


@dataclass
class Run:
    wall: float
    failed: int
    longest_gap: float
    slowest: float = 0.0                  # the longest request (sent to answered), seconds
    recovered: Optional[float] = None     # seconds from start until the old release answered again
    extra: Dict[str, float] = field(default_factory=dict)
    kinds: str = ""                       # what the failed requests were (load.LoadStats.kinds)
    reported_ok: Optional[bool] = None    # what the command itself said (exit code 0)


def report(bench, took: float) -> str:
    """docs/BENCHMARKS.md's text for a finished bench: the table of medians, every failed
    request, our overhead, the TLS handshake's cost, where the time goes."""
    def med(side, scenario, attr):
        runs = bench.results.get(scenario, {}).get(side, [])
        values = [getattr(r, attr) if attr in Run.__dataclass_fields__ else r.extra.get(attr)
                  for r in runs]
        found: List[float] = [float(v) for v in values if v is not None]
        return statistics.median(found) if found else None

    def cell(value, unit="s", digits=1):
        return "n/a" if value is None else f"{value:.{digits}f}{unit}"

    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    lines = [
        "# Benchmarks", "",
        f"`inv bench --runs {bench.runs} --swarm-runs {bench.swarm_runs}"
        f"{' --https' if bench.https else ''}` on {time.strftime('%Y-%m-%d')}: {cores} cores, "
        f"{memory:.0f} GiB memory, {platform.system()} {platform.release()}; the local testbed "
        f"(registry and staging host on this machine). Medians of {bench.runs} runs each. Each "
        f"side gets its own steady 50 requests/s, the story's two routes in turn (the API's "
        f"`/api/health`, the frontend's `/`; each request a new connection); ours runs "
        f"while the baseline "
        f"sleeps its 30 s (the baseline's pull, up and prune have the host to themselves). "
        f"Took {took / 60:.1f} min.", "",
    ]
    if bench.https:
        lines += [f"`--https`: ours serves over HTTPS (EDGE_TLS=acme, its certificate from "
                  f"the testbed's ACME server, pebble), and its load, its health checks and "
                  f"its watch window go through `{bench.https_url}`; the baseline stays on plain "
                  f"HTTP, as the story's pipeline has it" + (", and so does the Swarm "
                  "target's edge (it serves no HTTPS yet)" if bench.swarm_runs else "") + ".",
                  ""]
    sides = [side for side in SIDES if any(side in r for r in bench.results.values())]
    if "swarm" in sides:
        lines += [f"The Swarm column: the same releases and load on the testbed's three-node "
                  f"swarm (`inv testbed.up --swarm`), medians of {bench.swarm_runs} runs, "
                  "after the others (nothing else ran meanwhile). Its updates are Swarm's "
                  "own: one task at a time, start-first, `monitor` and `delay` of WATCH_SECONDS "
                  "+ 5 s, 15 s here (compose/stack-app.yaml), then our watch window; a "
                  "failed update is undone by deploying the previous release again, each "
                  "task watched 2 s (swarm.RESTORE_WINDOW: that release served before), "
                  "then our watch window (hence the broken releases' wall time).", ""]
    lines += ["| scenario | measure | " + " | ".join(SIDES[s] for s in sides) + " |",
              "|---|---|" + "---|" * len(sides)]

    def row(scenario, measure, attr, unit="s", digits=1, **given):
        cells = [given.get(side) or cell(med(side, scenario, attr), unit, digits)
                 for side in sides]
        lines.append(f"| {scenario} | {measure} | " + " | ".join(cells) + " |")

    def never_stopped(side, scenario):
        runs = bench.results.get(scenario, {}).get(side, [])
        return "it never stopped answering" if runs and all(r.failed == 0 for r in runs) else None

    def verdicts(side, scenario):
        runs = bench.results.get(scenario, {}).get(side, [])
        ok = sum(1 for r in runs if r.reported_ok)
        return f"success {ok} of {len(runs)}" if runs else "n/a"

    for scenario in ("good release",) + BROKEN:
        row(scenario, "the command reported", "reported_ok",
            **{side: verdicts(side, scenario) for side in sides})
        row(scenario, "wall time until the command exits", "wall")
        row(scenario, "failed requests", "failed", "", 0)
        row(scenario, "longest gap without a successful answer", "longest_gap")
        row(scenario, "longest request (sent to answered)", "slowest", "s", 2)
        if scenario != "good release":
            row(scenario, "previous release answers again after", "recovered",
                baseline="never (no rollback)", ours=never_stopped("ours", scenario),
                swarm=never_stopped("swarm", scenario))
            row(scenario, "failure detected (the step that saw it)", "detect",
                baseline="after sleep 30", swarm="Swarm's rollback or our watch")
    row("rollback", "wall time", "wall", baseline="n/a (none)")
    row("rollback", "failed requests", "failed", "", 0, baseline="n/a")
    row("rollback", "longest request (sent to answered)", "slowest", "s", 2, baseline="n/a")
    for side in ("ours", "swarm"):
        seen = [f"{scenario}: {r.kinds}" for scenario, by_side in bench.results.items()
                for r in by_side.get(side, []) if r.kinds]
        if seen:
            lines += ["", f"Every failed request of {SIDES[side]}, by run: "
                      + "; ".join(seen) + "."]
    pull = med("baseline", "good release", "pull")
    healthy = med("baseline", "good release", "to-healthy")
    ours_good = med("ours", "good release", "wall")
    watch = med("ours", "good release", "watch") or 0.0
    settle = float(DEFAULTS.get("health_settle", 0))
    if pull is not None and healthy is not None and ours_good is not None:
        overhead = ours_good - pull - healthy - watch - settle
        lines += ["", f"Our overhead on a good release: {ours_good:.1f}s wall minus "
                  f"{pull:.1f}s bare `docker compose pull` and {healthy:.1f}s from `up` to the new "
                  f"version answering (measured in the baseline runs, same images, same host), "
                  f"{watch:.1f}s of watch window after the switch (the new release already "
                  f"serves users then; WATCH_SECONDS) and the {settle:.0f}s settle of the "
                  f"candidate check (HEALTH_SETTLE) = **{overhead:.1f}s**."]
    if bench.handshake:
        fresh, kept = bench.handshake
        lines += ["", f"What TLS costs a request (`{bench.https_url}/api/health` on the live "
                  f"release, 200 sequential GETs each way, medians): {fresh * 1000:.1f} ms "
                  f"on a new connection (TCP and TLS handshakes), {kept * 1000:.1f} ms on a "
                  f"kept-alive one: **{(fresh - kept) * 1000:.1f} ms per handshake**."]
    for side, scenario in [(s, n) for s in ("ours", "swarm") for n in ("good release",
                                                                         "rollback")]:
        medians = {k: med(side, scenario, k) or 0.0
                   for r in bench.results.get(scenario, {}).get(side, [])
                   for k in r.extra if k.startswith("step: ")}
        steps = sorted(medians, key=lambda k: -medians[k])
        if steps:
            lines += ["", f"Where the time of {SIDES[side]} goes, {scenario} (median seconds "
                      "per step, from its step lines; the rest is starting the tool and "
                      "connecting):", "", "| step | seconds |", "|---|---|"]
            lines += [f"| {k[6:]} | {medians[k]:.2f} |" for k in steps]
    return "\n".join(lines) + "\n"


def draw_timelines(bench, folder) -> str:
    """A PNG per scenario in `folder` (baseline above ours); the Markdown that shows them."""
    lines = ["", "## Timelines", "",
             "What the steady load on each side's public port got during one deploy (the last "
             "run of each scenario; baseline, ours, ours on Swarm from the top), 100 ms at a "
             "time: 200 in green, 5xx in orange, no answer "
             "(timeout, refused connection) in red; dotted lines are the steps as the command "
             "printed them; the shaded part is until the command exited.", ""]
    for scenario, sides in bench.timelines.items():
        slug = re.sub(r"[^a-z0-9]+", "-", scenario.lower()).strip("-")
        ordered = {SIDES[side].replace("`", ""): sides[side] for side in SIDES if side in sides}
        draw(str(folder / f"bench-{slug}.png"), scenario, ordered)
        names = ", ".join(name.split(" (")[0] for name in ordered)
        lines += [f"![{scenario}: {names} from the top](bench-{slug}.png)", ""]
    return "\n".join(lines)


def write(text: str, bench) -> None:
    """The report and its timelines into docs/, keeping the sections `inv bench-db` writes."""
    out = testbed.ROOT / "docs" / "BENCHMARKS.md"
    out.parent.mkdir(exist_ok=True)
    text += draw_timelines(bench, out.parent)
    kept = ""   # the database-size section is `inv bench-db`'s
    if out.exists() and "\n## Deploy time against database size" in out.read_text():
        kept = "\n## Deploy time against database size" + \
            out.read_text().split("\n## Deploy time against database size", 1)[1]
    out.write_text(text + kept)
