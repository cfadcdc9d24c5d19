"""The CLI against a real control plane, as a separate process: output and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import httpx
from control_harness import Fleet, envelope, site_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from failsmall.cli.main import app
from failsmall.cli.up_cmd import failsmall_argv
from failsmall.control.auth import Role
from failsmall.model import Bundle
from failsmall.model.envelope import bundle_data
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


async def in_process(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """The CLI run in this process (in a thread: it makes blocking calls to the control plane
    this event loop serves), for tests that run many commands; returns (exit code, stdout)."""
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, app, list(args), env={"COLUMNS": "200", **env}, catch_exceptions=False
    )
    return result.exit_code, result.stdout


ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m\u202eevil\r"


async def test_killswitch_list_and_audit_show_control_characters_escaped(
    fleet: Fleet, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    """Data the API did not vet (an authored bundle's override, a principal from an older
    store) reaches the terminal escaped, never as a terminal escape sequence."""
    await fleet.add_nodes(1)
    # A principal created before names were checked: straight into the store.
    mallory = fleet.plane.tokens.issue("mallory" + ESCAPES, Role.ADMIN, time.time()).token
    data = bundle_data(site_bundle())
    data["overrides"] = [
        {
            "rule": "block-admin",
            "state": "log_only",
            "reason": "[bold]fp[/bold] " + ESCAPES,
            "author": "eve" + ESCAPES,
        }
    ]
    _, raw = envelope(Bundle.model_validate(data), key)
    async with httpx.AsyncClient(
        base_url=fleet.plane.url, headers={"Authorization": f"Bearer {mallory}"}
    ) as client:
        pushed = await client.post("/v1/bundles", content=raw, params={"policy": "global"})
        assert pushed.status_code == 202, pushed.text
    assert await fleet.wait_rollout_done(pushed.json()["rollout_id"]) == "completed"
    env = {"FAILSMALL_CONTROL": fleet.plane.url, "FAILSMALL_TOKEN": mallory}
    for command in (("killswitch", "list"), ("audit",), ("status",)):
        code, out = await in_process(*command, env=env | {"FAILSMALL_HOME": str(tmp_path)})
        assert code == 0, out
        for char in ("\x1b", "\x07", "\r", "\u202e"):
            assert char not in out, (command, out)
        assert "\\x1b" in out, (command, out)
    code, out = await in_process("killswitch", "list", env=env | {"FAILSMALL_HOME": str(tmp_path)})
    assert "[bold]fp[/bold]" in out, "brackets in data are shown, not read as markup"


async def _json_error(*args: str, code: int, env: dict[str, str]) -> dict[str, object]:
    exit_code, out = await in_process(*args, env=env)
    assert exit_code == code, (args, out)
    error = json.loads(out)
    assert isinstance(error, dict), (args, out)
    assert set(error) == {"ok", "error", "kind", "exit_code", "hint", "problems"}, (args, out)
    assert error["ok"] is False and error["exit_code"] == code and error["error"], (args, out)
    return error


async def test_every_json_command_reports_errors_as_json(fleet: Fleet, tmp_path: Path) -> None:
    home = {"FAILSMALL_HOME": str(tmp_path / "home")}
    nowhere = home | {
        "FAILSMALL_CONTROL": f"http://127.0.0.1:{free_port()}",
        "FAILSMALL_TOKEN": "x",
    }
    stranger = home | {"FAILSMALL_CONTROL": fleet.plane.url, "FAILSMALL_TOKEN": "fs_nobody"}
    admin = home | {
        "FAILSMALL_CONTROL": fleet.plane.url,
        "FAILSMALL_TOKEN": await fleet.token("admin", "cli-admin"),
    }
    bundle = tmp_path / "site.bundle"
    bundle.write_bytes(b"{}")
    # Against the control plane: unreachable (3), unauthorised (4), refused by its state (1).
    for command in (
        ("status", "--json"),
        ("push", str(bundle), "--json"),
        ("killswitch", "list", "--json"),
        ("killswitch", "set", "r", "--state", "disabled", "--reason", "x", "--json"),
        ("killswitch", "clear", "r", "--reason", "x", "--json"),
        ("audit", "--json"),
        ("audit", "verify", "--json"),
        ("rollout", "pause", "--reason", "x", "--json"),
        ("rollout", "resume", "--json"),
    ):
        assert (await _json_error(*command, code=3, env=nowhere))["kind"] == "unreachable"
        assert (await _json_error(*command, code=4, env=stranger))["kind"] == "unauthorised"
    refused = await _json_error("rollout", "abort", "--reason", "x", "--json", code=1, env=admin)
    assert "no rollout is running" in str(refused["error"])
    bad = await _json_error("push", str(bundle), "--json", code=2, env=admin)
    assert bad["kind"] == "bad_input"
    await _json_error("push", str(tmp_path / "missing"), "--json", code=2, env=admin)
    await _json_error("killswitch", "set", "r", "--state", "on", "--reason", "x", "--json",
                      code=2, env=admin)  # fmt: skip
    # Offline commands.
    await _json_error("keygen", str(bundle), "--json", code=2, env=home)
    await _json_error("inspect", str(bundle), "--requests", "-", "--json", code=2, env=home)
    await _json_error("verify", str(bundle), "--corpus", str(bundle), "--json", code=2, env=home)
    await _json_error("sim", "no-such-scenario", "--json", code=2, env=home)
    await _json_error("expr", "check", "http.request.uri.path ==", "--json", code=2, env=home)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bundle.yaml").write_text("name: x\norigins: 7\n")
    key = tmp_path / "k.key"
    await in_process("keygen", str(key), env=home)
    problems = await _json_error(
        "build", str(broken), "-o", str(tmp_path / "o"), "--key", str(key), "--json",
        code=2, env=home,
    )  # fmt: skip
    assert problems["problems"]
