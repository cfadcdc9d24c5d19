"""The policy trade-off as a picture: time to reach the whole fleet against blast radius.

Drawn on a `Figure` with its own Agg canvas (no pyplot, no global backend, no display).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from failsmall.sim.compare import PolicyPoint
from failsmall.sim.figures import Measured


class NothingToDrawError(Exception):
    """No policy reached the whole fleet, so there is no trade-off to draw."""


def trade_off(points: list[PolicyPoint], title: str) -> Figure:
    """Two panels sharing the x axis (seconds for a good change to reach every node): nodes that
    served the bad bundle, and users' requests it failed. One point per policy in each."""
    drawn = [(p, p.reach.seconds) for p in points if isinstance(p.reach, Measured)]
    if not drawn:
        raise NothingToDrawError(
            "no policy's good change reached every node; run with more nodes or another seed"
        )
    figure = Figure(figsize=(11, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    panels = (
        (left, "nodes that served the bad bundle", [p.fault.nodes_served_bad for p, _ in drawn]),
        (right, "requests failed", [p.fault.requests_failed for p, _ in drawn]),
    )
    for axes, label, values in panels:
        xs = [x for _, x in drawn]
        axes.scatter(xs, [max(v, 1) for v in values], s=60, color="tab:blue", zorder=3)
        for (point, x), value in zip(drawn, values, strict=True):
            axes.annotate(
                f"{point.policy}\n{value:,}",
                (x, max(value, 1)),
                textcoords="offset points",
                xytext=(8, 4),
                fontsize=9,
            )
        axes.set_yscale("log")
        axes.set_ylim(top=max(max(values), 1) * 4)
        axes.set_xlabel("seconds for a good change to reach every node")
        axes.set_ylabel(label)
        axes.set_xlim(0, max(xs) * 1.3 + 1)
        axes.grid(True, which="major", alpha=0.3)
    figure.suptitle(title)
    return figure


def write_png(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=100)
