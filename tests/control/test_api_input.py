"""Hostile input to the control plane's API: each gets a 4xx that says why, and changes
nothing; a token never reaches the log, and a token of the wrong role is a 403, not a 401."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from control_harness import Fleet

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_BUT_SMALL = b"[" * 30_000 + b"]" * 30_000
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x1b[31mall good\x1b[0m"


async def _client(fleet: Fleet, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=fleet.plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _tokens(fleet: Fleet) -> list[Any]:
    return fleet.plane.store.db.execute("SELECT * FROM tokens").fetchall()


async def test_json_nested_100k_deep_is_a_400_on_every_json_route(fleet: Fleet) -> None:
    before = _tokens(fleet)
    headers = {"Content-Type": "application/json"}
    for path in ("/v1/tokens", "/v1/killswitches", "/v1/rollout/pause", "/v1/keys"):
        response = await fleet.admin.post(path, content=DEEP_BUT_SMALL, headers=headers)
        assert response.status_code == 400, (path, response.text)
        assert "JSON" in response.json()["error"]
        response = await fleet.admin.post(path, content=DEEP, headers=headers)
        assert response.status_code == 413, (path, response.text)
    async with await _client(fleet, fleet.node_token) as node:
        response = await node.post("/v1/nodes/edge-0/health", content=DEEP, headers=headers)
        assert response.status_code == 400, response.text
    assert _tokens(fleet) == before


@pytest.mark.parametrize("after", ["1e23", "100000000000000000000000", "-1", "x"])
async def test_audit_after_out_of_range_is_a_400(fleet: Fleet, after: str) -> None:
    response = await fleet.admin.get("/v1/audit", params={"after": after})
    assert response.status_code == 400, response.text
    assert "after" in response.json()["error"]


async def test_free_text_is_bounded_and_the_body_too(fleet: Fleet) -> None:
    before = _tokens(fleet)
    huge = await fleet.admin.post(
        "/v1/tokens", json={"principal": "x" * 30_000_000, "role": "viewer"}
    )
    assert huge.status_code == 413, huge.text[:200]
    too_long = await fleet.admin.post("/v1/tokens", json={"principal": "x" * 201, "role": "viewer"})
    assert too_long.status_code == 400
    assert "at most 200" in too_long.json()["error"]
    reason = await fleet.admin.post("/v1/rollout/pause", json={"reason": "r" * 1001})
    assert reason.status_code == 400
    assert "at most 1000" in reason.json()["error"]
    assert _tokens(fleet) == before


async def test_control_characters_in_names_and_reasons_are_refused(fleet: Fleet) -> None:
    before = _tokens(fleet)
    audit_before = (await fleet.admin.get("/v1/audit", params={"limit": 1000})).json()
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/v1/tokens", {"principal": "mallory" + ESCAPES, "role": "viewer"}),
        ("/v1/tokens", {"principal": "evil\u202egnp.exe", "role": "viewer"}),
        ("/v1/killswitches", {"rule": "fsm-sqli-001", "state": "disabled", "reason": ESCAPES}),
        ("/v1/killswitches", {"rule": "r\x1b[2J", "state": "disabled", "reason": "fp"}),
        ("/v1/killswitches/fsm-sqli-001/clear", {"reason": "line one\nline two"}),
        ("/v1/rollout/rollback", {"reason": "fine\r\x1b[Kbad"}),
    ]
    for path, body in cases:
        response = await fleet.admin.post(path, json=body)
        assert response.status_code == 400, (path, response.text)
        assert "control characters" in response.json()["error"]
    assert _tokens(fleet) == before
    assert (await fleet.admin.get("/v1/audit", params={"limit": 1000})).json() == audit_before


async def test_transport_routes_answer_403_to_a_valid_token_of_another_role_or_node(
    fleet: Fleet,
) -> None:
    viewer = await _client(fleet, await fleet.token("viewer", "val"))
    other_node = await _client(fleet, await fleet.token("node", "edge-7"))
    stranger = await _client(fleet, "fs_not-a-real-token")
    watch = {"after": "0", "timeout": "0"}
    health = {"node_id": "edge-0", "digest": "", "at": 0.0}
    async with viewer, other_node, stranger:
        for client, status in ((viewer, 403), (other_node, 403), (stranger, 401)):
            answers = [
                await client.get("/v1/nodes/edge-0/assignment", params=watch),
                await client.post("/v1/nodes/edge-0/health", json=health),
                await client.post("/v1/nodes/edge-0/apply", json=health),
            ]
            assert [a.status_code for a in answers] == [status] * 3
        assert (await viewer.get("/v1/bundles/sha256:00")).status_code == 403
        assert (await stranger.get("/v1/bundles/sha256:00")).status_code == 401


async def test_a_token_with_a_stray_control_character_never_reaches_the_log(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    secret = await fleet.token("admin", "ops")
    caplog.set_level(logging.DEBUG)
    port = int(fleet.plane.url.rsplit(":", 1)[1])
    for header in (
        f"Authorization: Bearer {secret}\x01",
        f"authorization: bearer {secret}\x7f",
        f"Authorization: {secret}\x00",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET /v1/status HTTP/1.1\r\nHost: a\r\n{header}\r\n\r\n".encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert caplog.records, "the parse errors are logged"
    assert secret not in logged
    assert secret[3:20] not in logged
