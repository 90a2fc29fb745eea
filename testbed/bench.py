"""`inv bench`: the story's original procedure and `inv deploy.staging`, side by side, under load.

Scenarios: a good release, and broken ones: health failing from the start, a crash at start, and
a crash CRASH_AFTER seconds after start (after our candidate check, inside our watch window).

Same testbed host, same images, in one run, median of N runs each. The baseline is
`testbed/baseline/deploy.sh` (pull, up --remove-orphans, system prune, sleep 30, curl -f) in its
own compose project `baseline` on the host, published on 127.0.0.1:8081; ours is the real CLI
against the real project on 127.0.0.1:8080. Each gets its own steady 50 requests/s, taking the
story's two routes in turn: the API (/api/health) and the frontend (/). To fit in a quarter of an
hour, ours runs while the baseline sleeps its 30 s: the baseline's pull, up and prune have the
host to themselves, and ours overlaps only its idle wait.

With `--https`, ours serves over HTTPS (EDGE_TLS=acme, its certificate from the testbed's
ACME server) and its load goes through https://localhost:<port>, each request a new connection
(a TLS handshake); the report adds what a handshake costs a request on the live release.

Then the same scenarios on the Swarm target (`inv testbed.up --swarm`: three nodes, the app on
127.0.0.1:8082, same releases, same load) for `--swarm-runs` runs: a third column.
"""
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Tuple

import requests
from dotenv import dotenv_values

import testbed
from testbed import swarm
from testbed.bench_report import CRASH_AFTER, LATE_CRASH, Run, report, write
from testbed.commits import make_commit
from testbed.load import STORY_ROUTES, SteadyLoad, first_serving
from testbed.timeline import Timeline

ROOT = testbed.ROOT
OURS_URL = f"http://127.0.0.1:{testbed.HTTP_PORT}"
HTTPS_URL = f"https://localhost:{testbed.HTTPS_PORT}"
BASELINE_URL = f"http://127.0.0.1:{testbed.BASELINE_HTTP_PORT}"
SWARM_URL = f"http://127.0.0.1:{swarm.HTTP_PORT}"
BASELINE_DIR = "/opt/baseline"




def step_marks(stdout: str, started: float, wall: float) -> List[Tuple[float, str]]:
    """(time.time(), step) for each step a deploy began. Its clock starts when the tool has
    loaded: wall time minus the duration it reports."""
    duration = re.search(r"^  duration +([\d.]+)s$", stdout, re.M)
    begun = started + (wall - float(duration.group(1)) if duration else 0.0)
    return [(begun + float(t), re.sub(r"[0-9a-f]{12,40}", "<sha>", name)[:48])
            for t, name in re.findall(r"^\[ *([\d.]+)s\] --> (.+)$", stdout, re.M)]


def step_times(stdout: str) -> Dict[str, float]:
    """`step: <name>` -> seconds, from a deploy's ` ok <name> (1.2s)` lines (shas and slot names
    replaced, so the same step of different runs has one name)."""
    times: Dict[str, float] = {}
    for name, seconds in re.findall(r"^\[ *[\d.]+s\]  ok (.+) \(([\d.]+)s\)$", stdout, re.M):
        name = re.sub(r"[0-9a-f]{12,40}", "<sha>", name)
        name = re.sub(r"\b(blue|green)\b", "<slot>", name)
        times["step: " + name] = times.get("step: " + name, 0.0) + float(seconds)
    return times


def commit(label: str, fault: Optional[str] = None) -> str:
    """A release commit off HEAD with a fixed date, so reruns reuse its images."""
    files = {"app/backend/RELEASE": f"bench {label}\n"}
    if fault:
        files["app/backend/FAULT"] = fault + "\n"
    fixed = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}
    return make_commit(files, "HEAD", f"bench {label}", keep_as="bench", env_extra=fixed)


def inv(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def on_host(script: str, user: str = "deploy", stdin: Optional[str] = None) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", "-i", "-u", user, testbed.HOST, "sh", "-c", script],
                          input=stdin, capture_output=True, text=True)


STEADY = 0.5  # seconds of steady load before and after each action


