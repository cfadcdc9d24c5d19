"""Stopping background tasks for sure.

`task.cancel()` once is not always enough on Python 3.11: `asyncio.wait_for` there can swallow
a cancellation that arrives just as the awaited future completes (fixed in 3.12), and client
libraries (nats-py among them) wait on their queues with it. A follow loop whose cancellation was
swallowed takes the next turn and waits again, and whoever awaits the task waits forever.
`cancel_and_wait` cancels again until the tasks end, within a bounded grace period.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("failsmall.transport")


async def cancel_and_wait(*tasks: asyncio.Future[Any], grace_s: float = 5.0) -> None:
    """Cancel `tasks` and wait for them to end, cancelling again every 100 ms; after `grace_s`
    give up on the stragglers (logged) instead of waiting forever. Their results and
    exceptions are consumed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
        if pending and loop.time() >= deadline:
            log.warning(
                "%d task(s) ignored cancellation for %.0f s; leaving them", len(pending), grace_s
            )
            break
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not report it as never retrieved
