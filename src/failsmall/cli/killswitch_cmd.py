"""`failsmall killswitch set|clear|list`: rule state overrides, rolled out as bundles."""

from __future__ import annotations

import re
from typing import Annotated

import typer

from failsmall.cli.control_client import (
    ControlClient,
    ControlOption,
    JsonOption,
    TokenOption,
    short,
)
from failsmall.cli.output import DataTable, console, fail, print_json

killswitch_app = typer.Typer(help="Switch a rule off (or to log-only) through a staged rollout.")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """`90s`, `15m`, `2h`, `1d` or plain seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if match is None:
        fail(f"--ttl {text!r} is not a duration", "use e.g. 90s, 15m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@killswitch_app.command("set")
def set_(
    rule: Annotated[str, typer.Argument(help="Rule id.")],
    state: Annotated[str, typer.Option("--state", help="disabled or log_only.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audited).")],
    ttl: Annotated[str, typer.Option("--ttl", help="Lapse after e.g. 2h.")] = "",
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Set a killswitch: a new bundle with the override, verified, rolled out expedited."""
    if state not in ("disabled", "log_only"):
        fail(f"--state must be disabled or log_only, not {state!r}")
    body: dict[str, object] = {"rule": rule, "state": state, "reason": reason}
    if ttl:
        body["ttl_s"] = parse_ttl(ttl)
    result = ControlClient.resolve(control, token).post("/v1/killswitches", body)
    if json_out:
        print_json(result)
        return
    console.print(
        f"killswitch {rule}={state}: bundle {short(result['digest'])}, rollout "
        f"{result['rollout_id']} ({result['policy']}, canary first). "
        "Watch it with `failsmall status --watch`."
    )


@killswitch_app.command()
def clear(
    rule: Annotated[str, typer.Argument(help="Rule id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (required, audited).")],
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Lift a killswitch (a new bundle without the override, rolled out expedited)."""
    result = ControlClient.resolve(control, token).post(
        f"/v1/killswitches/{rule}/clear", {"reason": reason}
    )
    if json_out:
        print_json(result)
        return
    console.print(f"killswitch on {rule} lifted: rollout {result['rollout_id']}")


@killswitch_app.command("list")
def list_(
    control: ControlOption = None, token: TokenOption = None, json_out: JsonOption = False
) -> None:
    """Overrides in the fleet's current bundle."""
    overrides = ControlClient.resolve(control, token).get("/v1/killswitches")
    if json_out:
        print_json(overrides)
        return
    table = DataTable(
        "rule", "state", "author", "reason", "expires", "expired",
        title="killswitches in the current bundle",
    )  # fmt: skip
    for o in overrides:
        table.add_row(
            o["rule"],
            o["state"],
            o["author"],
            o["reason"],
            o["expires_at"] or "-",
            "yes" if o["expired"] else "no",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(killswitch_app, name="killswitch")
