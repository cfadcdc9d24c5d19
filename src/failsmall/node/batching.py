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
        # Each write queued: its transport and its data, in two lists (a write appends to
        # each, allocating nothing of its own).
        self._transports: list[asyncio.WriteTransport] = []
        self._data: list[bytes] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def write(self, transport: asyncio.WriteTransport, data: bytes) -> None:
        transports = self._transports
        if not transports:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)
        transports.append(transport)
        self._data.append(data)

    def flush(self) -> None:
        """Hand every queued write to its transport now, consecutive writes to one transport
        joined into one."""
        transports, data = self._transports, self._data
        self._transports, self._data = [], []
        count = len(transports)
        i = 0
        while i < count:
            transport = transports[i]
            end = i + 1
            while end < count and transports[end] is transport:
                end += 1
            if not transport.is_closing():
                transport.write(data[i] if end == i + 1 else b"".join(data[i:end]))
            i = end
