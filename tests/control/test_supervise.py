"""Background loops under supervision: a failure is logged within budget, retried with backoff
and visible as degraded health; and the control plane's own loops survive a store that is
locked by another process for a while."""

from __future__ import annotations

import asyncio
import logging
import sqlite3

import pytest
from control_harness import Fleet, envelope, site_bundle, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.backoff import Backoff
from failsmall.supervise import Failing, LogBudget, LoopState, SupervisedLoop
from failsmall.transport.stopping import cancel_and_wait


async def test_a_failing_step_degrades_the_loop_and_a_good_one_heals_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures_left = 30
    steps = 0

    async def step() -> None:
        nonlocal failures_left, steps
        steps += 1
        if failures_left:
            failures_left -= 1
            raise OSError(28, "No space left on device")

    log = logging.getLogger("test.supervise")
    loop = SupervisedLoop(
        "writer", step, log, backoff=Backoff(base_s=0.001, cap_s=0.004),
        budget=LogBudget(burst=3, per_minute=0.0),
    )  # fmt: skip
    assert loop.health.state is LoopState.HEALTHY
    with caplog.at_level(logging.ERROR, logger="test.supervise"):
        task = asyncio.create_task(loop.run())
        await wait_for(lambda: loop.total_failures >= 10)
        degraded = loop.health
        await wait_for(lambda: steps > 31)
        await cancel_and_wait(task)
    assert degraded.state is LoopState.DEGRADED
    assert isinstance(degraded, Failing)
    assert "No space left on device" in degraded.error
    assert loop.health.state is LoopState.HEALTHY
    assert loop.total_failures == 30
    logged = [r for r in caplog.records if "writer failed" in r.getMessage()]
    assert len(logged) == 3, "the log budget allows 3 lines and no refill"


async def test_a_cancelled_loop_ends() -> None:
    async def step() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(SupervisedLoop("sleeper", step, logging.getLogger()).run())
    await asyncio.sleep(0.01)
    await cancel_and_wait(task)
    assert task.cancelled()


def _control_loops(status: dict[str, object]) -> dict[str, dict[str, object]]:
    control = status["control"]
    assert isinstance(control, dict)
    return {str(loop["name"]): loop for loop in control["loops"]}


async def test_the_rollout_ticker_survives_a_locked_store_and_shows_it(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    await fleet.add_nodes(2)
    good, raw = envelope(site_bundle(), key)
    pushed = await fleet.push(raw, policy="global")
    assert pushed.status_code == 202, pushed.text
    assert (await fleet.status())["control"]["state"] == "healthy"
    # Another process takes the write lock while the rollout bakes; the plane's writes give up
    # after 50 ms instead of SQLite's default 5 s, so that the test is quick.
    fleet.plane.store.db.execute("PRAGMA busy_timeout = 50")
    other = sqlite3.connect(fleet.plane.store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        await wait_for(
            lambda: fleet.plane.driver.health().state is LoopState.DEGRADED, timeout_s=60
        )
        status = await fleet.status()
        assert status["control"]["state"] == "degraded"
        ticker = _control_loops(status)["rollout ticker"]
        assert "database is locked" in str(ticker["last_error"])
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await fleet.wait_rollout_done(pushed.json()["rollout_id"], timeout_s=60) == "completed"
    await wait_for(lambda: fleet.plane.driver.health().state is LoopState.HEALTHY)
    assert (await fleet.status())["control"]["state"] == "healthy"
    await wait_for(lambda: all(n.current == good for n in fleet.nodes))
