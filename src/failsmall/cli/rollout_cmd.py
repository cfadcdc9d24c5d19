"""`failsmall rollout pause|resume|abort|rollback`: steer the running rollout by hand."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from failsmall.cli.control_client import (
    ControlClient,
    ControlOption,
    JsonOption,
    TokenOption,
    short,
)
from failsmall.cli.output import console, print_json

rollout_app = typer.Typer(help="Pause, resume, abort or roll back the running rollout.")
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (goes to the audit log).")]


def _show(summary: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(summary)
        return
    console.print(
        f"rollout {summary['rollout_id']}: [bold]{summary['state']}[/] "
        f"({short(summary['from_digest'])} -> {short(summary['to_digest'])}, "
        f"{summary['exposed']} node(s) on the new bundle)"
    )


def _act(
    verb: str, body: dict[str, Any] | None, control: str | None, token: str | None, json_out: bool
) -> None:
    client = ControlClient.resolve(control, token)
    _show(client.post(f"/v1/rollout/{verb}", body), json_out)


@rollout_app.command()
def pause(
    reason: ReasonOption,
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Hold the rollout at its current wave."""
    _act("pause", {"reason": reason}, control, token, json_out)


@rollout_app.command()
def resume(
    control: ControlOption = None, token: TokenOption = None, json_out: JsonOption = False
) -> None:
    """Continue a paused rollout (the current wave bakes again)."""
    _act("resume", None, control, token, json_out)


@rollout_app.command()
def abort(
    reason: ReasonOption,
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Cancel the rollout: the new bundle is withdrawn from every node that had it."""
    _act("abort", {"reason": reason}, control, token, json_out)


@rollout_app.command()
def rollback(
    reason: ReasonOption,
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Send every node that left the last good bundle back to it: one stored step, which a
    reconciler pushes to every node."""
    _act("rollback", {"reason": reason}, control, token, json_out)


def register(app: typer.Typer) -> None:
    app.add_typer(rollout_app, name="rollout")
