"""The CLI against a real control plane, as a separate process: output and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from control_harness import Fleet, envelope, site_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.cli.up_cmd import failsmall_argv
from failsmall.transport.natsd import free_port


async def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *failsmall_argv(),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_reports_status_pushes_and_audits(
    fleet: Fleet, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    await fleet.add_nodes(2)
    token = await fleet.token("admin", "cli-admin")
    env = {
        "FAILSMALL_CONTROL": fleet.plane.url,
        "FAILSMALL_TOKEN": token,
        "FAILSMALL_HOME": str(tmp_path / "home"),
    }
    code, out, _ = await cli("status", "--json", env=env)
    assert code == 0
    assert {n["node_id"] for n in json.loads(out)["nodes"]} == {"edge-0", "edge-1"}

    bundle_file = tmp_path / "site.bundle"
    digest, raw = envelope(site_bundle(), key)
    bundle_file.write_bytes(raw)
    code, out, err = await cli("push", str(bundle_file), "--policy", "global", "--wait", env=env)
    assert code == 0, err
    assert "completed" in out

    code, out, _ = await cli("status", env=env)
    assert code == 0
    assert digest.removeprefix("sha256:")[:12] in out

    code, out, _ = await cli("audit", "--json", env=env)
    assert code == 0
    assert any(e["action"] == "push" for e in json.loads(out))
    code, out, _ = await cli("audit", "verify", env=env)
    assert code == 0
    assert "intact" in out

    code, _, err = await cli("rollout", "pause", "--reason", "nothing runs", env=env)
    assert code == 1
    assert "no rollout is running" in err

    code, _, err = await cli("push", str(bundle_file), env=env)
    assert code == 1, "pushing the bundle the fleet already runs is refused"


async def test_cli_exit_codes(fleet: Fleet, tmp_path: Path) -> None:
    home = {"FAILSMALL_HOME": str(tmp_path / "home")}
    code, _, err = await cli(
        "status", "--control", f"http://127.0.0.1:{free_port()}", "--token", "x", env=home
    )
    assert code == 3
    assert "cannot reach" in err
    code, _, err = await cli("status", "--control", fleet.plane.url, "--token", "bad", env=home)
    assert code == 4
    viewer = await fleet.token("viewer", "v")
    missing = tmp_path / "nope.bundle"
    code, _, err = await cli(
        "push", str(missing), "--control", fleet.plane.url, "--token", viewer, env=home
    )
    assert code == 2
    assert "cannot read" in err
    code, _, err = await cli(
        "killswitch", "set", "r", "--state", "off", "--reason", "x",
        "--control", fleet.plane.url, "--token", viewer, env=home,
    )  # fmt: skip
    assert code == 2


async def test_failsmall_control_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    from failsmall.build import generate_keypair

    generate_keypair(tmp_path / "control.key")
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *failsmall_argv(),
        "control",
        "--db",
        str(tmp_path / "control.db"),
        "--key",
        str(tmp_path / "control.key"),
        "--listen",
        f"127.0.0.1:{port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        token_file = tmp_path / "control.db.admin-token"
        async with asyncio.timeout(30):
            while not token_file.exists():
                await asyncio.sleep(0.1)
        env = {"FAILSMALL_HOME": str(tmp_path / "home")}
        token = token_file.read_text().strip()
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        url = f"http://127.0.0.1:{port}"
        code, out, err = await cli("status", "--json", "--control", url, "--token", token, env=env)
        assert code == 0, err
        assert json.loads(out)["nodes"] == []
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
