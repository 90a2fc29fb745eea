"""Timelines for docs/BENCHMARKS.md: what the steady load got during a deploy, 100 ms at a time.

One PNG per scenario, the story's pipeline above ours: answers per 100 ms by outcome (200,
5xx, no answer: a timeout or a refused connection), the deploy's steps marked on the time axis.
A reader sees the baseline's outage and our flat line without reading a table.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from testbed.load import Answer

BUCKET = 0.1      # seconds
LABEL_GAP = 0.8  # seconds between two step labels, so they do not print over each other
OUTCOMES = (("200", "#2e7d32"), ("5xx", "#ef6c00"), ("no answer", "#c62828"))


@dataclass
class Timeline:
    """One side's run: the load's answers, when its command started and ended (time.time()),
    and its steps as (time.time(), label)."""
    answers: List[Answer]
    started: float
    ended: float
    marks: List[Tuple[float, str]] = field(default_factory=list)


def outcome(answer: Answer) -> str:
    if answer.ok:
        return "200"
    return "5xx" if answer.status.isdigit() else "no answer"


def buckets(timeline: Timeline) -> Tuple[List[float], Dict[str, List[int]]]:
    """Bucket starts (seconds from the command's start) and, per outcome, answers sent in each."""
    if not timeline.answers:
        return [], {name: [] for name, _ in OUTCOMES}
    first = min(a.sent for a in timeline.answers) - timeline.started
    last = max(a.sent for a in timeline.answers) - timeline.started
    count = int((last - first) / BUCKET) + 1
    starts = [first + i * BUCKET for i in range(count)]
    counts = {name: [0] * count for name, _ in OUTCOMES}
    for answer in timeline.answers:
        index = min(count - 1, int((answer.sent - timeline.started - first) / BUCKET + 1e-9))
        counts[outcome(answer)][index] += 1
    return starts, counts


def draw(path: str, title: str, sides: Dict[str, Timeline]) -> None:
    """Write a PNG: one panel per side (in the order given), stacked answers per 100 ms."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(len(sides), 1, figsize=(11, 2.6 * len(sides)), sharex=True,
                                   squeeze=False)
    for axis, (side, timeline) in zip(axes[:, 0], sides.items()):
        starts, counts = buckets(timeline)
        bottom = [0] * len(starts)
        for name, colour in OUTCOMES:
            axis.bar(starts, counts[name], width=BUCKET, bottom=bottom, align="edge",
                     color=colour, label=name, linewidth=0)
            bottom = [b + c for b, c in zip(bottom, counts[name])]
        labelled = float("-inf")
        for when, label in timeline.marks:
            x = when - timeline.started
            axis.axvline(x, color="#555555", linewidth=0.6, linestyle=":")
            if x - labelled >= LABEL_GAP:     # steps closer than that share the earlier label
                labelled = x
                axis.text(x, axis.get_ylim()[1] * 0.98, " " + label, rotation=90, fontsize=6,
                          va="top", ha="left", color="#333333")
        axis.axvspan(0, timeline.ended - timeline.started, color="#1565c0", alpha=0.06)
        axis.set_ylabel("answers / 100 ms")
        axis.set_title(side, fontsize=9, loc="left")
    axes[0, 0].legend(loc="lower right", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("seconds from the start of the deploy command (shaded: until it exited)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    pyplot.close(figure)
