"""The control plane's API: tokens and roles, bad input that changes nothing, OpenAPI."""

from __future__ import annotations

import sqlite3

import httpx
from control_harness import Fleet, envelope, site_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


async def _client(fleet: Fleet, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=fleet.plane.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def test_openapi_document_lists_the_routes(fleet: Fleet) -> None:
    async with httpx.AsyncClient(base_url=fleet.plane.url) as anonymous:
        document = (await anonymous.get("/v1/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    assert "/v1/bundles" in document["paths"]
    assert "post" in document["paths"]["/v1/killswitches"]


async def test_no_token_and_unknown_token_are_401(fleet: Fleet) -> None:
    async with httpx.AsyncClient(base_url=fleet.plane.url) as anonymous:
        response = await anonymous.get("/v1/status")
        assert response.status_code == 401
        assert "token" in response.json()["error"]
        response = await anonymous.get(
            "/v1/status", headers={"Authorization": "Bearer fs_not-a-real-token"}
        )
        assert response.status_code == 401


async def test_roles_limit_what_a_token_may_do(fleet: Fleet, key: Ed25519PrivateKey) -> None:
    viewer = await _client(fleet, await fleet.token("viewer", "val"))
    flipper = await _client(fleet, await fleet.token("killswitch", "kim"))
    node = await _client(fleet, fleet.node_token)
    _, raw = envelope(site_bundle(), key)
    async with viewer, flipper, node:
        assert (await viewer.get("/v1/status")).status_code == 200
        denied = await viewer.post("/v1/bundles", content=raw)
        assert denied.status_code == 403
        assert "operator" in denied.json()["error"]
        assert (await flipper.post("/v1/bundles", content=raw)).status_code == 403
        assert (await flipper.get("/v1/tokens")).status_code == 403
        assert (await node.get("/v1/status")).status_code == 403
        assert (await viewer.post("/v1/rollout/pause", json={"reason": "x"})).status_code == 403
    assert fleet.plane.store.bundles() == []


async def test_a_node_token_acts_only_as_the_nodes_its_principal_names(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    await fleet.add_nodes(1)  # edge-0, which the fleet's `edge-*` token serves
    digest, raw = envelope(site_bundle(), key)
    assert (await fleet.push(raw, policy="global")).status_code == 202
    one = await _client(fleet, await fleet.token("node", "edge-7"))
    viewer = await _client(fleet, await fleet.token("viewer", "val"))
    health = {"node_id": "edge-0", "digest": "", "at": 0.0}
    async with one, viewer:
        watch = {"after": "0", "timeout": "0"}
        assert (await one.get("/v1/nodes/edge-7/assignment", params=watch)).status_code == 204
        refused = await one.get("/v1/nodes/edge-0/assignment", params=watch)
        assert refused.status_code == 403
        assert "edge-0" in refused.json()["error"]
        # It may not report for another node, so a leaked token cannot feed the health gate.
        assert (await one.post("/v1/nodes/edge-0/health", json=health)).status_code == 403
        assert (await one.post("/v1/nodes/edge-70/health", json=health)).status_code == 403
        # Bundles are fetched by digest, which no single node owns.
        fetched = await one.get(f"/v1/bundles/{digest}")
        assert fetched.status_code == 200
        assert fetched.content == raw
        assert (await viewer.get(f"/v1/bundles/{digest}")).status_code == 403
        assert (await viewer.get("/v1/nodes/edge-7/assignment", params=watch)).status_code == 403
    assert "edge-7" not in fleet.plane.fleet.live_nodes()


async def test_tokens_are_stored_hashed_and_can_be_revoked(fleet: Fleet) -> None:
    response = await fleet.admin.post("/v1/tokens", json={"principal": "olga", "role": "operator"})
    issued = response.json()
    listing = (await fleet.admin.get("/v1/tokens")).json()
    assert issued["token"] not in str(listing)
    raw_rows = fleet.plane.store.db.execute("SELECT * FROM tokens").fetchall()
    assert issued["token"] not in str(raw_rows)
    async with await _client(fleet, issued["token"]) as olga:
        assert (await olga.get("/v1/status")).status_code == 200
        revoked = await fleet.admin.delete(f"/v1/tokens/{issued['token_id']}")
        assert revoked.status_code == 200
        assert (await olga.get("/v1/status")).status_code == 401


async def test_bad_pushes_are_refused_and_change_nothing(fleet: Fleet) -> None:
    await fleet.add_nodes(1)
    audit_before = (await fleet.admin.get("/v1/audit", params={"limit": 1000})).json()
    stranger = Ed25519PrivateKey.generate()
    _, untrusted = envelope(site_bundle(), stranger)
    cases = {
        b"": 400,
        b"not json": 400,
        b'{"format": "something-else"}': 400,
        untrusted: 400,
    }
    for body, status in cases.items():
        response = await fleet.push(body)
        assert response.status_code == status, response.text
        assert response.json()["error"]
    tampered = untrusted.replace(b"block-admin", b"block-nothing")
    assert (await fleet.push(tampered)).status_code == 400
    assert fleet.plane.store.bundles() == []
    assert (await fleet.status())["rollout"] is None
    audit_after = (await fleet.admin.get("/v1/audit", params={"limit": 1000})).json()
    # Nothing changed but the record of what was refused.
    assert audit_after[: len(audit_before)] == audit_before
    added = audit_after[len(audit_before) :]
    assert [e["action"] for e in added] == ["refused_push"] * 4
    assert [e["details"]["refused_by"] for e in added] == [
        "EnvelopeFormatError",
        "EnvelopeFormatError",
        "SignatureError",
        "SignatureError",
    ]


async def test_unknown_policy_and_class_downgrade_are_refused(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    await fleet.add_nodes(1)
    _, raw = envelope(site_bundle(), key)
    unknown = await fleet.push(raw, policy="yolo")
    assert unknown.status_code == 400
    assert "global" in unknown.json()["error"]
    downgrade = await fleet.push(raw, **{"class": "content"})
    assert downgrade.status_code == 422
    assert fleet.plane.store.bundles() == []


async def test_audit_verify_detects_an_edited_row(fleet: Fleet) -> None:
    for role in ("viewer", "operator", "killswitch"):
        await fleet.token(role, f"someone-{role}")
    intact = (await fleet.admin.get("/v1/audit/verify")).json()
    assert intact["intact"] is True
    assert intact["entries"] >= 4
    db = fleet.plane.store.db
    try:
        db.execute("UPDATE audit SET reason = 'nothing happened' WHERE seq = 2")
        raise AssertionError("the audit table must refuse updates")
    except sqlite3.IntegrityError as exc:
        assert "append-only" in str(exc)
    # Someone with the file drops the guard and rewrites history.
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 2")
    broken = (await fleet.admin.get("/v1/audit/verify")).json()
    assert broken["intact"] is False
    assert broken["broken_at"] == 2
