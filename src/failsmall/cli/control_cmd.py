"""`failsmall control`: run the control plane."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from failsmall.build import KeyFileError, read_private_key, read_public_keys
from failsmall.cli.output import Exit, console, fail
from failsmall.control.plane import ControlPlane, ControlSettings, TransportKind
from failsmall.control.store import StoreError
from failsmall.node.config import NodeConfigError, parse_address
from failsmall.transport.base import TransportError


def control(
    db: Annotated[Path, typer.Option("--db", help="SQLite store (created if missing).")],
    key: Annotated[
        Path, typer.Option("--key", help="Ed25519 private key (PEM) that signs killswitches.")
    ],
    listen: Annotated[str, typer.Option("--listen", help="API address.")] = "127.0.0.1:7070",
    trust: Annotated[
        list[Path] | None,
        typer.Option("--trust", help="More public keys whose bundles may be pushed."),
    ] = None,
    transport: Annotated[
        str, typer.Option("--transport", help="How nodes are reached: http or nats.")
    ] = "http",
    nats: Annotated[
        list[str] | None, typer.Option("--nats", help="NATS server URL (repeat for a cluster).")
    ] = None,
    nats_replicas: Annotated[int, typer.Option("--nats-replicas", min=1, max=5)] = 1,
    admin_token_file: Annotated[
        Path | None,
        typer.Option("--admin-token-file", help="Where a fresh store's admin token is written."),
    ] = None,
) -> None:
    """Run the control plane: API, store, rollout driver and the node transport."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        host, port = parse_address(listen, "--listen")
        private = read_private_key(key)
        trusted = read_public_keys(trust or [])
    except (NodeConfigError, KeyFileError) as exc:
        fail(str(exc), "see `failsmall control --help`")
    if transport not in ("http", "nats"):
        fail(f"--transport must be http or nats, not {transport!r}")
    kind: TransportKind = "nats" if transport == "nats" else "http"
    if kind == "nats" and not nats:
        fail("--transport nats needs at least one --nats URL", "e.g. --nats nats://127.0.0.1:4222")
    settings = ControlSettings(
        db=db,
        key=private,
        host=host,
        port=port,
        trusted=trusted,
        transport=kind,
        nats_servers=list(nats or []),
        nats_replicas=nats_replicas,
        admin_token_file=admin_token_file or db.with_name(db.name + ".admin-token"),
    )
    raise typer.Exit(asyncio.run(serve(settings)))


async def serve(settings: ControlSettings, duration_s: float | None = None) -> int:
    """Run until SIGINT/SIGTERM (or `duration_s`); returns an exit code."""
    try:
        plane = await ControlPlane.open(settings)
        await plane.start()
    except (StoreError, TransportError, OSError) as exc:
        console.print(f"[bold red]error:[/] cannot start the control plane: {exc}")
        return int(Exit.FAILED)
    console.print(f"control plane on [bold]{plane.url}[/] (store {settings.db})")
    if settings.admin_token_file is not None and settings.admin_token_file.exists():
        console.print(f"admin token in {settings.admin_token_file}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration_s)
    await plane.stop()
    return int(Exit.OK)


def register(app: typer.Typer) -> None:
    app.command()(control)
