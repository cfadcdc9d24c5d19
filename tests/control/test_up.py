"""`failsmall up --duration`: a whole fleet from nothing, serving traffic, then stopping."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import aiohttp
import pytest

from failsmall.cli.up_cmd import failsmall_argv
from failsmall.transport.natsd import free_port

pytestmark = [pytest.mark.slow]


async def test_up_serves_traffic_and_stops_by_itself(tmp_path: Path) -> None:
    control_port, first_port = free_port(), free_port()
    env = {**os.environ, "FAILSMALL_HOME": str(tmp_path), "COLUMNS": "200"}
    process = await asyncio.create_subprocess_exec(
        *failsmall_argv(),
        "up",
        "--nodes",
        "3",
        "--control-port",
        str(control_port),
        "--port",
        str(first_port),
        "--duration",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    assert process.stdout is not None
    output: list[str] = []
    try:
        async with asyncio.timeout(150):
            while True:
                line = (await process.stdout.readline()).decode()
                assert line, "up exited early:\n" + "".join(output)
                output.append(line)
                if "failsmall is up" in line:
                    break
        saved = json.loads((tmp_path / "control.json").read_text())
        assert saved["control"] == f"http://127.0.0.1:{control_port}"
        async with aiohttp.ClientSession() as session:
            for i in range(3):
                async with session.get(
                    f"http://127.0.0.1:{first_port + i}/", headers={"Host": "shop.example"}
                ) as response:
                    assert response.status == 200
                    assert "shop.example" in await response.text()
            async with session.get(
                f"http://127.0.0.1:{control_port}/v1/status",
                headers={"Authorization": f"Bearer {saved['token']}"},
            ) as response:
                status = await response.json()
        assert len([n for n in status["nodes"] if n["live"]]) == 3
        assert status["last_good"]
        # --duration: it stops everything by itself and exits 0.
        assert await asyncio.wait_for(process.wait(), 90) == 0
        rest = (await process.stdout.read()).decode()
        assert "stopping" in rest
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
