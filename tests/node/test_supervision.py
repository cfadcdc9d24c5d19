"""Background loops under supervision: a node whose state disk fills up keeps serving, says it
is degraded (readiness, health reports), keeps retrying, and applies its assignment once there
is room again."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from failsmall.backoff import Backoff
from failsmall.supervise import Failing, Healthy, LogBudget, SupervisedLoop
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    eventually,
    make_bundle,
    serving,
)


@dataclass
class SmallDisk:
    """A state directory on a 1 MiB tmpfs (as root), which `fill` fills to the last byte; without
    root, a directory `fill` makes read-only. Either way writes there fail for real."""

    path: Path
    tmpfs: bool

    @property
    def error(self) -> str:
        return os.strerror(errno.ENOSPC if self.tmpfs else errno.EACCES)

    def fill(self) -> None:
        if not self.tmpfs:
            self.path.chmod(0o500)
            return
        block = b"\0" * 65536
        with (self.path / "filler").open("wb", buffering=0) as out:
            while True:
                try:
                    out.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    block = block[: len(block) // 2]
                    if not block:
                        return

    def release(self) -> None:
        if self.tmpfs:
            (self.path / "filler").unlink()
        else:
            self.path.chmod(0o700)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    path = tmp_path / "small-state"
    path.mkdir()
    mounted = False
    if os.geteuid() == 0:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        mounted = done.returncode == 0
    try:
        yield SmallDisk(path, tmpfs=mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)
        else:
            path.chmod(0o700)


async def test_a_full_state_disk_degrades_the_node_which_keeps_serving_and_recovers(
    small_disk: SmallDisk,
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
) -> None:
    if not small_disk.tmpfs and os.geteuid() == 0:
        pytest.skip("root without mount: neither a full tmpfs nor a read-only directory can fail")
    node = await start_node(state_dir=small_disk.path)
    first = keys.sign(make_bundle(origin.url, name="first"))
    await serving(node, watch.publish(first))
    small_disk.fill()
    second = keys.sign(make_bundle(origin.url, name="second"))
    watch.publish(second)
    await eventually(
        lambda: any(line.startswith("follow_assignments: ") for line in node.agent.degraded()),
        10,
        "the assignment loop to report its failure",
    )
    assert small_disk.error in node.agent.degraded()[0]
    async with httpx.AsyncClient(timeout=5) as client:
        got = await client.get(f"http://127.0.0.1:{node.port}/hello")
        assert got.status_code == 200
        assert got.headers["x-failsmall-bundle"] == first.digest.removeprefix("sha256:")[:12]
        ready = await client.get(f"http://127.0.0.1:{node.admin_port}/readyz")
        assert ready.status_code == 200
        assert "degraded: follow_assignments: " in ready.text
    await eventually(
        lambda: any(r["degraded"] for r in watch.health_reports()),
        10,
        "a health report that says the node is degraded",
    )
    # Still retrying, not dead: once there is room the assignment is applied.
    small_disk.release()
    await serving(node, second.digest, timeout_s=30)
    await eventually(lambda: not node.agent.degraded(), 10, "the loop to recover")
    async with httpx.AsyncClient(timeout=5) as client:
        ready = await client.get(f"http://127.0.0.1:{node.admin_port}/readyz")
    assert "degraded" not in ready.text
    count = len(watch.health_reports())
    await eventually(lambda: len(watch.health_reports()) > count + 1, 10, "newer health reports")
    assert watch.health_reports()[-1]["degraded"] == []


async def test_a_failing_loop_is_logged_within_its_budget_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    needed = tmp_path / "appears-later"
    seen: list[bytes] = []

    async def step() -> None:
        await asyncio.sleep(0.01)  # a step waits for something (a timer, a watch, a message)
        seen.append(needed.read_bytes())

    log = logging.getLogger("failsmall.test.supervise")
    loop = SupervisedLoop(
        "reader",
        step,
        log=log,
        backoff=Backoff(base_s=0.001, cap_s=0.005),
        budget=LogBudget(burst=2, per_minute=0.0),
    )
    caplog.set_level(logging.WARNING, logger=log.name)
    task = loop.start()
    try:
        await eventually(lambda: loop.total_failures >= 20, 10, "twenty failures")
        health = loop.health
        assert isinstance(health, Failing)
        assert health.failures >= 20 and "FileNotFoundError" in health.error
        assert "reader: " in health.describe()
        needed.write_bytes(b"here")
        await eventually(lambda: bool(seen), 10, "a successful step")
        await eventually(lambda: isinstance(loop.health, Healthy), 10, "recovery")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # the budget, not one line per failure
    assert errors[0].exc_info is not None  # the first failure carries its traceback
    recovered = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(recovered) == 1 and "not logged" in recovered[0]
