"""Shared by both profiles' launchers: the origin process, waiting for ports, the seed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from failsmall.cli.up_cmd import demo_bundle, example_dir
from failsmall.drill.changes import with_feature_file
from failsmall.drill.features import generated
from failsmall.drill.fleet import FleetError, NodeProcess, Serving, node_view, python_argv
from failsmall.model import Bundle
from failsmall.transport.natsd import free_port


def origin_process(state_dir: Path) -> NodeProcess:
    """The origin, as a process of its own (so its work is not the drill's)."""
    port = free_port()
    return NodeProcess(
        "origin",
        port,
        0,
        [*python_argv("failsmall.drill.origin"), str(port)],
        state_dir / "origin.log",
    )


def seed_bundle(origin_port: int, features: int = 0) -> Bundle:
    """The example site (managed ruleset, bot features, rate limits) served by the origin. With
    `features` above 0 its bot feature file is the one the feature pipeline learns from a
    table of that many feature columns (see `failsmall.drill.features`)."""
    bundle = demo_bundle(example_dir(), origin_port)
    if features == 0:
        return bundle
    return with_feature_file(bundle, generated(features).good)


async def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, explain: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise FleetError(f"{what} did not happen in {timeout_s:g} s\n{explain()}")
        await asyncio.sleep(0.2)


async def wait_listening(process: NodeProcess, port: int, timeout_s: float = 30) -> None:
    """Wait until `process` accepts connections on `port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process.running():
            raise FleetError(f"{process.node_id} exited:\n{process.tail()}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise FleetError(f"{process.node_id} does not listen on {port} after {timeout_s:g} s")


async def all_serving(
    session: aiohttp.ClientSession, nodes: list[NodeProcess], digest: str
) -> bool:
    views = [await node_view(session, n) for n in nodes]
    return all(isinstance(v, Serving) and v.digest == digest for v in views)