def under_load(url: str, action) -> tuple:
    """Run `action()` under steady load; return (its result, wall seconds, load results, stats)."""
    with SteadyLoad(url, rate=50, max_seconds=240, paths=STORY_ROUTES, verify=verify(url)) as load:
        time.sleep(STEADY)
        started = time.time()
        result = action()
        wall = time.time() - started
        time.sleep(STEADY)
    summary = load.stop()
    return result, wall, load.results, summary, started


def verify(url: str):
    """What a client trusts for `url`: the testbed ACME server's CAs for our HTTPS side."""
    return str(testbed.ACME_CA_BUNDLE) if url.startswith("https:") else True


def tls_cost(url: str, count: int = 200) -> Tuple[float, float]:
    """Median seconds of a GET of `url` on a new connection (TCP and TLS handshakes) and on a
    kept-alive one: the difference is what a handshake costs a request."""
    def timed(get) -> float:
        began = time.perf_counter()
        get().raise_for_status()
        return time.perf_counter() - began

    fresh = [timed(lambda: requests.get(url, verify=verify(url), timeout=5)) for _ in range(count)]
    with requests.Session() as session:   # (verify per request: REQUESTS_CA_BUNDLE in the
        kept = [timed(lambda: session.get(url, verify=verify(url), timeout=5))  # environment
                for _ in range(count)]                     # would override a session's own)
    return statistics.median(fresh), statistics.median(kept)


class Beside:
    """Runs an action in a thread, and re-raises its error when joined."""

    def __init__(self, action):
        self.action, self.error, self.thread = action, None, None

    def _run(self):
        try:
            self.action()
        except Exception as exc:  # handed to join(), in the bench's own thread
            self.error = exc

    def start(self):
        if self.action and not self.thread:
            self.thread = threading.Thread(target=self._run)
            self.thread.start()

    def join(self):
        if self.thread:
            self.thread.join()
        if self.error:
            raise self.error


