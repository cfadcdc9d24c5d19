"""WriteBatch: writes of one loop iteration reach their sockets, in order, at its end."""

from __future__ import annotations

import asyncio

from failsmall.node.batching import WriteBatch


async def _pair() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Server]:
    """A connected socket pair: the accepting side's reader and the connecting side's writer
    (kept by the caller: a StreamWriter that is dropped closes its transport)."""
    accepted: asyncio.Future[asyncio.StreamReader] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(reader)
        await asyncio.sleep(3600)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    reader = await accepted
    return reader, writer, server


async def test_writes_wait_for_the_end_of_the_iteration_and_keep_their_order() -> None:
    batch = WriteBatch()
    reader_a, writer_a, server_a = await _pair()
    reader_b, writer_b, server_b = await _pair()
    transport_a, transport_b = writer_a.transport, writer_b.transport
    try:
        batch.write(transport_a, b"a1 ")
        batch.write(transport_a, b"a2 ")  # a run of writes to one transport, joined
        batch.write(transport_b, b"b1 ")
        batch.write(transport_a, b"a3")
        batch.write(transport_b, b"b2")
        # Nothing is handed to the kernel before this iteration ends.
        assert transport_a.get_write_buffer_size() == 0
        assert await asyncio.wait_for(reader_a.readexactly(8), 5) == b"a1 a2 a3"
        assert await asyncio.wait_for(reader_b.readexactly(5), 5) == b"b1 b2"
    finally:
        for transport, server in ((transport_a, server_a), (transport_b, server_b)):
            transport.close()
            server.close()


async def test_flush_sends_now_and_a_closed_transport_is_skipped() -> None:
    batch = WriteBatch()
    reader, writer, server = await _pair()
    _, closed_writer, closed_server = await _pair()
    transport, closed = writer.transport, closed_writer.transport
    try:
        batch.write(closed, b"never")
        closed.close()
        batch.write(transport, b"now")
        batch.flush()
        transport.close()  # closing right after flush still delivers the bytes
        assert await asyncio.wait_for(reader.read(), 5) == b"now"
        await asyncio.sleep(0)  # the scheduled flush finds nothing left and does not fail
    finally:
        server.close()
        closed_server.close()
