"""Channels that need no control plane: a watched directory, or a single bundle file.

Directory layout (written by an operator or by `failsmall` tooling):

    assignment.json            {"digest": "sha256:...", "revision": 7}
    bundles/<digest>.json      signed envelopes (the file name may also omit "sha256:")
    apply-reports.jsonl        appended by nodes, one ApplyReport per line
    health-reports.jsonl       appended by nodes, one HealthReport per line
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from failsmall.transport.base import (
    ApplyReport,
    Assignment,
    BundleNotFoundError,
    HealthReport,
    NoChange,
    TransportError,
)

POLL_INTERVAL_S = 0.1


def append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line; a single O_APPEND write keeps lines from several writers whole."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        raise TransportError(f"cannot append to {path}: {exc}") from exc


class DirectoryChannel:
    """A `NodeChannel` over a directory on a local or shared filesystem."""

    def __init__(self, root: Path, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.root = root
        self.poll_interval_s = poll_interval_s

    async def watch(
        self, node_id: str, after_revision: int, timeout_s: float
    ) -> Assignment | NoChange:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            current = self._read_assignment()
            if isinstance(current, Assignment) and current.revision > after_revision:
                return current
            if loop.time() >= deadline:
                return NoChange(after_revision)
            await asyncio.sleep(self.poll_interval_s)

    def _read_assignment(self) -> Assignment | NoChange:
        path = self.root / "assignment.json"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return NoChange(0)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TransportError(f"{path} is unreadable or not JSON: {exc}") from exc
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("digest"), str)
            or not isinstance(data.get("revision"), int)
        ):
            raise TransportError(
                f'{path} must be {{"digest": "sha256:...", "revision": <int>}}, got {data!r}'
            )
        return Assignment(data["digest"], data["revision"])

    async def fetch(self, digest: str) -> bytes:
        bundles = self.root / "bundles"
        for name in (f"{digest}.json", f"{digest.removeprefix('sha256:')}.json"):
            try:
                return (bundles / name).read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise TransportError(f"cannot read bundle {digest}: {exc}") from exc
        raise BundleNotFoundError(f"no bundle {digest} in {bundles}")

    async def send_apply(self, report: ApplyReport) -> None:
        append_line(self.root / "apply-reports.jsonl", report.to_dict())

    async def send_health(self, report: HealthReport) -> None:
        append_line(self.root / "health-reports.jsonl", report.to_dict())

    async def close(self) -> None:
        return None


class BundleFileChannel:
    """A `NodeChannel` over one envelope file: whatever the file holds is the assignment.

    The revision grows each time the file's content changes. Reports are appended next to
    the file (`<file>.apply-reports.jsonl`, `<file>.health-reports.jsonl`).
    """

    def __init__(self, path: Path, poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.path = path
        self.poll_interval_s = poll_interval_s
        self._revision = 0
        self._raw = b""
        self._stat: tuple[int, int, int] = (0, 0, 0)
        self._content_hash = ""
        self._digest = ""

    async def watch(
        self, node_id: str, after_revision: int, timeout_s: float
    ) -> Assignment | NoChange:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            self._refresh()
            if self._digest and self._revision > after_revision:
                return Assignment(self._digest, self._revision)
            if loop.time() >= deadline:
                return NoChange(after_revision)
            await asyncio.sleep(self.poll_interval_s)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
            signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if signature == self._stat:
                return
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise TransportError(f"cannot read {self.path}: {exc}") from exc
        self._stat = signature
        content_hash = hashlib.sha256(raw).hexdigest()
        if content_hash == self._content_hash:
            return
        self._content_hash = content_hash
        self._revision += 1
        try:
            envelope = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            envelope = None
        claimed = envelope.get("digest") if isinstance(envelope, dict) else None
        # The claim is only a name: the agent verifies the envelope against it. A file that
        # names no digest is still offered, under its content hash, so it gets a NACK.
        self._digest = claimed if isinstance(claimed, str) else f"file:{content_hash}"
        self._raw = raw

    async def fetch(self, digest: str) -> bytes:
        self._refresh()
        if digest != self._digest:
            raise BundleNotFoundError(f"{self.path} no longer holds bundle {digest}")
        return self._raw

    async def send_apply(self, report: ApplyReport) -> None:
        append_line(self.path.with_name(self.path.name + ".apply-reports.jsonl"), report.to_dict())

    async def send_health(self, report: HealthReport) -> None:
        append_line(self.path.with_name(self.path.name + ".health-reports.jsonl"), report.to_dict())

    async def close(self) -> None:
        return None


class NullChannel:
    """A `NodeChannel` for a node that only serves its LKG: no assignment ever arrives."""

    async def watch(
        self, node_id: str, after_revision: int, timeout_s: float
    ) -> Assignment | NoChange:
        await asyncio.sleep(timeout_s)
        return NoChange(after_revision)

    async def fetch(self, digest: str) -> bytes:
        raise BundleNotFoundError(f"no control channel is configured; cannot fetch {digest}")

    async def send_apply(self, report: ApplyReport) -> None:
        return None

    async def send_health(self, report: HealthReport) -> None:
        return None

    async def close(self) -> None:
        return None
