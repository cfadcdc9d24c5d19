"""How one node process is configured: addresses, state directory, trust, bundle source."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from failsmall.model import Capacities, SignatureError
from failsmall.model.envelope import key_id, load_public_key
from failsmall.node.dir_channel import BundleFileChannel, DirectoryChannel
from failsmall.node.guard import DEFAULT_WINDOW_S
from failsmall.transport.base import NodeChannel
from failsmall.transport.http import HttpNodeChannel

NODE_TOKEN_ENV = "FAILSMALL_NODE_TOKEN"


class NodeConfigError(Exception):
    """The node cannot start with this configuration; the message says what to fix."""


def parse_address(text: str, what: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` into (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise NodeConfigError(f"{what} must be HOST:PORT (e.g. 127.0.0.1:8080), got {text!r}")
    port = int(port_text)
    if port > 65535:
        raise NodeConfigError(f"{what} port {port} is out of range")
    return host.strip("[]"), port


def load_trusted_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    if not paths:
        raise NodeConfigError(
            "no trusted key: pass --trust KEY.pub (the public key bundles are signed with)"
        )
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            key = load_public_key(path.read_bytes())
        except OSError as exc:
            raise NodeConfigError(f"cannot read trusted key {path}: {exc}") from exc
        except (SignatureError, ValueError) as exc:
            raise NodeConfigError(f"{path} is not an Ed25519 public key in PEM: {exc}") from exc
        keys[key_id(key)] = key
    return keys


@dataclass
class NodeConfig:
    """Everything a node process needs; JSON-serialisable so a supervisor can pass it on."""

    node_id: str
    state_dir: Path
    trust: list[Path]
    listen: str = "127.0.0.1:8080"
    admin: str = "127.0.0.1:9080"
    watch_dir: Path | None = None
    bundle_file: Path | None = None
    control: str = ""
    jetstream_domain: str = ""
    access_log: str = ""
    """A file to append a JSON line per request to (`-`: standard output); empty: none."""
    capacities: Capacities = field(default_factory=Capacities)
    report_interval_s: float = 1.0
    crash_window_s: float = DEFAULT_WINDOW_S
    reuse_port: bool = False

    def validate(self) -> None:
        parse_address(self.listen, "--listen")
        parse_address(self.admin, "--admin")
        sources = [self.watch_dir is not None, self.bundle_file is not None, bool(self.control)]
        if sum(sources) > 1:
            raise NodeConfigError("pass only one of --watch-dir, --bundle and --control")
        if self.control and not self.control.startswith(
            ("http://", "https://", "nats://", "tls://")
        ):
            raise NodeConfigError(
                "--control must be the control plane's http:// URL or a nats:// server list, "
                f"got {self.control!r}"
            )
        if not self.node_id:
            raise NodeConfigError("--node-id must not be empty")
        if self.jetstream_domain and not self.control.startswith(("nats://", "tls://")):
            raise NodeConfigError("--jetstream-domain needs a nats:// --control server list")

    def channel(self) -> NodeChannel | None:
        """The channel this configuration names; NATS channels connect asynchronously, in
        `server.serve`."""
        if self.control.startswith(("http://", "https://")):
            # The node token travels in the environment, never on a command line.
            return HttpNodeChannel(self.control, os.environ.get(NODE_TOKEN_ENV, ""))
        if self.watch_dir is not None:
            return DirectoryChannel(self.watch_dir)
        if self.bundle_file is not None:
            return BundleFileChannel(self.bundle_file)
        return None

    def for_worker(self, index: int, workers: int) -> NodeConfig:
        """Worker `index` of `workers`: its own node id, state directory and admin port."""
        if workers == 1:
            return NodeConfig(**{**self.__dict__, "reuse_port": True})
        host, port = parse_address(self.admin, "--admin")
        return NodeConfig(
            **{
                **self.__dict__,
                "node_id": f"{self.node_id}-w{index}",
                "state_dir": self.state_dir / f"w{index}",
                "admin": f"{host}:{port + index if port else 0}",
                "reuse_port": True,
            }
        )

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["state_dir"] = str(self.state_dir)
        data["trust"] = [str(p) for p in self.trust]
        data["watch_dir"] = str(self.watch_dir) if self.watch_dir else None
        data["bundle_file"] = str(self.bundle_file) if self.bundle_file else None
        data["capacities"] = self.capacities.model_dump()
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> NodeConfig:
        data = json.loads(text)
        return cls(
            node_id=data["node_id"],
            state_dir=Path(data["state_dir"]),
            trust=[Path(p) for p in data["trust"]],
            listen=data["listen"],
            admin=data["admin"],
            watch_dir=Path(data["watch_dir"]) if data["watch_dir"] else None,
            bundle_file=Path(data["bundle_file"]) if data["bundle_file"] else None,
            control=str(data.get("control", "")),
            jetstream_domain=str(data.get("jetstream_domain", "")),
            access_log=str(data.get("access_log", "")),
            capacities=Capacities.model_validate(data["capacities"]),
            report_interval_s=float(data["report_interval_s"]),
            crash_window_s=float(data["crash_window_s"]),
            reuse_port=bool(data["reuse_port"]),
        )
