"""cancel_and_wait ends tasks whose first cancellation was lost, and never waits forever."""

from __future__ import annotations

import asyncio
import time

import pytest

from failsmall.transport.stopping import cancel_and_wait


async def _loses_cancellations(budget: list[int], turns: list[int]) -> None:
    """A follow loop that loses the next `budget[0]` cancellations, as asyncio.wait_for on
    Python 3.11 can lose one that races with the awaited future completing."""
    while True:
        turns.append(1)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if budget[0] <= 0:
                raise
            budget[0] -= 1


async def test_a_task_that_lost_its_cancellation_still_ends() -> None:
    turns: list[int] = []
    task = asyncio.create_task(_loses_cancellations([2], turns))
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled()
    assert len(turns) == 3


async def test_a_task_that_never_ends_is_left_after_the_grace_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = [10**6]
    task = asyncio.create_task(_loses_cancellations(budget, []))
    await asyncio.sleep(0)
    started = time.monotonic()
    await cancel_and_wait(task, grace_s=0.3)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert not task.done()
    assert "ignored cancellation" in caplog.text
    budget[0] = 0
    await cancel_and_wait(task)
    assert task.cancelled()


async def test_finished_and_failed_tasks_are_consumed() -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fail())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)
    assert failed.done() and isinstance(failed.exception(), RuntimeError)
