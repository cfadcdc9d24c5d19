"""`failsmall sim SCENARIO`: run a rollout scenario over a simulated fleet; `failsmall sim
--compare`: every built-in rollout policy over the same fault, drawn as a trade-off."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from failsmall.cli.output import DataTable, Exit, JsonOption, console, fail, plain, print_json
from failsmall.sim import SCENARIOS, ScenarioResult, SimSettings, run_scenario
from failsmall.sim.compare import FLEET, PolicyPoint, compare_policies
from failsmall.sim.faults import FAULTS
from failsmall.sim.figures import Figures, timing_text
from failsmall.sim.plot import NothingToDrawError, trade_off, write_png

ALL = "all"


def sim(
    scenario: Annotated[
        str,
        typer.Argument(help=f"One of: {', '.join(SCENARIOS)}, or {ALL!r} for every one."),
    ] = "",
    nodes: Annotated[
        int | None,
        typer.Option(
            "--nodes",
            min=1,
            max=100_000,
            help=f"Fleet size (default 5000; {FLEET:,} = 330 sites x 100 nodes with --compare).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same run).")] = 1,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Run every built-in rollout policy over the same fault and draw the trade-off.",
        ),
    ] = False,
    fault: Annotated[
        str, typer.Option("--fault", help=f"With --compare: one of {', '.join(FAULTS)}.")
    ] = "bad-canary",
    png: Annotated[
        Path, typer.Option("--png", help="With --compare: where to write the picture.")
    ] = Path("sim-trade-off.png"),
    json_out: JsonOption = False,
) -> None:
    """Drive the real rollout state machine over a simulated fleet and report what happened,
    with the figures a drill reports.

    Exits 1 if any property the scenario must hold did not hold, 2 for bad input.
    """
    if compare:
        if scenario:
            fail("--compare runs its own fault", "drop the scenario, or choose it with --fault")
        _compare(FLEET if nodes is None else nodes, seed, fault, png, json_out)
        return
    if not scenario:
        fail("no scenario given", f"name one of {', '.join(SCENARIOS)}, or {ALL}; or --compare")
    nodes = 5000 if nodes is None else nodes
    names = list(SCENARIOS) if scenario == ALL else [scenario]
    if scenario != ALL and scenario not in SCENARIOS:
        fail(
            f"no scenario named {scenario!r}",
            f"choose one of {', '.join(SCENARIOS)}, or {ALL}",
        )
    settings = SimSettings(nodes=nodes, seed=seed)
    results: list[tuple[ScenarioResult, float]] = []
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[virtual]:>7.1f} virtual s"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_out,
    ) as progress:
        for name in names:
            task = progress.add_task(f"{name} on {nodes} nodes", total=None, virtual=0.0)
            started = time.perf_counter()
            result = run_scenario(name, settings, progress=_reporter(progress, task))
            results.append((result, time.perf_counter() - started))
            progress.remove_task(task)
    if json_out:
        data = [{**r.to_dict(), "wall_s": round(wall, 3)} for r, wall in results]
        print_json(data[0] if len(data) == 1 else data)
    else:
        for result, wall in results:
            _print(result, wall)
        if len(results) > 1:
            _print_summary(results)
    if not all(result.held for result, _ in results):
        raise typer.Exit(int(Exit.FAILED))


def _compare(nodes: int, seed: int, fault: str, png: Path, json_out: bool) -> None:
    if fault not in FAULTS:
        fail(f"no fault named {fault!r}", f"choose one of {', '.join(FAULTS)}")
    if not png.parent.is_dir():
        fail(f"cannot write {png}: no directory {png.parent}", "create it or choose another --png")
    settings = SimSettings(nodes=nodes, seed=seed)
    started = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_out,
    ) as progress:
        task = progress.add_task(f"policies on {nodes:,} nodes")

        def report(step: str) -> None:
            progress.update(task, description=f"{nodes:,} nodes, {step}")

        points = compare_policies(settings, fault, progress=report)
    wall = time.perf_counter() - started
    title = f"rollout policies on {nodes:,} simulated nodes, fault {fault!r} (seed {seed})"
    try:
        figure = trade_off(points, title)
    except NothingToDrawError as error:
        fail(str(error), "see the figures with --json")
    try:
        write_png(figure, png)
    except OSError as error:
        fail(f"cannot write {png}: {error.strerror}", "choose another --png")
    if json_out:
        print_json(
            {
                "nodes": nodes,
                "seed": seed,
                "fault": fault,
                "png": str(png),
                "wall_s": round(wall, 3),
                "policies": [point.to_dict() for point in points],
            }
        )
        return
    _print_points(points, nodes, fault)
    console.print(f"wrote {png} ({wall:.1f} s of wall time)")


def _print_points(points: list[PolicyPoint], nodes: int, fault: str) -> None:
    table = DataTable(title=f"policies on {nodes:,} nodes: a good change, then {fault}",
                      title_justify="left")  # fmt: skip
    for column in ("policy", "reaches fleet", "nodes on bad", "requests failed", "failed",
                   "detect", "roll back"):  # fmt: skip
        table.add_column(column, justify="left" if column == "policy" else "right")
    for point in points:
        f = point.fault
        table.add_row(
            point.policy,
            timing_text(point.reach),
            f"{f.nodes_served_bad:,}",
            f"{f.requests_failed:,}",
            f"{f.failed_share:.3%}",
            timing_text(f.time_to_detect),
            timing_text(f.time_to_roll_back),
        )
    console.print(table)


def _reporter(progress: Progress, task: TaskID) -> Callable[[float], None]:
    def report(now: float) -> None:
        progress.update(task, virtual=now)

    return report


def _print(result: ScenarioResult, wall_s: float) -> None:
    console.rule(f"[bold]{result.scenario}[/]: {result.description}")
    console.print(
        f"{result.nodes} nodes, seed {result.seed}: {result.events} simulated events, "
        f"{result.audit_entries} audit entries, {wall_s:.2f} s of wall time"
    )
    rollouts = DataTable(title="rollouts", title_justify="left", box=box.SIMPLE_HEAD)
    rollouts.add_column("bundle", no_wrap=True)
    rollouts.add_column("class", no_wrap=True)
    rollouts.add_column("outcome", no_wrap=True)
    for column in ("took", "caught", "back", "peak", "ran it"):
        rollouts.add_column(column, justify="right", no_wrap=True)
    for r in result.rollouts:
        rollouts.add_row(
            r.label,
            r.change_class,
            _outcome(r.final_state),
            f"{r.duration_s:.1f}s",
            f"{r.detected_at - r.started_at:.1f}s" if r.detected_at >= 0 else "-",
            f"{r.time_to_restore_s:.1f}s" if r.restored_at >= 0 else "-",
            str(r.max_assigned),
            str(r.ever_ran),
        )
    console.print(rollouts)
    console.print(
        "[dim]caught: the gate's verdict, back: the fleet back on the last good bundle "
        "(both from the start); peak: most nodes assigned it at once; ran it: nodes that "
        "ever served it; policies: "
        + ", ".join(f"{r.label} {r.policy}" for r in result.rollouts)
        + "[/]"
    )
    for r in result.rollouts:
        if r.final_state not in {"completed"}:
            console.print(f"  [dim]{r.label}:[/] {r.reason}")
    labels = [label for label in result.labels if any(
        label in row.serving for row in result.timeline)]  # fmt: skip
    timeline = DataTable(title="nodes per bundle", title_justify="left", box=box.SIMPLE_HEAD)
    timeline.add_column("t (s)", justify="right")
    for label in labels:
        timeline.add_column(label, justify="right")
    for row in result.short_timeline():
        timeline.add_row(f"{row.at:.1f}", *(str(row.serving.get(label, 0)) for label in labels))
    console.print(timeline)
    _print_figures(result.figures)
    checks = DataTable(title="properties", title_justify="left", box=box.SIMPLE_HEAD)
    checks.add_column("")
    checks.add_column("property")
    checks.add_column("figure")
    for check in result.checks:
        checks.add_row(
            plain("✓", "green") if check.holds else plain("✗", "red"), check.name, check.detail
        )
    console.print(checks)


def _print_figures(figures: Figures) -> None:
    table = DataTable(title="figures (as a drill reports them)", title_justify="left",
                      box=box.SIMPLE_HEAD)  # fmt: skip
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("share of requests failed", f"{figures.failed_share:.4%}")
    table.add_row("requests failed", f"{figures.requests_failed:,} of {figures.requests:,}")
    table.add_row("requests lost (never answered)", f"{figures.requests_lost:,}")
    table.add_row("nodes that served a bad bundle", f"{figures.nodes_served_bad:,}")
    table.add_row("time to detect", timing_text(figures.time_to_detect))
    table.add_row("time to roll back", timing_text(figures.time_to_roll_back))
    table.add_row("widest version skew", str(figures.widest_skew))
    console.print(table)


def _print_summary(results: list[tuple[ScenarioResult, float]]) -> None:
    table = DataTable(title="summary", title_justify="left")
    for column in ("scenario", "held", "rollouts", "wall"):
        table.add_column(column)
    for result, wall in results:
        table.add_row(
            result.scenario,
            plain("yes", "green") if result.held else plain("no", "red"),
            ", ".join(f"{r.label} {r.final_state}" for r in result.rollouts),
            f"{wall:.2f} s",
        )
    console.print(table)


def _outcome(state: str) -> Text:
    colour = {"completed": "green", "rolled_back": "yellow", "paused": "cyan"}.get(state, "red")
    return plain(state, colour)


def register(app: typer.Typer) -> None:
    app.command()(sim)
