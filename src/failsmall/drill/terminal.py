"""A drill report for the terminal: one column per profile, so that runs read side by side."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from failsmall.drill.report import Figures, Measured, NotMeasured, Timing


def _timing(timing: Timing) -> str:
    match timing:
        case Measured(seconds=seconds):
            return f"{seconds:.1f} s"
        case NotMeasured(why=why):
            return f"[dim]— ({escape(why)})[/]"


def _nodes(nodes: list[str]) -> str:
    return f"{len(nodes)}: {', '.join(nodes)}" if nodes else "0"


def rows(f: Figures) -> list[tuple[str, str]]:
    by_node = ", ".join(f"{n} {s:.0%}" for n, s in f.failed_share_by_node.items())
    return [
        ("requests", f"{f.requests:,} in {f.duration_s:.0f} s"),
        ("failed", f"{f.failed_share:.2%}"),
        ("  blocked / 5xx / lost", f"{f.outcomes['blocked']} / {f.outcomes['error']} / {f.lost}"),
        ("failed per node while faulted", by_node or "-"),
        ("nodes that served a bad bundle", _nodes(f.nodes_served_bad)),
        ("nodes that served a faulty push", _nodes(f.nodes_served_faulty_push)),
        ("time to detect", _timing(f.time_to_detect)),
        ("time to roll back", _timing(f.time_to_roll_back)),
        ("latency p50 / p99", f"{f.p50_ms:.1f} / {f.p99_ms:.1f} ms"),
        ("widest version skew", f"{f.widest_skew} bundle(s) at once"),
        ("steady state before / after", f"{_yes(f.steady_before)} / {_yes(f.steady_after)}"),
    ]


def _yes(value: bool) -> str:
    return "[green]holds[/]" if value else "[red]broken[/]"


def print_report(console: Console, runs: list[Figures]) -> None:
    if not runs:
        return
    table = Table(title=f"drill {escape(runs[0].scenario)}", show_lines=False)
    table.add_column("")
    for f in runs:
        table.add_column(f.profile, overflow="fold")
    columns = [rows(f) for f in runs]
    for i, (label, _) in enumerate(columns[0]):
        table.add_row(label, *(c[i][1] for c in columns))
    console.print(table)
    for f in runs:
        if f.interrupted:
            console.print(
                f"[yellow]{f.profile}: the fault phase ended early:[/] {escape(f.interrupted)}"
            )
        if f.bad_bundles:
            names = ", ".join(escape(v) for v in f.bad_bundles.values())
            console.print(f"{f.profile}: bad bundles: {names}")