class Bench:
    def __init__(self, runs: int, swarm_runs: int = 3, say=print, https: bool = False):
        self.runs, self.swarm_runs, self.say, self.https = runs, swarm_runs, say, https
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("STAGING_", "REGISTRY", "GITHUB_"))}
        self.env["DEPLOY_ENV_FILE"] = str(testbed.ENV_FILE)
        plain = dict(self.env)       # the Swarm target's edge serves plain HTTP only
        if https:
            self.env.update(testbed.https_settings())
        self.handshake: Optional[Tuple[float, float]] = None
        self.https_url = HTTPS_URL
        self.targets = {"ours": (self.env, HTTPS_URL if https else OURS_URL),
                        "swarm": (dict(plain, DEPLOY_ENV_FILE=str(swarm.ENV_FILE)), SWARM_URL)}
        self.results: Dict[str, Dict[str, List[Run]]] = {}
        self.timelines: Dict[str, Dict[str, Timeline]] = {}   # the last run of each

    def record(self, scenario: str, side: str, run: Run):
        self.results.setdefault(scenario, {}).setdefault(side, []).append(run)
        extra = "".join(f"  {k} {v:.1f}s" for k, v in run.extra.items())
        kinds = f" ({run.kinds})" if run.kinds else ""
        self.say(f"  {scenario:<22} {side:<8} wall {run.wall:6.1f}s  failed {run.failed:4d}{kinds}  "
                 f"gap {run.longest_gap:5.1f}s  slowest {run.slowest:4.2f}s{extra}")

    # ---- ours -------------------------------------------------------------------------------
    def ours(self, scenario: str, sha: str, side: str = "ours"):
        env, url = self.targets[side]
        result, wall, answers, load, started = under_load(
            url, lambda: inv("deploy.staging", "--sha", sha, env=env))
        self.timelines.setdefault(scenario, {})[side] = Timeline(
            answers, started, started + wall, step_marks(result.stdout, started, wall))
        expected_failure = scenario != "good release"
        if (result.returncode != 0) != expected_failure:
            raise RuntimeError(f"{side}/{scenario}: unexpected result\n{result.stdout}{result.stderr}")
        # when the old release answered again: after the last failed request (0: it never stopped)
        run = Run(wall, load.failed, load.longest_gap, load.slowest, load.last_failure or 0.0,
                  kinds=load.kinds, reported_ok=result.returncode == 0)
        detect = re.search(r"(before it gets traffic \(deadline \d+s\)|after the switch[^\n]*) "
                           r"FAILED after ([\d.]+)s", result.stdout)
        if detect:
            run.extra["detect"] = float(detect.group(2))
        watched = re.search(r" ok watch [^\n]*\(([\d.]+)s\)\n", result.stdout)
        if watched:
            run.extra["watch"] = float(watched.group(1))
        run.extra.update(step_times(result.stdout))
        self.record(scenario, side, run)

    def ours_rollback(self, side: str = "ours"):
        env, url = self.targets[side]
        result, wall, answers, load, started = under_load(
            url, lambda: inv("deploy.rollback", env=env))
        self.timelines.setdefault("rollback", {})[side] = Timeline(
            answers, started, started + wall, step_marks(result.stdout, started, wall))
        if result.returncode != 0:
            raise RuntimeError(f"rollback failed\n{result.stdout}{result.stderr}")
        run = Run(wall, load.failed, load.longest_gap, load.slowest, kinds=load.kinds)
        run.extra.update(step_times(result.stdout))
        self.record("rollback", side, run)

    # ---- baseline ---------------------------------------------------------------------------
    def point_latest_at(self, sha: str):
        """What the original pipeline's build job does: staging-latest becomes this release."""
        settings = dotenv_values(testbed.ENV_FILE)
        for service in ("frontend", "backend"):
            repo = f"{settings['REGISTRY']}/{settings['IMAGE_NAME']}-{service}"
            subprocess.run(["docker", "tag", f"{repo}:staging-{sha}", f"{repo}:staging-latest"],
                           check=True)
            subprocess.run(["docker", "push", "--quiet", f"{repo}:staging-latest"], check=True,
                           capture_output=True)

    def baseline(self, scenario: str, sha: str, meanwhile=None):
        """The baseline's deploy of `sha`; `meanwhile()` starts (in a thread) once it sleeps.
        The baseline is timed and loaded until its own command exits, whatever ours does."""
        self.point_latest_at(sha)
        beside = Beside(meanwhile)

        def deploy_sh():
            process = subprocess.Popen(
                ["docker", "exec", "-u", "deploy", testbed.HOST, "sh", "-c",
                 f"STAGING_URL=http://127.0.0.1:81 {BASELINE_DIR}/deploy.sh"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            output = []
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                if line.startswith("MARK sleep"):
                    beside.start()
            process.wait()
            return "".join(output), process.returncode

        (output, code), wall, answers, load, started = under_load(BASELINE_URL, deploy_sh)
        beside.join()
        marks = dict((m.group(1), float(m.group(2)))
                     for m in re.finditer(r"MARK (\w+) ([\d.]+)", output))
        self.timelines.setdefault(scenario, {})["baseline"] = Timeline(
            answers, started, started + wall, [(t, name) for name, t in marks.items()])
        run = Run(wall, load.failed, load.longest_gap, load.slowest, kinds=load.kinds,
                  reported_ok=code == 0)
        if scenario == "good release":
            healthy = first_serving(answers, sha, marks.get("up", started))
            if healthy and "pull" in marks:
                run.extra["pull"] = marks["up"] - marks["pull"]
                run.extra["to-healthy"] = healthy - marks["up"]
        self.record(scenario, "baseline", run)
        if scenario == "good release":
            self.baseline_good = sha
        else:
            self.restore_baseline()

    def restore_baseline(self):
        """The original has no rollback: put the good release that ran before back, untimed."""
        self.point_latest_at(self.baseline_good)
        on_host(f"cd {BASELINE_DIR} && docker compose pull -q && docker compose up -d --wait")

    def prepare_baseline(self):
        """/opt/baseline: our compose file, a .env naming staging-latest (as the story's did)."""
        settings = dotenv_values(testbed.ENV_FILE)
        repo = f"{settings['REGISTRY']}/{settings['IMAGE_NAME']}"
        on_host(f"install -d -o deploy -g deploy {BASELINE_DIR}", user="root")
        env = "".join(f"{k}='{v}'\n" for k, v in {
            "FRONTEND_IMAGE": f"{repo}-frontend:staging-latest",
            "BACKEND_IMAGE": f"{repo}-backend:staging-latest",
            "POSTGRES_IMAGE": settings["POSTGRES_IMAGE"], "REDIS_IMAGE": settings["REDIS_IMAGE"],
            "APP_PORT": "81", "DB_USER": "classroom", "DB_NAME": "classroom",
            "DB_PASSWORD": settings["DB_PASSWORD"], "JWT_SECRET": settings["JWT_SECRET"],
            "DATABASE_URL": f"postgresql://classroom:{settings['DB_PASSWORD']}@postgres:5432/classroom",
            "REDIS_URL": "redis://redis:6379/0"}.items())
        on_host(f"umask 077; cat > {BASELINE_DIR}/.env", stdin=env)
        on_host(f"cat > {BASELINE_DIR}/compose.yaml",
                stdin=(testbed.HERE / "baseline/compose.yaml").read_text())
        on_host(f"cat > {BASELINE_DIR}/deploy.sh && chmod +x {BASELINE_DIR}/deploy.sh",
                stdin=(testbed.HERE / "baseline/deploy.sh").read_text())
        self.restore_baseline()

    # ---- the whole run ----------------------------------------------------------------------
    def run(self) -> float:
        """Every scenario, every run; returns how long it all took (seconds)."""
        started = time.monotonic()
        testbed.up()
        self.good = [commit("good-1"), commit("good-2")]
        broken = {"broken: health-500": commit("health-500", "health-500"),
                  "broken: crash": commit("crash", "crash"),
                  LATE_CRASH: commit("crash-after", f"crash-after:{CRASH_AFTER}")}
        self.say("publishing the bench releases (ours deploys them once)")
        for sha in self.good:
            if inv("deploy.staging", "--sha", sha, env=self.env).returncode != 0:
                raise RuntimeError("could not deploy a bench release")
        for sha in broken.values():   # builds and pushes them; each fails fast and is removed
            inv("deploy.staging", "--sha", sha, env=dict(self.env, HEALTH_TIMEOUT="1"))
        self.baseline_good = self.good[0]
        self.prepare_baseline()
        running = {"baseline": self.good[0], "ours": self.good[1]}
        for i in range(self.runs):
            self.say(f"run {i + 1} of {self.runs}")
            # a good release is always a real change: the good one that is not running
            targets = {side: self.good[1] if sha == self.good[0] else self.good[0]
                       for side, sha in running.items()}
            self.baseline("good release", targets["baseline"],
                          lambda ours=targets["ours"]: self.ours("good release", ours))
            running = targets
            for scenario, sha in broken.items():
                self.baseline(scenario, sha, lambda s=scenario, h=sha: self.ours(s, h))
            self.ours_rollback()   # back to the good release before the current one
            running["ours"] = self.good[1] if running["ours"] == self.good[0] else self.good[0]
        on_host(f"cd {BASELINE_DIR} && docker compose down")
        if self.https:
            self.handshake = tls_cost(HTTPS_URL + "/api/health")
        if self.swarm_runs:
            self.run_swarm(broken)
        return time.monotonic() - started

    def run_swarm(self, broken: Dict[str, str]):
        """The same releases and scenarios on the testbed's swarm (their images are pushed)."""
        testbed.up(swarm=True)
        if inv("deploy.staging", "--sha", self.good[0], env=self.targets["swarm"][0]).returncode:
            raise RuntimeError("could not deploy a bench release to the swarm")
        running = self.good[0]
        for i in range(self.swarm_runs):
            self.say(f"swarm run {i + 1} of {self.swarm_runs}")
            running = self.good[1] if running == self.good[0] else self.good[0]
            self.ours("good release", running, "swarm")
            for scenario, sha in broken.items():
                self.ours(scenario, sha, "swarm")
            self.ours_rollback("swarm")
            running = self.good[1] if running == self.good[0] else self.good[0]


def main(runs: int = 5, swarm_runs: int = 3, https: bool = False) -> str:
    bench = Bench(runs, swarm_runs, https=https)
    text = report(bench, bench.run())
    write(text, bench)
    return text
