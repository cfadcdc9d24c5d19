"""`failsmall push BUNDLE [--wait]`: send a signed bundle to the control plane and roll it out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from failsmall.cli.control_client import (
    ControlClient,
    ControlOption,
    JsonOption,
    TokenOption,
    short,
)
from failsmall.cli.output import Exit, console, fail, plain, print_json

TERMINAL = ("completed", "rolled_back", "aborted")


def wait_for_rollout(
    client: ControlClient, rollout_id: str, timeout_s: float, quiet: bool
) -> dict[str, Any]:
    """Poll the rollout until it ends, with a progress bar of nodes on the new bundle."""
    deadline = time.monotonic() + timeout_s
    progress = Progress(
        TextColumn("[bold]{task.fields[state]:<12}[/] {task.fields[wave]:<8}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} nodes"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("rollout", total=1, state="pending", wave="")
        while True:
            row = client.get(f"/v1/rollouts/{rollout_id}")
            status = client.get("/v1/status")
            rollout = status.get("rollout") or {}
            live = sum(1 for n in status["nodes"] if n["live"]) or 1
            on_new = sum(1 for n in status["nodes"] if n["digest"] == row["to_digest"])
            progress.update(
                task,
                total=live,
                completed=min(on_new, live),
                state=row["state"],
                wave=rollout.get("wave", ""),
            )
            if row["state"] in TERMINAL:
                return dict(row)
            if time.monotonic() > deadline:
                fail(
                    f"rollout {rollout_id} still {row['state']} after {timeout_s:g} s",
                    "watch it with `failsmall status --watch`",
                    Exit.FAILED,
                )
            time.sleep(0.5)


def push(
    bundle: Annotated[Path, typer.Argument(help="A signed bundle file (from `failsmall build`).")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the rollout to end.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to --wait.")] = 600.0,
    policy: Annotated[
        str, typer.Option("--policy", help="Ask for a named policy ('global' needs admin).")
    ] = "",
    change_class: Annotated[
        str, typer.Option("--class", help="Declared change class (may not be less strict).")
    ] = "",
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Push a bundle: the control plane verifies it, classifies the change and rolls it out."""
    try:
        raw = bundle.read_bytes()
    except OSError as exc:
        fail(f"cannot read {bundle}: {exc}")
    client = ControlClient.resolve(control, token)
    params = {k: v for k, v in {"policy": policy, "class": change_class}.items() if v}
    result = client.post("/v1/bundles", raw, **params)
    if not json_out:
        console.print(
            f"pushed [bold]{short(result['digest'])}[/] as a [bold]{result['change_class']}[/] "
            f"change; rollout {result['rollout_id']} with policy {result['policy']}"
        )
        for line in result["differences"][:10]:
            console.print(plain(f"  {line}", "dim"))
    if not wait:
        if json_out:
            print_json(result)
        return
    final = wait_for_rollout(client, result["rollout_id"], timeout, quiet=json_out)
    if json_out:
        print_json(result | {"final_state": final["state"]})
    else:
        colour = "green" if final["state"] == "completed" else "red"
        console.print(f"rollout {final['id']}: [bold {colour}]{final['state']}[/]")
    if final["state"] != "completed":
        raise typer.Exit(int(Exit.FAILED))


def register(app: typer.Typer) -> None:
    app.command()(push)
