"""Writes collected during one event-loop iteration and handed to the kernel at its end.

Every write to a loopback or LAN socket wakes its reader. When the proxy answers thirty
connections in one iteration and writes each answer at once, the kernel wakes the peer process
thirty times, and on a virtual machine each wake-up of an idle CPU is an expensive interrupt.
Sending the iteration's writes together at its end lets the peer wake once and find them all;
no write waits longer than the rest of the current iteration.
"""

from __future__ import annotations

import asyncio


class WriteBatch:
    """Per-process queue of writes flushed once per event-loop iteration.

    Order is kept per transport because every write of the proxy goes through the batch, and
    consecutive writes to one transport (a response head and its body) leave as one buffer. A
    transport is flushed before it is closed or half-closed (`flush`).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[asyncio.WriteTransport, list[bytes]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        pending = self._pending
        if not pending:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)
        elif pending[-1][0] is transport:
            pending[-1][1].append(data)
            return
        pending.append((transport, [data]))

    def flush(self) -> None:
        """Hand every queued write to its transport now."""
        pending, self._pending = self._pending, []
        for transport, parts in pending:
            if not transport.is_closing():
                transport.write(parts[0] if len(parts) == 1 else b"".join(parts))
