"""A node's quarantine reaches the control plane as part of its health, and `failsmall status`
says it, with why a node is not on the bundle it was assigned."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from failsmall.cli.status_cmd import render
from failsmall.cli.up_cmd import failsmall_argv
from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.node.guard import CrashGuard
from failsmall.node.lkg import LastKnownGood
from failsmall.node.server import EdgeNode
from failsmall.transport.http import HttpNodeChannel
from tests.node.conftest import Keys, OriginServer, WatchDir, make_bundle, node_config


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    settings = ControlSettings(
        db=tmp_path / "control.db",
        key=Ed25519PrivateKey.generate(),
        port=0,
        tick_s=0.2,
        dead_after_s=5.0,
        admin_token_file=tmp_path / "admin.token",
    )
    running = await ControlPlane.open(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *failsmall_argv(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "250", **env},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_status_shows_a_node_quarantine_reported_through_the_control_plane(
    tmp_path: Path, plane: ControlPlane, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    admin_token = (tmp_path / "admin.token").read_text().strip()
    async with httpx.AsyncClient(
        base_url=plane.url, headers={"Authorization": f"Bearer {admin_token}"}
    ) as admin:
        made = await admin.post("/v1/tokens", json={"principal": "edge-*", "role": "node"})
        node_token = made.json()["token"]
    good = keys.sign(make_bundle(origin.url, name="good"))
    bad = keys.sign(make_bundle(origin.url, name="bad"))
    state = tmp_path / "node-state"
    lkg = LastKnownGood(state)
    lkg.save(good.digest, good.to_bytes())
    lkg.save(bad.digest, bad.to_bytes())
    # What a worker that died of a segfault 2 s after applying `bad` leaves behind (a real
    # process does this in test_crash.py).
    CrashGuard(state).begin(bad.digest, time.time() - 2)
    (state / "fault.log").write_text("Fatal Python error: Segmentation fault\n")
    # The node reports over the real HTTP transport, as `--control URL` makes it.
    config = node_config(tmp_path, keys, watch, node_id="edge-q", state_dir=state, watch_dir=None)
    node = EdgeNode(config, channel=HttpNodeChannel(plane.url, node_token))
    await node.start()
    try:
        assert node.slot.digest == good.digest
        await check_status(plane, admin_token, good.digest, bad.digest)
    finally:
        await node.stop()


async def check_status(plane: ControlPlane, admin_token: str, good: str, bad: str) -> None:
    env = {"FAILSMALL_CONTROL": plane.url, "FAILSMALL_TOKEN": admin_token}

    def seen(status: dict[str, Any]) -> bool:
        return any(n["health"].get("quarantined") for n in status["nodes"])

    async def status_json() -> dict[str, Any]:
        code, out, err = await cli("status", "--json", env=env)
        assert code == 0, err
        data: dict[str, Any] = json.loads(out)
        return data

    deadline = time.monotonic() + 20
    status = await status_json()
    while not seen(status) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        status = await status_json()
    (row,) = status["nodes"]
    assert row["node_id"] == "edge-q" and row["digest"] == good
    (quarantine,) = row["health"]["quarantined"]
    assert quarantine["digest"] == bad
    assert "Segmentation fault" in quarantine["cause"]
    code, out, _ = await cli("status", env=env)
    assert code == 0
    assert f"quarantined {bad.removeprefix('sha256:')[:12]}" in out
    assert "Segmentation fault" in out


def node_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "node_id": "edge-1",
        "live": True,
        "digest": "sha256:" + "a" * 64,
        "assigned": "sha256:" + "a" * 64,
        "last_apply": None,
        "health": {
            "requests": 10,
            "responses_5xx": 0,
            "blocked": 0,
            "challenged": 0,
            "module_errors": 0,
            "p99_ms": 1.0,
            "window_s": 1.0,
            "quarantined": [],
            "degraded": [],
        },
    }
    row.update(changes)
    return row


def table_text(*rows: dict[str, Any]) -> str:
    console = Console(record=True, width=250)
    status = {"last_good": "", "last_good_name": "", "nodes": list(rows), "rollout": None}
    console.print(render(status | {"recent_rollouts": []}))
    return console.export_text()


def test_status_says_why_a_node_is_not_on_its_assigned_bundle() -> None:
    assigned = "sha256:" + "b" * 64
    quarantined = node_row(assigned=assigned)
    quarantined["health"]["quarantined"] = [
        {"digest": assigned, "cause": "the node died 0.4s after applying it: SIGSEGV", "at": 1.0}
    ]
    refused = node_row(
        node_id="edge-2",
        assigned=assigned,
        last_apply={"digest": assigned, "result": "nack", "error": "over capacity"},
    )
    applying = node_row(node_id="edge-3", assigned=assigned)
    degraded = node_row(node_id="edge-4")
    degraded["health"]["degraded"] = ["follow_assignments: 3 failure(s), last: disk \x1b[2J full"]
    healthy = node_row(node_id="edge-5")
    text = table_text(quarantined, refused, applying, degraded, healthy)
    rows = [line.strip("│ ") for line in text.splitlines()]
    lines = {row.split()[0]: row for row in rows if row.startswith("edge")}
    assert "quarantined bbbbbbbbbbbb: the node died 0.4s after applying it" in lines["edge-1"]
    assert "refused bbbbbbbbbbbb: over capacity" in lines["edge-2"]
    assert "applying bbbbbbbbbbbb" in lines["edge-3"]
    assert "degraded: follow_assignments" in lines["edge-4"]
    assert "\x1b" not in text
    assert lines["edge-5"].rstrip().endswith("ok")
