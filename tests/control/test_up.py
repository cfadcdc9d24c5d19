"""`failsmall up` as an operator meets it: a fleet from nothing, serving traffic and stopping;
no node outlives it, even when it is killed; a busy port or a dying node is named at once; the
next run resumes the state directory; and it runs from an installed wheel."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from tests.processes import alive, children_of

from failsmall.children import busy_ports
from failsmall.cli.up_cmd import failsmall_argv
from failsmall.transport.natsd import free_port

# A fleet of processes compiles the managed ruleset on every node: minutes on a loaded machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Up:
    """A `failsmall up` process and what it printed."""

    process: asyncio.subprocess.Process
    home: Path
    output: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.output)

    async def until(self, marker: str, timeout_s: float = 400) -> None:
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout_s):
                while marker not in self.text:
                    line = (await self.process.stdout.readline()).decode()
                    assert line, f"up exited before {marker!r}:\n{self.text}"
                    self.output.append(line)
                    if "failsmall rollout resume" in line:
                        await self.resume()
        except TimeoutError:
            raise AssertionError(f"no {marker!r} in {timeout_s:g} s:\n{self.text}") from None

    async def resume(self) -> None:
        """What `up` asks a person to do when the gate pauses the rollout (on a loaded machine
        the canary may build its engine slower than the bake extensions allow)."""
        saved = json.loads((self.home / "control.json").read_text())
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                saved["control"] + "/v1/rollout/resume",
                headers={"Authorization": f"Bearer {saved['token']}"},
            ) as response,
        ):
            assert response.status == 200, await response.text()

    async def finish(self, timeout_s: float = 120) -> int:
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), timeout_s)
        self.output.append(rest.decode())
        return await asyncio.wait_for(self.process.wait(), timeout_s)


@asynccontextmanager
async def running_up(
    home: Path, *args: str, argv: list[str] | None = None, cwd: Path | None = None
) -> AsyncIterator[Up]:
    process = await asyncio.create_subprocess_exec(
        *(argv or failsmall_argv()),
        "up",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "FAILSMALL_HOME": str(home), "COLUMNS": "200"},
        cwd=cwd,
    )
    up = Up(process, home)
    try:
        yield up
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def ports(nodes: int) -> tuple[int, int, list[str]]:
    """A control port, a first proxy port, and the `up` arguments for them (the proxy ports
    and admin ports, first + 1000, must be free too)."""
    while True:
        control, first = free_port(), free_port()
        wanted = {first + i: "" for i in range(nodes)} | {
            first + 1000 + i: "" for i in range(nodes)
        }
        if not busy_ports(wanted):
            args = ["--nodes", str(nodes), "--control-port", str(control), "--port", str(first)]
            return control, first, args


async def served(port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/", headers={"Host": "shop.example"}) as response,
    ):
        assert "shop.example" in await response.text()
        return response.status


async def test_up_serves_traffic_and_stops_by_itself(tmp_path: Path) -> None:
    control_port, first_port, args = ports(3)
    async with running_up(tmp_path, *args, "--duration", "60") as up:
        await up.until("failsmall is up")
        saved = json.loads((tmp_path / "control.json").read_text())
        assert saved["control"] == f"http://127.0.0.1:{control_port}"
        for i in range(3):
            assert await served(first_port + i) == 200
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{control_port}/v1/status",
                headers={"Authorization": f"Bearer {saved['token']}"},
            ) as response,
        ):
            status = await response.json()
        assert len([n for n in status["nodes"] if n["live"]]) == 3
        assert status["last_good"], up.text
        # --duration: it stops everything by itself and exits 0.
        assert await up.finish() == 0
        assert "stopping" in up.text


async def test_no_node_outlives_a_killed_up_and_the_next_up_resumes(tmp_path: Path) -> None:
    state = tmp_path / "up"
    control_port, first_port, args = ports(2)
    async with running_up(tmp_path, *args) as up:
        await up.until("failsmall is up")
        nodes = children_of(up.process.pid)
        assert len(nodes) == 2, nodes
        admin_token = (state / "admin.token").read_text()
        key = (state / "signing.key").read_bytes()
        up.process.send_signal(signal.SIGKILL)
        await up.process.wait()
        async with asyncio.timeout(60):
            while any(alive(pid) for pid in nodes):
                await asyncio.sleep(0.2)
    needed = {control_port: "", first_port: "", first_port + 1: "", first_port + 1000: ""}
    assert not busy_ports(needed), "the nodes' ports are free again"
    # What an earlier run logged is not news: only this run's lines can stop the next one.
    with (state / "edge-1.log").open("a") as log:
        log.write("cannot listen on 127.0.0.1:1 for the proxy: Address already in use\n")

    async with running_up(tmp_path, *args) as again:
        await again.until("failsmall is up")
        assert "already" in again.text, "the resumed fleet serves the example bundle already"
        assert (state / "admin.token").read_text() == admin_token
        assert (state / "signing.key").read_bytes() == key
        assert await served(first_port + 1) == 200
        # A second `up` on the same state directory is refused at once, naming the holder.
        async with running_up(tmp_path, *ports(1)[2]) as third:
            assert await third.finish() == 1
            assert f"pid {again.process.pid}" in third.text
        again.process.send_signal(signal.SIGTERM)
        assert await again.finish() == 0
        assert "resumes it" in again.text


async def test_a_busy_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    _, first_port, args = ports(2)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first_port + 1))
        holder.listen()
        async with running_up(tmp_path, *args) as up:
            assert await up.finish() == 1
    assert f"127.0.0.1:{first_port + 1} (edge-2 proxy)" in up.text
    assert not list((tmp_path / "up").glob("edge-*.log")), "no node was started"


async def test_a_node_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "edge-2").write_text("a file where the node's state directory goes")
    _, _, args = ports(2)
    async with running_up(tmp_path, *args) as up:
        assert await up.finish() == 1
    assert "edge-2 exited with code" in up.text, up.text
    assert "edge-2.log" in up.text
    assert "only 0 of" not in up.text


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return 0


def _site_packages(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


async def test_up_runs_from_an_installed_wheel_outside_the_checkout(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    # pyproject needs setuptools>=77; an older one here means an isolated build that fetches it.
    isolation = [] if _setuptools_major() < 77 else ["--no-build-isolation"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation,
         "-w", str(wheels), str(ROOT)],
        check=True, timeout=600,
    )  # fmt: skip
    (wheel,) = wheels.glob("failsmall-*.whl")
    assert "failsmall/examples/site/bundle.yaml" in zipfile.ZipFile(wheel).namelist()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True, timeout=600,
    )  # fmt: skip
    # The dependencies come from this environment's site-packages, not the checkout.
    here = Path(sysconfig.get_paths()["purelib"])
    (_site_packages(python) / "dependencies.pth").write_text(f"{here}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import failsmall; print(failsmall.__file__)"],
        capture_output=True, text=True, check=True, cwd=elsewhere,
    ).stdout  # fmt: skip
    assert where.startswith(str(venv)), where
    _, first_port, args = ports(1)
    async with running_up(
        tmp_path / "home", *args, "--duration", "30", argv=[str(venv / "bin" / "failsmall")],
        cwd=elsewhere,
    ) as up:  # fmt: skip
        await up.until("failsmall is up")
        assert await served(first_port) == 200
        assert await up.finish() == 0
    shutil.rmtree(venv)
