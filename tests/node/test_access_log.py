"""The access log: a JSON line per request that says what happened and why, and no secrets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from failsmall.managed import MANAGED_RULESET_ID, managed_ruleset
from failsmall.model.rules import ExecuteAction, Phase, Rule, Ruleset
from failsmall.node.access_log import AccessEntry, AccessLog, AccessLogError
from failsmall.node.stats import TrafficStats
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    blocking,
    eventually,
    make_bundle,
    raw_exchange,
    serving,
)

SECRET = "s3cr3t-session-value"


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_each_request_gets_a_line_saying_what_was_decided_and_why(
    tmp_path: Path, start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    log = tmp_path / "access.log"
    node = await start_node(access_log=str(log))
    bundle = make_bundle(
        origin.url, **blocking("block-admin", 'http.request.uri.path.startsWith("/admin")', 451)
    )
    signed = keys.sign(bundle)
    await serving(node, watch.publish(signed))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        ok = await client.get(
            f"/hello?token={SECRET}",
            headers={"Cookie": f"session={SECRET}", "Authorization": f"Bearer {SECRET}"},
        )
        assert ok.status_code == 200
        assert (await client.get("/admin/users")).status_code == 451
    raw = await raw_exchange(node.port, b"GARBAGE\r\n\r\n", timeout_s=2)
    assert raw.startswith(b"HTTP/1.1 400 ")
    await eventually(lambda: len(log.read_text().splitlines()) == 3, what="three log lines")
    allowed, blocked, rejected = lines(log)
    assert allowed["status"] == 200
    assert allowed["decision"] == "allow"
    assert allowed["path"] == "/hello"
    assert allowed["origin"] == "web"
    assert allowed["bundle"] == ok.headers["x-failsmall-bundle"]
    assert signed.digest.removeprefix("sha256:").startswith(allowed["bundle"])
    assert allowed["id"] == ok.headers["x-request-id"]
    assert allowed["ms"] >= 0
    assert blocked["status"] == 451
    assert blocked["decision"] == "block"
    assert blocked["rules"] == ["block-admin"]
    assert rejected["status"] == 400
    assert rejected["decision"] == "rejected"
    assert "malformed" in rejected["note"]
    assert "path" not in rejected  # the head was never parsed
    assert SECRET not in log.read_text()  # no query string, cookie or header values


async def test_a_blocked_request_names_the_rule_and_field_in_the_log_and_the_metrics(
    tmp_path: Path, start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    log = tmp_path / "access.log"
    node = await start_node(access_log=str(log))
    entry = Ruleset(
        id="entry",
        rules=[Rule(id="run-managed", action=ExecuteAction(ruleset=MANAGED_RULESET_ID))],
    )
    bundle = make_bundle(
        origin.url, rulesets=[managed_ruleset(), entry], phases={Phase.MANAGED: "entry"}
    )
    digest = watch.publish(keys.sign(bundle))
    try:  # compiling the managed signatures takes a while on a loaded machine
        await serving(node, digest, timeout_s=60)
    except AssertionError:
        raise AssertionError(f"not served: {watch.apply_reports()}") from None
    attack = f"1' UNION SELECT password FROM users WHERE name='{SECRET}'--"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        assert (await client.get("/hello", params={"q": "red shoes"})).status_code == 200
        assert (await client.get("/hello", params={"page": "2", "q": attack})).status_code == 403
    await eventually(lambda: len(log.read_text().splitlines()) == 2, what="two log lines")
    allowed, blocked = lines(log)
    assert "fields" not in allowed
    assert blocked["fields"]
    assert all(names == ["args.q"] for names in blocked["fields"].values())
    assert set(blocked["fields"]) <= set(blocked["rules"])
    assert SECRET not in log.read_text()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.admin_port}") as client:
        metrics = (await client.get("/metrics")).text
    for rule in blocked["fields"]:
        assert f'failsmall_rule_matches_total{{blocked="true",rule="{rule}"}} 1.0' in metrics
    assert 'failsmall_rule_matches_total{blocked="false",rule="run-managed"} 1.0' in metrics


def test_an_access_log_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "access.log"
    try:
        AccessLog(str(target), TrafficStats())
    except AccessLogError as exc:
        assert str(target) in str(exc)
    else:
        raise AssertionError("opening an access log in a missing directory succeeded")


def test_the_node_command_refuses_an_unwritable_access_log(tmp_path: Path, keys: Keys) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from failsmall.cli.main import app; app()",
            "node",
            "--node-id",
            "n",
            "--state-dir",
            str(tmp_path / "state"),
            "--trust",
            str(keys.public_path),
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--access-log",
            str(tmp_path / "missing-dir" / "access.log"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot open access log" in result.stdout + result.stderr


@given(
    client=st.text(max_size=40),
    method=st.text(max_size=10),
    host=st.text(max_size=60),
    path=st.text(max_size=200),
    status=st.integers(100, 599),
    ms=st.floats(0, 1e6),
    rules=st.lists(st.text(max_size=30), max_size=4),
    fields=st.dictionaries(st.text(max_size=20), st.lists(st.text(max_size=20), max_size=3)),
    bot=st.none() | st.integers(1, 99),
    note=st.text(max_size=80),
)
def test_every_line_is_one_json_object_holding_exactly_its_values(
    client: str,
    method: str,
    host: str,
    path: str,
    status: int,
    ms: float,
    rules: list[str],
    fields: dict[str, list[str]],
    bot: int | None,
    note: str,
) -> None:
    entry = AccessEntry(
        client,
        status,
        "block",
        ms,
        request_id="r-1",
        method=method,
        host=host,
        path=path,
        rules=tuple(rules),
        fields={rule: tuple(names) for rule, names in fields.items()},
        bot=bot,
        note=note,
    )
    line = entry.to_line(1795738910.081)
    assert "\n" not in line
    data = json.loads(line)
    assert data["client"] == client
    assert data["status"] == status
    assert abs(data["ms"] - ms) <= 0.0005 + ms * 1e-12
    assert data.get("path") == (path if method else None)
    assert data.get("host") == (host if method else None)
    assert data.get("rules", []) == rules
    assert data.get("fields", {}) == fields
    assert data.get("bot") == bot
    assert data.get("note", "") == note
