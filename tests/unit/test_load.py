"""The load generator used by the zero-downtime tests and `inv bench`."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from testbed.load import Answer, SteadyLoad, first_serving, stats


def test_stats_count_failures_and_the_longest_gap_without_success():
    results = [Answer(0.0, 0.1, True), Answer(0.2, 0.3, False, status="502"),
               Answer(0.4, 2.1, False, status="ReadTimeout"), Answer(2.2, 2.3, True)]
    summary = stats(results, started=0.0, stopped=2.5)
    assert (summary.sent, summary.failed) == (4, 2)
    assert summary.kinds == "502 x1, ReadTimeout x1"
    assert "2 failed (502 x1, ReadTimeout x1)" in summary.line()
    assert summary.longest_gap == pytest.approx(2.2)
    assert summary.last_failure == pytest.approx(2.1)
    assert summary.slowest == pytest.approx(1.7)        # the ReadTimeout, sent to given up
    assert "longest request 1.70s" in summary.line()


def test_no_success_at_all_is_one_long_gap():
    assert stats([Answer(0.0, 1.0, False)], 0.0, 3.0).longest_gap == 3.0


def test_first_serving_finds_when_a_version_took_over():
    results = [Answer(0, 1, True, "a"), Answer(1, 2, True, "b"), Answer(2, 3, True, "b")]
    assert first_serving(results, "b", after=0) == 2
    assert first_serving(results, "c", after=0) is None


class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_steady_load_is_bounded_and_counts_answers():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        load = SteadyLoad(f"http://127.0.0.1:{server.server_address[1]}/", rate=50, max_seconds=1)
        with load:
            load.thread.join(5)      # ends by itself at max_seconds
        summary = load.stop()
    finally:
        server.shutdown()
    assert 40 <= summary.sent <= 51 and summary.failed == 0


def test_several_routes_are_asked_in_turn_and_counted_apart():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        load = SteadyLoad(f"http://127.0.0.1:{server.server_address[1]}", rate=40,
                          max_seconds=0.5, paths=("/api/health", "/"))
        with load:
            load.thread.join(5)
        summary = load.stop()
    finally:
        server.shutdown()
    asked = [a.path for a in sorted(load.results, key=lambda a: a.sent)]
    assert asked[:4] == ["/api/health", "/", "/api/health", "/"]
    assert summary.routes.startswith("/ 0 of ") and ", /api/health 0 of " in summary.routes
    results = [Answer(0, 1, True, path="/"), Answer(1, 2, False, status="502", path="/api/health")]
    assert "failed per route: / 0 of 1, /api/health 1 of 1" in stats(results, 0, 3).line()


def test_load_only_goes_to_loopback():
    with pytest.raises(ValueError, match="loopback"):
        SteadyLoad("http://10.0.0.1/")


def test_bench_report_puts_baseline_and_ours_side_by_side():
    from testbed.bench import Bench
    from testbed.bench_report import Run, report
    bench = Bench(runs=3, say=lambda text: None)
    for wall in (30.0, 32.0, 31.0):
        bench.record("good release", "baseline", Run(wall, 120, 2.5, extra={"pull": 0.5, "to-healthy": 3.0}))
    for wall in (9.0, 10.0, 11.0):
        bench.record("good release", "ours", Run(wall, 0, 0.1, extra={"watch": 2.0}, reported_ok=True))
    bench.record("broken: crash", "ours", Run(12.0, 0, 0.1, recovered=0.0, extra={"detect": 0.6}))
    for ok in (True, True, False):
        bench.record("broken: crash after 12s", "baseline", Run(34.0, 300, 4.0, reported_ok=ok))
    bench.record("broken: crash after 12s", "ours", Run(20.0, 0, 0.1, 0.52, recovered=0.0,
                                                        extra={"detect": 6.4}, reported_ok=False))
    table = report(bench, took=600)
    assert "| good release | wall time until the command exits | 31.0s | 10.0s |" in table
    assert "| good release | failed requests | 120 | 0 |" in table
    assert ("| broken: crash | previous release answers again after | never (no rollback) | "
            "it never stopped answering |") in table
    assert ("| broken: crash after 12s | the command reported | success 2 of 3 | success 0 of 1 |"
            in table)
    assert ("| broken: crash after 12s | failure detected (the step that saw it) | after sleep 30 "
            "| 6.4s |") in table
    assert "| broken: crash after 12s | longest request (sent to answered) | 0.00s | 0.52s |" \
        in table
    assert "= **2.5s**" in table     # 10.0 - 0.5 - 3.0 - 2.0 of watch window - 2 of settle
    assert "Medians of 3 runs" in table


def test_step_times_name_a_step_the_same_in_every_run():
    from testbed.bench import step_times
    out = ("[   1.0s]  ok pull images (0.6s)\n"
           "[   9.8s]  ok check slot green before it gets traffic (deadline 30s) (2.7s)\n"
           f"[  12.0s]  ok start {'a' * 12} in slot blue, beside the live one (1.2s)\n")
    assert step_times(out) == {"step: pull images": 0.6,
                               "step: check slot <slot> before it gets traffic (deadline 30s)": 2.7,
                               "step: start <sha> in slot <slot>, beside the live one": 1.2}


def test_a_timeline_counts_each_outcome_per_100_ms_and_draws_a_png(tmp_path):
    from testbed.timeline import Timeline, buckets, draw
    answers = [Answer(100.005 + i * 0.02, 100.01 + i * 0.02, i < 10, "a", "200" if i < 10 else
                      ("502" if i < 15 else "ReadTimeout")) for i in range(20)]
    timeline = Timeline(answers, started=100.0, ended=100.3, marks=[(100.1, "switch")])
    starts, counts = buckets(timeline)
    assert len(starts) == 4
    assert counts["200"] == [5, 5, 0, 0] and counts["5xx"] == [0, 0, 5, 0]
    assert counts["no answer"] == [0, 0, 0, 5]
    path = tmp_path / "t.png"
    draw(str(path), "good release", {"baseline": timeline, "ours": timeline})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_step_marks_are_placed_on_the_load_clock():
    from testbed.bench import step_marks
    out = ("[   0.0s] --> connect to deploy@h:22 (pinned host key)\n"
           f"[   2.5s] --> start {'b' * 40} in slot blue, beside the live one\n"
           "  duration  20.0s\n")
    assert step_marks(out, started=1000.0, wall=20.5) == [
        (1000.5, "connect to deploy@h:22 (pinned host key)"),
        (1003.0, "start <sha> in slot blue, beside the live one")]
