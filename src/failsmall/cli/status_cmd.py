"""`failsmall status [--watch]`: the fleet, its bundles, health and the current rollout."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live

from failsmall.cli.control_client import (
    ControlClient,
    ControlOption,
    JsonOption,
    TokenOption,
    short,
)
from failsmall.cli.output import DataTable, console, plain, print_json


def render(status: dict[str, Any]) -> Group:
    """Tables for the nodes and the current rollout."""
    good = status["last_good"]
    nodes = DataTable(title=f"fleet: last good {short(good)} {status['last_good_name']}")
    for column in ("node", "live", "serving", "assigned", "req/s", "5xx", "blocked", "p99 ms"):
        nodes.add_column(column, justify="right" if column[0] in "r5bp" else "left")
    for node in status["nodes"]:
        health = node["health"]
        window = health.get("window_s") or 1.0
        serving = short(node["digest"])
        style = "green" if node["digest"] == good else "yellow"
        nodes.add_row(
            node["node_id"],
            "yes" if node["live"] else plain("no", "red"),
            plain(serving, style),
            short(node["assigned"]),
            f"{health['requests'] / window:.0f}",
            str(health["responses_5xx"]),
            str(health["blocked"]),
            f"{health['p99_ms']:.1f}",
        )
    parts: list[Any] = [nodes]
    rollout = status.get("rollout")
    if rollout:
        waves = DataTable(
            title=f"rollout {rollout['rollout_id']}: {rollout['state']} "
            f"(policy {rollout['policy']}, {short(rollout['from_digest'])} -> "
            f"{short(rollout['to_digest'])}, exposed {rollout['exposed']}/"
            f"{rollout['exposure_limit']})"
        )
        for column in ("wave", "bake s", "size", "on new bundle"):
            waves.add_column(column)
        for wave in rollout["waves"]:
            marker = "▶ " if wave["name"] == rollout["wave"] else "  "
            waves.add_row(
                marker + wave["name"],
                f"{wave['bake_s']:g}",
                str(wave["size"]),
                ", ".join(wave["on_new"]) or "-",
            )
        parts.append(waves)
    recent = DataTable(title="recent rollouts")
    for column in ("id", "state", "class", "policy", "bundle", "by", "at"):
        recent.add_column(column)
    for row in status["recent_rollouts"]:
        at = datetime.fromtimestamp(row["created_at"], UTC).strftime("%H:%M:%S")
        recent.add_row(
            row["id"],
            row["state"],
            row["change_class"],
            row["policy"],
            short(row["to_digest"]),
            row["created_by"],
            at,
        )
    parts.append(recent)
    return Group(*parts)


def status(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh every second.")] = False,
    control: ControlOption = None,
    token: TokenOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show the fleet: nodes, versions, health, and the current rollout with its waves."""
    client = ControlClient.resolve(control, token)
    if json_out and not watch:
        print_json(client.get("/v1/status"))
        return
    if not watch:
        console.print(render(client.get("/v1/status")))
        return
    with Live(render(client.get("/v1/status")), console=console, refresh_per_second=2) as live:
        try:
            while True:
                time.sleep(1.0)
                data = client.get("/v1/status")
                if json_out:
                    print_json(data)
                else:
                    live.update(render(data))
        except KeyboardInterrupt:
            return


def register(app: typer.Typer) -> None:
    app.command()(status)
