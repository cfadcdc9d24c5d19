"""`failsmall up`: a whole fleet on one machine with no setup.

Starts a control plane, N edge nodes (subprocesses on consecutive ports, HTTP transport) and a
demo origin; generates a signing key and tokens in a fresh state directory; builds the example
site config into a bundle and pushes it through a staged rollout; then prints where to send
traffic. Ctrl-C (or `--duration`) stops everything.

Lifecycle: STARTING -> PUSHING -> SERVING -> STOPPING; any failure while starting goes straight
to STOPPING, so nothing started is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import aiohttp
import typer
from aiohttp import web
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

import failsmall
from failsmall.build import ConfigError, generate_keypair, load_config_dir, read_private_key
from failsmall.cli.control_client import write_connection_file
from failsmall.cli.demo_origin import start_demo_origin
from failsmall.cli.output import Exit, console, err_console
from failsmall.control.auth import Principal, Role
from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.model import Bundle, sign_bundle
from failsmall.model.envelope import bundle_data

NODE_TOKEN_ENV = "FAILSMALL_NODE_TOKEN"


def example_dir() -> Path:
    """The example site shipped with the source tree."""
    return Path(failsmall.__file__).resolve().parents[2] / "examples" / "site"


def demo_bundle(config_dir: Path, origin_port: int) -> Bundle:
    """The example config with every origin pointed at the demo origin."""
    data = bundle_data(load_config_dir(config_dir))
    for origin in data["origins"]:
        origin["url"] = f"http://127.0.0.1:{origin_port}"
    return Bundle.model_validate(data)


def failsmall_argv() -> list[str]:
    """How to run the `failsmall` command with this interpreter."""
    script = Path(sys.executable).parent / "failsmall"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from failsmall.cli.main import app; app()"]


def node_argv(
    node_id: str, state_dir: Path, trust: Path, port: int, admin_port: int, control_url: str
) -> list[str]:
    return [
        *failsmall_argv(),
        "node",
        "--node-id",
        node_id,
        "--state-dir",
        str(state_dir),
        "--trust",
        str(trust),
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admin_port}",
        "--control",
        control_url,
    ]


PROBE_INTERVAL_S = 0.05
PROBE_HEADERS = {
    "Host": "shop.example",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-GB,en;q=0.7",
    "Sec-Fetch-Mode": "navigate",
}
"""What the probe sends: a browser's request for the demo shop's home page."""


async def probe(ports: list[int], stop: asyncio.Event) -> None:
    """Synthetic traffic (about 20 requests/s per node) so that the health gate has data to
    judge: a rollout never passes on no data, and a demo fleet has no users."""
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            for port in ports:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        f"http://127.0.0.1:{port}/", headers=PROBE_HEADERS
                    ) as response:
                        await response.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_S)


@dataclass
class Fleet:
    """Everything `up` started, so that it can all be stopped."""

    state_dir: Path
    plane: ControlPlane | None = None
    origin: web.AppRunner | None = None
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    prober: asyncio.Task[None] | None = None
    stop_probing: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self) -> None:
        self.stop_probing.set()
        if self.prober is not None:
            await self.prober
        for process in self.nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.nodes.values():
            remaining = max(deadline - time.monotonic(), 0.1)
            try:
                await asyncio.to_thread(process.wait, remaining)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 5)
        if self.plane is not None:
            await self.plane.stop()
        if self.origin is not None:
            await self.origin.cleanup()


class UpError(Exception):
    """`up` could not start the fleet; the message says why."""


async def start_fleet(
    fleet: Fleet,
    nodes: int,
    control_port: int,
    first_port: int,
    config_dir: Path,
    probing: bool = True,
) -> tuple[str, str]:
    """Start origin, control plane and nodes; returns (control URL, admin token)."""
    key_path = fleet.state_dir / "signing.key"
    public_path, _ = generate_keypair(key_path)
    fleet.origin, origin_port = await start_demo_origin()
    settings = ControlSettings(
        db=fleet.state_dir / "control.db",
        key=read_private_key(key_path),
        port=control_port,
        admin_token_file=fleet.state_dir / "admin.token",
    )
    fleet.plane = await ControlPlane.open(settings)
    try:
        await fleet.plane.start()
    except OSError as exc:
        raise UpError(
            f"cannot listen on 127.0.0.1:{control_port}: {exc}; pass --control-port"
        ) from exc
    plane = fleet.plane
    admin_token = (fleet.state_dir / "admin.token").read_text().strip()
    for i in range(nodes):
        node_id = f"edge-{i + 1}"
        # Each node its own token, valid only for its id.
        node_token = plane.tokens.issue(node_id, Role.NODE, time.time()).token
        environment = {**os.environ, NODE_TOKEN_ENV: node_token}
        argv = node_argv(
            node_id,
            fleet.state_dir / node_id,
            public_path,
            first_port + i,
            first_port + 1000 + i,
            plane.url,
        )
        with (fleet.state_dir / f"{node_id}.log").open("ab") as log:
            fleet.nodes[node_id] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=environment
            )
    deadline = time.monotonic() + 60
    while len(plane.fleet.live_nodes()) < nodes:
        dead = [node_id for node_id, p in fleet.nodes.items() if p.poll() is not None]
        if dead:
            raise UpError(f"node(s) {', '.join(dead)} exited; see the logs in {fleet.state_dir}")
        if time.monotonic() > deadline:
            raise UpError(f"only {len(plane.fleet.live_nodes())} of {nodes} nodes reported in 60 s")
        await asyncio.sleep(0.2)
    if probing:
        ports = [first_port + i for i in range(nodes)]
        fleet.prober = asyncio.create_task(probe(ports, fleet.stop_probing))
    bundle = demo_bundle(config_dir, origin_port)
    signed = sign_bundle(bundle, settings.key)
    result = await plane.pushes.push(signed.to_bytes(), Principal("up", Role.ADMIN, "up"))
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("rolling out the example bundle", total=None)
        while plane.driver.active is not None:
            machine = plane.driver.active
            progress.update(
                task,
                description=f"rolling out the example bundle: {machine.summary()['state']} "
                f"{machine.summary()['wave']} ({len(machine.exposed())}/{nodes} nodes)",
            )
            await asyncio.sleep(0.25)
    row = plane.store.rollout(result.rollout_id)
    console.print(f"example bundle rollout: [bold]{row.state if row else 'unknown'}[/]")
    return plane.url, admin_token


async def run_up(
    nodes: int,
    control_port: int,
    first_port: int,
    duration: float | None,
    config_dir: Path,
    probing: bool,
    keep_state: bool = False,
) -> int:
    state_dir = Path(tempfile.mkdtemp(prefix="failsmall-up-"))
    fleet = Fleet(state_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        url, admin_token = await start_fleet(
            fleet, nodes, control_port, first_port, config_dir, probing
        )
        saved = write_connection_file(url, admin_token)
        console.print(f"\n[bold green]failsmall is up[/] (state in {state_dir})")
        console.print(f"  control plane  {url}   (admin token saved in {saved})")
        for i in range(nodes):
            console.print(f"  edge-{i + 1}         http://127.0.0.1:{first_port + i}")
        console.print(
            f"\nsend traffic:  curl -H 'Host: shop.example' http://127.0.0.1:{first_port}/"
        )
        console.print("watch:         failsmall status --watch")
        console.print("stop:          Ctrl-C\n")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration)
        return int(Exit.OK)
    except (UpError, ConfigError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        return int(Exit.FAILED)
    finally:
        console.print("stopping ...")
        await fleet.stop()
        if keep_state:
            console.print(f"state kept in {state_dir}")
        else:
            shutil.rmtree(state_dir, ignore_errors=True)


def up(
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=20, help="Edge nodes.")] = 3,
    control_port: Annotated[int, typer.Option("--control-port")] = 7070,
    first_port: Annotated[
        int, typer.Option("--port", help="Proxy port of the first node (then +1, +2 ...).")
    ] = 8080,
    duration: Annotated[
        float | None, typer.Option("--duration", help="Stop by itself after S seconds.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Config directory (default: the example).")
    ] = None,
    probing: Annotated[
        bool,
        typer.Option("--probe/--no-probe", help="Send synthetic traffic so the gate has data."),
    ] = True,
    keep_state: Annotated[
        bool, typer.Option("--keep-state", help="Keep the state directory (logs, store).")
    ] = False,
) -> None:
    """Start a control plane, edge nodes and a demo origin, and roll out the example site."""
    raise typer.Exit(
        asyncio.run(
            run_up(
                nodes,
                control_port,
                first_port,
                duration,
                config or example_dir(),
                probing,
                keep_state,
            )
        )
    )


def register(app: typer.Typer) -> None:
    app.command()(up)
