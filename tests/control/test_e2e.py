"""End to end: a real control plane and real edge node processes on loopback. A bad bundle is
stopped at the canary and rolled back automatically; the other nodes never receive it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
from control_harness import wait_for
from e2e_harness import (
    RealFleet,
    blocking_everyone,
    real_fleet,
    with_changes,
)

from failsmall.model import Capacities, Feature, FeatureFile, FeatureKind

pytestmark: list[pytest.MarkDecorator] = []


async def _stopped_at_the_canary(
    fleet: RealFleet, good: str, bad: str, rollout_id: str, started: float
) -> float:
    state = await fleet.wait_done(rollout_id)
    assert state == "rolled_back", f"rollout ended {state}:\n{await fleet.audit_trail()}"
    await wait_for(lambda: set(fleet.reported_digests().values()) == {good}, timeout_s=30)
    elapsed = time.monotonic() - started
    received = [n.node_id for n in fleet.nodes if bad in n.served()]
    assert len(received) <= 1, f"only the canary may serve the bad bundle, not {received}"
    assert (await fleet.admin.get("/v1/status")).json()["last_good"] == good
    return elapsed


async def test_a_bundle_that_blocks_everyone_is_rolled_back(tmp_path: Path) -> None:
    async with real_fleet(tmp_path) as fleet:
        good = await fleet.seed()
        started = time.monotonic()
        bad, rollout_id = await fleet.push(blocking_everyone(fleet.bundle()))
        elapsed = await _stopped_at_the_canary(fleet, good, bad, rollout_id, started)
        print(f"bad canary -> every node back on the last good bundle: {elapsed:.1f} s")
        received = [n.node_id for n in fleet.nodes if bad in n.served()]
        assert len(received) == 1, f"served by {received}:\n{await fleet.audit_trail()}"
        audit = (await fleet.admin.get("/v1/audit", params={"limit": 200})).json()
        assert any(e["actor"] == "gate" and e["action"] == "rollback" for e in audit)


async def test_a_fault_bundle_with_half_aborts_is_rolled_back(tmp_path: Path) -> None:
    async with real_fleet(tmp_path) as fleet:
        good = await fleet.seed()
        faulty = with_changes(
            fleet.bundle(), name="half-aborts", fault={"abort_percent": 50, "abort_status": 503}
        )
        started = time.monotonic()
        bad, rollout_id = await fleet.push(faulty)
        elapsed = await _stopped_at_the_canary(fleet, good, bad, rollout_id, started)
        print(f"50% aborts canary -> every node back on the last good bundle: {elapsed:.1f} s")


async def test_a_bundle_over_node_capacity_is_nacked_and_rolled_back(tmp_path: Path) -> None:
    async with real_fleet(tmp_path) as fleet:
        good = await fleet.seed()
        features = [
            Feature(name=f"f{i}", kind=FeatureKind.HEADER_PRESENT, param=f"x-h{i}", weight=0.1)
            for i in range(250)
        ]
        base = fleet.bundle()
        bot = base.bot.model_dump(mode="json")
        bot["feature_file"] = FeatureFile(features=features).model_dump(mode="json")
        too_big = with_changes(
            base,
            name="doubled-features",
            bot=bot,
            requires=Capacities(bot_feature_slots=400).model_dump(mode="json"),
        )
        started = time.monotonic()
        bad, rollout_id = await fleet.push(too_big)
        elapsed = await _stopped_at_the_canary(fleet, good, bad, rollout_id, started)
        print(f"NACKed canary -> every node back on the last good bundle: {elapsed:.1f} s")
        assert not any(bad in n.served() for n in fleet.nodes), "a NACKed bundle is never served"


async def test_a_canary_that_crashes_on_a_bundle_quarantines_it_and_rolls_back(
    tmp_path: Path,
) -> None:
    async with real_fleet(tmp_path) as fleet:
        good = await fleet.seed()
        started = time.monotonic()
        bad, rollout_id = await fleet.push(
            with_changes(fleet.bundle(), name="crashes-the-canary", description="drill")
        )
        await wait_for(lambda: any(bad in n.served() for n in fleet.nodes), timeout_s=60)
        canary = next(n for n in fleet.nodes if bad in n.served())
        # The worker aborts right after swapping to the bundle, as a panic in it would (a
        # SIGKILL from outside leaves no fault record and is not blamed on the bundle).
        async with httpx.AsyncClient() as client:
            described = (await client.get(f"http://127.0.0.1:{canary.admin_port}/config")).json()
        os.kill(int(described["pid"]), signal.SIGABRT)
        elapsed = await _stopped_at_the_canary(fleet, good, bad, rollout_id, started)
        print(f"crashing canary -> every node back on the last good bundle: {elapsed:.1f} s")
        async with httpx.AsyncClient() as client:
            described = (await client.get(f"http://127.0.0.1:{canary.admin_port}/config")).json()
        assert bad in described["poisoned"]
        assert described["serving"] == good
