"""`failsmall drill SCENARIO`: replay an outage against a local fleet, under load, and report.

Starts a control plane, nodes and an origin on free loopback ports, drives open-loop load,
checks the steady state continuously, injects the scenario's faults, always rolls them back
(Ctrl-C included), and reports in the terminal, as JSON or as one HTML page. With
`--profile hotwired` the same scenario also runs on a fleet with the defences switched off,
and the report shows both runs side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape

from failsmall.cli.control_client import ControlClient
from failsmall.cli.output import Exit, console, err_console, print_json
from failsmall.drill import scenario as scenarios
from failsmall.drill.fleet import FleetError
from failsmall.drill.page import render
from failsmall.drill.profiles import Profile, RunningFleet, factory
from failsmall.drill.record import Event
from failsmall.drill.report import Figures, figures
from failsmall.drill.runner import Drill, run_drill
from failsmall.drill.scenario import Scenario, ScenarioError
from failsmall.drill.terminal import print_report

EVENT_STYLE = {
    "fault": "magenta",
    "rollback": "red",
    "nack": "red",
    "quarantine": "red",
    "gate": "blue",
    "hypothesis": "yellow",
    "restore": "cyan",
    "refused": "dim",
}


async def _follow(drill_box: list[Drill], quiet: bool, stop: asyncio.Event) -> None:
    """Print the drill's events as they happen (stderr), so a person sees it unfold."""
    shown = 0
    while not stop.is_set():
        if drill_box and not quiet:
            events: list[Event] = sorted(drill_box[-1].recorder.events[shown:], key=lambda e: e.t)
            shown += len(events)
            for e in events:
                style = EVENT_STYLE.get(e.kind, "white")
                err_console.print(
                    f"[dim]{e.t:6.1f}s[/] [{style}]{e.kind:<10}[/] {escape(e.text[:160])}"
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def run(
    scenario: Scenario,
    profiles: list[Profile],
    keep: Path | None,
    quiet: bool,
    running: RunningFleet | None = None,
) -> list[Figures]:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    signals = 0

    def interrupt() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            err_console.print("[yellow]interrupted: rolling back the faults, then reporting[/]")
        else:
            err_console.print("[red]interrupted again: stopping the fleet[/]")
        if main is not None:
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupt)
    results: list[Figures] = []
    try:
        for profile in profiles:
            if not quiet:
                where = "the running fleet" if running else f"a fleet of {scenario.nodes}"
                err_console.print(f"[bold]{profile.value}[/]: {where}")
            box: list[Drill] = []
            stop = asyncio.Event()
            follower = asyncio.create_task(_follow(box, quiet, stop))
            try:
                outcome = await run_drill(scenario, factory(profile, keep, running), box.append)
            finally:
                stop.set()
                await follower
            results.append(figures(outcome))
            if outcome.interrupted.startswith("interrupted"):
                break
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return results


def drill(
    scenario: Annotated[
        str,
        typer.Argument(help="A built-in scenario name (see --list) or a scenario YAML file."),
    ] = "",
    profile: Annotated[
        Profile,
        typer.Option(
            "--profile",
            help="default: the shipped fleet. hotwired: also run it on a fleet with the "
            "defences switched off and report both side by side.",
        ),
    ] = Profile.DEFAULT,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the report as one HTML page.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", min=1, max=5000, help="Requests/s (all nodes).")
    ] = None,
    nodes: Annotated[int | None, typer.Option("--nodes", min=1, max=10)] = None,
    keep_state: Annotated[
        Path | None,
        typer.Option("--keep-state", help="Keep the fleets' stores and logs in this directory."),
    ] = None,
    listing: Annotated[bool, typer.Option("--list", help="List the built-in scenarios.")] = False,
    show: Annotated[
        bool, typer.Option("--show", help="Print the scenario's YAML (to copy and edit).")
    ] = False,
    control: Annotated[
        str | None,
        typer.Option(
            "--control",
            help="Drill a running fleet through this control plane URL instead of starting one "
            "(admin token from --token, FAILSMALL_TOKEN or `failsmall up`'s file).",
        ),
    ] = None,
    token: Annotated[str | None, typer.Option("--token", help="Admin token.")] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="With --control: a signing key the control plane trusts."),
    ] = None,
) -> None:
    """Replay an outage against a local fleet under load; report what users would have seen."""
    if listing:
        names = scenarios.library()
        if as_json:
            print_json(names)
        else:
            for name in names:
                console.print(f"{name:<14} {escape(scenarios.load(name).title)}")
        raise typer.Exit(int(Exit.OK))
    try:
        loaded = scenarios.load(scenario) if scenario else None
        if loaded is None:
            raise ScenarioError("name a scenario (see `failsmall drill --list`)")
        if show:
            sys.stdout.write(scenarios.text(scenario))
            raise typer.Exit(int(Exit.OK))
        changes: dict[str, object] = {}
        if rate is not None:
            changes["load"] = loaded.load.model_copy(update={"rate": rate})
        if nodes is not None:
            changes["nodes"] = nodes
        loaded = loaded.model_copy(update=changes)
    except ScenarioError as exc:
        _fail(str(exc), as_json, Exit.BAD_INPUT)
    profiles: list[Profile] = (
        [Profile.DEFAULT, Profile.HOTWIRED] if profile is Profile.HOTWIRED else [profile]
    )
    running: RunningFleet | None = None
    if control is not None:
        if key is None:
            _fail(
                "--control needs --key: the signing key faults are pushed with",
                as_json,
                Exit.BAD_INPUT,
            )
        client = ControlClient.resolve(control, token)
        running = RunningFleet(client.url, client.token, key)
    try:
        results = asyncio.run(run(loaded, profiles, keep_state, quiet=as_json, running=running))
    except FleetError as exc:
        _fail(f"the drill's fleet failed: {exc}", as_json, Exit.FAILED)
    if html is not None:
        html.write_text(render(results))
    if as_json:
        print_json([f.to_dict() for f in results])
    else:
        print_report(console, results)
        if html is not None:
            console.print(f"report written to {html}")
    held = all(f.steady_after and f.steady_before for f in results[:1])
    raise typer.Exit(int(Exit.OK if held and not results[0].interrupted else Exit.FAILED))


def _fail(message: str, as_json: bool, code: Exit) -> NoReturn:
    if as_json:
        print_json({"error": message})
    else:
        err_console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(int(code))


def register(app: typer.Typer) -> None:
    app.command()(drill)
