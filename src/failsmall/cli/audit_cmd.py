"""`failsmall audit [verify]`: read the audit log, or check its hash chain."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from failsmall.cli.control_client import ControlClient, ControlOption, JsonOption, TokenOption
from failsmall.cli.output import DataTable, Exit, console, print_json

audit_app = typer.Typer(help="The append-only audit log.", invoke_without_command=True)


@audit_app.callback()
def entries(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show the latest audit entries: who did what, when and why."""
    if ctx.invoked_subcommand is not None:
        return
    rows = ControlClient.resolve(control, token).get("/v1/audit", limit=limit)
    if json_out:
        print_json(rows)
        return
    table = DataTable("#", "at (UTC)", "actor", "action", "reason", title="audit log")
    for row in rows:
        at = datetime.fromtimestamp(row["at"], UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(str(row["seq"]), at, row["actor"], row["action"], row["reason"])
    console.print(table)


@audit_app.command()
def verify(
    control: ControlOption = None, token: TokenOption = None, json_out: JsonOption = False
) -> None:
    """Check the hash chain against the signed checkpoints; exits 1 if any entry was edited,
    inserted or removed, or if the checkpoints are missing."""
    result = ControlClient.resolve(control, token).get("/v1/audit/verify")
    if json_out:
        print_json(result)
    elif result["intact"]:
        unanchored = result.get("unanchored", 0)
        note = f", {unanchored} after the latest signed checkpoint" if unanchored else ""
        console.print(f"[green]audit log intact[/]: {result['entries']} entries{note}")
    elif result["broken_at"] is None:
        console.print(f"[bold red]audit log cannot be verified[/]: {result['problem']}")
    else:
        console.print(
            f"[bold red]audit log tampered[/] at entry {result['broken_at']}: {result['problem']}"
        )
    if not result["intact"]:
        raise typer.Exit(int(Exit.FAILED))


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
