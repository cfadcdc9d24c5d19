"""`failsmall up`: a whole fleet on one machine with no setup.

Starts a control plane, N edge nodes (subprocesses on consecutive ports, HTTP transport) and a
demo origin; keeps a signing key, tokens, the control store and each node's state in a state
directory (`$FAILSMALL_HOME/up` unless `--state-dir`), which the next `up` resumes; builds the
example site config into a bundle and pushes it through a staged rollout unless the fleet
already serves it; then prints where to send traffic. Ctrl-C, SIGTERM or `--duration` stops
everything; the nodes also die with this process if it is killed (see `children.py`).

Lifecycle: CHECKING (ports free, state directory not in use) -> STARTING -> PUSHING -> SERVING
-> STOPPING; any failure goes straight to STOPPING with the real cause (a busy port, a node's
exit code and the end of its log), so nothing started is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TextIO

import aiohttp
import typer
from aiohttp import web
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

import failsmall
from failsmall.build import (
    ConfigError,
    KeyFileError,
    generate_keypair,
    load_config_dir,
    read_private_key,
)
from failsmall.children import busy_ports, death_notice, log_size, log_tail, spawn
from failsmall.cli.control_client import connection_file, write_connection_file
from failsmall.cli.demo_origin import start_demo_origin
from failsmall.cli.output import Exit, console, err_console, plain
from failsmall.control.auth import Principal, Role, TokenBook, UnauthorisedError
from failsmall.control.plane import ControlPlane, ControlSettings
from failsmall.control.store import StoreError
from failsmall.model import Bundle, SignedBundle, sign_bundle
from failsmall.model.envelope import bundle_data

NODE_TOKEN_ENV = "FAILSMALL_NODE_TOKEN"


def example_dir() -> Path:
    """The example site, shipped inside the package (`examples/` in a checkout links to it)."""
    return Path(failsmall.__file__).resolve().parent / "examples" / "site"


def default_state_dir() -> Path:
    return connection_file().parent / "up"


def admin_port(first_port: int, index: int) -> int:
    return first_port + 1000 + index


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
    return [sys.executable, "-c", "from failsmall.cli.main import main; main()"]


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
PROBE_ADDRESS = "127.0.0.2"
"""Where the probe's requests come from: a loopback address of its own, so that the nodes count
its rate apart from a person's (`curl` from 127.0.0.1). Counted as one client, the probe's 20
requests a second would be the person's too, and the example bundle's bot features score a
client over 20 a second as fast: a `curl` (already a likely bot) would then be blocked."""


async def probe(ports: list[int], stop: asyncio.Event, first_port: int) -> None:
    """Synthetic traffic (about 20 requests/s per node) so that the health gate has data to
    judge: a rollout never passes on no data, and a demo fleet has no users.

    Only nodes that serve a bundle are probed: a node without one answers 503 at once, and
    its instant answers would be the baseline the first rollout's latency is judged against.
    """
    timeout = aiohttp.ClientTimeout(total=2)
    serving: set[int] = set()
    connector = aiohttp.TCPConnector(local_addr=(PROBE_ADDRESS, 0))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for round_ in itertools.count():
            if stop.is_set():
                return
            if round_ % 20 == 0:  # about once a second
                for i, port in enumerate(ports):
                    if port not in serving and await _ready(
                        session, port, admin_port(first_port, i)
                    ):
                        serving.add(port)
            for port in ports:
                if port not in serving:
                    continue
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        f"http://127.0.0.1:{port}/", headers=PROBE_HEADERS
                    ) as response:
                        await response.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_INTERVAL_S)


class UpError(Exception):
    """`up` could not start the fleet; the message says why and what to do."""


class StateDir:
    """The directory `up` keeps between runs, held by one `up` at a time (an advisory lock on
    `up.lock`, released by the kernel however the process ends)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock: TextIO = (path / "up.lock").open("a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "another process"
            self._lock.close()
            raise UpError(
                f"{path} is in use by another `failsmall up` (pid {holder}); stop it, or pass "
                "--state-dir to run a second fleet"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()

    def close(self) -> None:
        self._lock.close()

    @property
    def key(self) -> Path:
        return self.path / "signing.key"

    def signing_key(self) -> Path:
        """The public key file of the state's signing key, made on the first run."""
        if not self.key.exists():
            return generate_keypair(self.key)[0]
        public = self.key.with_suffix(".pub")
        if not public.exists():
            raise UpError(f"{public} is missing next to {self.key}; restore it or remove both")
        return public

    def read_secret(self, name: str) -> str:
        with contextlib.suppress(OSError):
            return (self.path / name).read_text().strip()
        return ""

    def write_secret(self, name: str, value: str) -> None:
        fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            os.fchmod(fd, 0o600)
            out.write(value + "\n")

    def remembered(self) -> dict[str, int]:
        """Small facts of the last run (the demo origin's port)."""
        try:
            data = json.loads((self.path / "up.json").read_text())
        except (OSError, ValueError):
            return {}
        return (
            {k: v for k, v in data.items() if isinstance(v, int)} if isinstance(data, dict) else {}
        )

    def remember(self, **facts: int) -> None:
        (self.path / "up.json").write_text(json.dumps(facts))


def _token(tokens: TokenBook, state: StateDir, file: str, name: str, role: Role) -> str:
    """The token saved in `file` if the store still knows it as `name`/`role`, else a new one."""
    saved = state.read_secret(file)
    if saved:
        with contextlib.suppress(UnauthorisedError):
            principal = tokens.authenticate(saved)
            if (principal.name, principal.role) == (name, role):
                return saved
    issued = tokens.issue(name, role, time.time()).token
    state.write_secret(file, issued)
    return issued


@dataclass
class Fleet:
    """Everything `up` started, so that it can all be stopped."""

    state: StateDir
    plane: ControlPlane | None = None
    origin: web.AppRunner | None = None
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_starts: dict[str, int] = field(default_factory=dict)
    """Where each node's log began this run (a resumed state directory keeps older runs')."""
    prober: asyncio.Task[None] | None = None
    stop_probing: asyncio.Event = field(default_factory=asyncio.Event)

    def log(self, node_id: str) -> Path:
        return self.state.path / f"{node_id}.log"

    def first_death(self) -> str:
        """A notice for the first node that exited, or "" while all run."""
        for node_id, process in self.nodes.items():
            code = process.poll()
            if code is not None:
                return death_notice(node_id, code, self.log(node_id))
        return ""

    def cannot_listen(self) -> str:
        """A node's log line saying it cannot bind its address (its workers then retry)."""
        for node_id in self.nodes:
            since = self.log_starts.get(node_id, 0)
            for line in log_tail(self.log(node_id), 50, since).splitlines():
                if "cannot listen on" in line:
                    return f"{node_id}: {line.strip()}"
        return ""

    async def stop(self) -> None:
        self.stop_probing.set()
        if self.prober is not None:
            await self.prober
        for process in self.nodes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
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


def check_ports(nodes: int, control_port: int, first_port: int) -> None:
    """Fail at once, naming them, if any port the fleet needs is taken."""
    wanted = {control_port: "control plane"}
    for i in range(nodes):
        wanted[first_port + i] = f"edge-{i + 1} proxy"
        wanted[admin_port(first_port, i)] = f"edge-{i + 1} admin"
    busy = busy_ports(wanted)
    if busy:
        raise UpError(
            "in use already: "
            + "; ".join(busy)
            + ". Is an earlier `failsmall up` or another server still running? Stop it, or "
            "pass --port / --control-port"
        )


async def start_fleet(
    fleet: Fleet,
    nodes: int,
    control_port: int,
    first_port: int,
    config_dir: Path,
    probing: bool = True,
) -> tuple[str, str]:
    """Start origin, control plane and nodes; returns (control URL, admin token)."""
    state = fleet.state
    try:
        public_path = state.signing_key()
        key = read_private_key(state.key)
    except KeyFileError as exc:
        raise UpError(f"{exc}; remove {state.key} to make a new one") from exc
    load_config_dir(config_dir)  # a config that does not load fails here, before anything starts
    if probing and (unusable := busy_ports({0: "up's synthetic traffic"}, PROBE_ADDRESS)):
        raise UpError(f"cannot send from {unusable[0]}; pass --no-probe")
    origin_port = state.remembered().get("origin_port", 0)
    if origin_port and busy_ports({origin_port: "demo origin"}):
        origin_port = 0
    fleet.origin, origin_port = await start_demo_origin(port=origin_port)
    state.remember(origin_port=origin_port)
    settings = ControlSettings(
        db=state.path / "control.db",
        key=key,
        port=control_port,
        admin_token_file=state.path / "admin.token",
    )
    try:
        fleet.plane = await ControlPlane.open(settings)
        await fleet.plane.start()
    except StoreError as exc:
        raise UpError(f"{exc}; move {state.path} away to start afresh") from exc
    except OSError as exc:
        raise UpError(
            f"cannot listen on 127.0.0.1:{control_port}: {exc}; pass --control-port"
        ) from exc
    plane = fleet.plane
    admin_token = _token(plane.tokens, state, "admin.token", "admin", Role.ADMIN)
    write_connection_file(plane.url, admin_token)  # other commands work while nodes start
    for i in range(nodes):
        node_id = f"edge-{i + 1}"
        # Each node its own token, valid only for its id.
        node_token = _token(plane.tokens, state, f"{node_id}.token", node_id, Role.NODE)
        argv = node_argv(
            node_id,
            state.path / node_id,
            public_path,
            first_port + i,
            admin_port(first_port, i),
            plane.url,
        )
        environment = {**os.environ, NODE_TOKEN_ENV: node_token}
        fleet.log_starts[node_id] = log_size(fleet.log(node_id))
        fleet.nodes[node_id] = spawn(argv, fleet.log(node_id), environment)
    await _wait_for_reports(fleet, plane, nodes)
    if probing:
        ports = [first_port + i for i in range(nodes)]
        fleet.prober = asyncio.create_task(probe(ports, fleet.stop_probing, first_port))
    await _roll_out(fleet, plane, sign_bundle(demo_bundle(config_dir, origin_port), key))
    await _wait_until_serving(fleet, first_port)
    return plane.url, admin_token


async def _wait_for_reports(fleet: Fleet, plane: ControlPlane, nodes: int) -> None:
    """Until every node has reported; a node that dies or cannot bind ends the wait at once."""
    deadline = time.monotonic() + 60
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"starting {nodes} nodes", total=None)
        while (live := len(plane.fleet.live_nodes())) < nodes:
            if notice := fleet.first_death():
                raise UpError(notice)
            if line := fleet.cannot_listen():
                raise UpError(f"a node cannot bind its address. {line}")
            if time.monotonic() > deadline:
                raise UpError(
                    f"only {live} of {nodes} nodes reported in 60 s; their logs are "
                    f"{fleet.state.path}/edge-*.log"
                )
            progress.update(task, description=f"starting nodes: {live}/{nodes} reported")
            await asyncio.sleep(0.2)


async def _roll_out(fleet: Fleet, plane: ControlPlane, signed: SignedBundle) -> None:
    """Roll the example bundle out, unless the fleet already serves it (a resumed state)."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("rolling out the example bundle", total=None)
        while True:
            machine = plane.driver.active
            if machine is None:
                break
            summary = machine.summary()
            progress.update(
                task,
                description=f"a resumed rollout: {summary['state']} {summary['wave']}",
            )
            if notice := fleet.first_death():
                raise UpError(notice)
            await asyncio.sleep(0.25)
        if plane.driver.last_good == signed.digest:
            console.print("the fleet serves the example bundle already (resumed)")
            return
        result = await plane.pushes.push(signed.to_bytes(), Principal("up", Role.ADMIN, "up"))
        told = False
        while (machine := plane.driver.active) is not None:
            summary = machine.summary()
            progress.update(
                task,
                description=f"rolling out the example bundle: {summary['state']} "
                f"{summary['wave']} ({len(machine.exposed())}/{len(fleet.nodes)} nodes)",
            )
            if notice := fleet.first_death():
                raise UpError(notice)
            if summary["state"] == "paused" and not told:
                told = True
                why = next((e.reason for e in reversed(plane.audit.entries(5))), "")
                progress.console.print(
                    plain(
                        f"the gate paused the rollout ({why}); on a loaded machine the canary "
                        "can take long to build its engine. Resume it from another terminal: "
                        "failsmall rollout resume",
                        "yellow",
                    )
                )
            await asyncio.sleep(0.25)
    row = plane.store.rollout(result.rollout_id)
    state = row.state if row else "unknown"
    if state != "completed":
        why = "; ".join(
            f"{e.actor} {e.action}: {e.reason}" for e in plane.audit.entries(5) if e.reason
        )
        raise UpError(
            f"the example bundle's rollout ended {state}, so the fleet has no good bundle "
            f"(a heavily loaded machine can fail the health gate). The audit log: {why}"
        )
    console.print(f"example bundle rollout: [bold]{state}[/]")


async def _ready(session: aiohttp.ClientSession, proxy: int, admin: int) -> bool:
    """Whether a node serves a bundle (its /readyz) and accepts on its proxy port."""
    try:
        async with session.get(f"http://127.0.0.1:{admin}/readyz") as response:
            if response.status != 200:
                return False
        _, writer = await asyncio.open_connection("127.0.0.1", proxy)
    except (aiohttp.ClientError, OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _wait_until_serving(fleet: Fleet, first_port: int) -> None:
    """Until every node serves on its proxy port (a resumed node boots its last-known-good
    bundle, compiling it, before it binds)."""
    deadline = time.monotonic() + 120
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for i, node_id in enumerate(fleet.nodes):
            while not await _ready(session, first_port + i, admin_port(first_port, i)):
                if notice := fleet.first_death():
                    raise UpError(notice)
                if time.monotonic() > deadline:
                    raise UpError(
                        f"{node_id} does not serve on 127.0.0.1:{first_port + i} after 120 s; "
                        f"see {fleet.log(node_id)}"
                    )
                await asyncio.sleep(0.2)


async def watch_nodes(fleet: Fleet, stop: asyncio.Event) -> None:
    """While serving: say at once when a node dies, with its exit code and the end of its log."""
    reported: set[str] = set()
    while not stop.is_set():
        for node_id, process in fleet.nodes.items():
            code = process.poll()
            if code is not None and node_id not in reported:
                reported.add(node_id)
                err_console.print(plain(death_notice(node_id, code, fleet.log(node_id)), "red"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def run_up(
    nodes: int,
    control_port: int,
    first_port: int,
    duration: float | None,
    config_dir: Path,
    probing: bool,
    state_dir: Path,
) -> int:
    try:
        check_ports(nodes, control_port, first_port)
        state = StateDir(state_dir)
    except UpError as exc:
        err_console.print(Text.assemble(("error: ", "bold red"), plain(str(exc))))
        return int(Exit.FAILED)
    fleet = Fleet(state)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, stop.set)
    watcher: asyncio.Task[None] | None = None
    try:
        starting = asyncio.create_task(
            start_fleet(fleet, nodes, control_port, first_port, config_dir, probing)
        )
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return int(Exit.FAILED)
        stopping.cancel()
        url, _ = starting.result()
        saved = connection_file()
        console.print(f"\n[bold green]failsmall is up[/] (state in {state.path})")
        console.print(f"  control plane  {url}   (admin token saved in {saved})")
        for i in range(nodes):
            console.print(f"  edge-{i + 1}         http://127.0.0.1:{first_port + i}")
        console.print(
            f"\nsend traffic:  curl -H 'Host: shop.example' http://127.0.0.1:{first_port}/"
        )
        console.print("watch:         failsmall status --watch")
        console.print("stop:          Ctrl-C\n")
        watcher = asyncio.create_task(watch_nodes(fleet, stop))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=duration)
        return int(Exit.OK)
    except (UpError, ConfigError) as exc:
        err_console.print(Text.assemble(("error: ", "bold red"), plain(str(exc))))
        return int(Exit.FAILED)
    finally:
        stop.set()
        if watcher is not None:
            await watcher
        console.print("stopping ...")
        await fleet.stop()
        console.print(f"state kept in {state.path}; the next `failsmall up` resumes it")
        state.close()


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
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            help="Keys, tokens, store, node state and logs; resumed by the next run "
            "(default: $FAILSMALL_HOME/up, i.e. ~/.failsmall/up).",
        ),
    ] = None,
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
                state_dir or default_state_dir(),
            )
        )
    )


def register(app: typer.Typer) -> None:
    app.command()(up)
