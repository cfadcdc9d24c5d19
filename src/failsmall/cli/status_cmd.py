"""`failsmall status [--watch]`: the fleet, its bundles, health and the current rollout."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.text import Text

from failsmall.cli.control_client import (
    ControlClient,
    ControlOption,
    JsonOption,
    TokenOption,
    short,
)
from failsmall.cli.output import DataTable, console, plain, print_json
from failsmall.model.text import printable


def node_state(node: dict[str, Any]) -> Text:
    """What a node's row needs said: why it is not on its assigned bundle (quarantined,
    refused, still applying), what it quarantined, and what is failing on it; else "ok"."""
    health = node["health"]
    assigned, serving = node["assigned"], node["digest"]
    quarantined = {q["digest"]: q.get("cause", "") for q in health.get("quarantined", [])}
    notes: list[tuple[str, str]] = []
    if not node["live"]:
        notes.append(("not reporting", "red"))
    if assigned and serving != assigned:
        last = node.get("last_apply") or {}
        if assigned in quarantined:
            notes.append((f"quarantined {short(assigned)}: {quarantined[assigned]}", "red"))
        elif last.get("digest") == assigned and last.get("result") == "nack":
            notes.append((f"refused {short(assigned)}: {last.get('error', '')}", "red"))
        elif node["live"]:
            notes.append((f"applying {short(assigned)}", "yellow"))
    for digest, cause in quarantined.items():
        if digest != assigned:
            notes.append((f"quarantined {short(digest)}: {cause}", "yellow"))
    for line in health.get("degraded", []):
        notes.append((f"degraded: {line}", "yellow"))
    if not notes:
        return Text("ok", style="green")
    text = Text()
    for index, (note, style) in enumerate(notes):
        if index:
            text.append("\n")
        text.append(printable(note), style=style)
    return text


def render(status: dict[str, Any]) -> Group:
    """Tables for the nodes (with why one is not on its assigned bundle) and the current
    rollout."""
    good = status["last_good"]
    nodes = DataTable(title=f"fleet: last good {short(good)} {status['last_good_name']}")
    columns = ("node", "live", "serving", "assigned", "req/s", "5xx", "blocked", "p99 ms", "state")
    for column in columns:
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
            node_state(node),
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
