"""Killswitches travel as verified, signed bundles through the expedited, canary-first policy."""

from __future__ import annotations

import httpx
from control_harness import Fleet, envelope, site_bundle, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.model import verify_envelope


async def _seeded(fleet: Fleet, key: Ed25519PrivateKey) -> str:
    await fleet.add_nodes(3)
    digest, raw = envelope(site_bundle(), key)
    response = await fleet.push(raw, policy="global")
    assert await fleet.wait_rollout_done(response.json()["rollout_id"]) == "completed"
    return digest


async def test_killswitch_rolls_out_an_override_bundle(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    good = await _seeded(fleet, key)
    kim = await fleet.token("killswitch", "kim")
    async with httpx.AsyncClient(
        base_url=fleet.plane.url, headers={"Authorization": f"Bearer {kim}"}, timeout=30
    ) as client:
        response = await client.post(
            "/v1/killswitches",
            json={
                "rule": "block-admin",
                "state": "disabled",
                "reason": "admin block misfires on checkout",
                "ttl_s": 7200,
            },
        )
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["change_class"] == "killswitch"
        assert body["policy"] == "expedited"
        status = (await client.get("/v1/status")).json()
        assert status["rollout"]["wave"] == "canary"
        assert await fleet.wait_rollout_done(body["rollout_id"]) == "completed"
        new_digest = body["digest"]
        await wait_for(lambda: all(n.current == new_digest for n in fleet.nodes))
        listing = (await client.get("/v1/killswitches")).json()
    assert [(o["rule"], o["state"], o["author"]) for o in listing] == [
        ("block-admin", "disabled", "kim")
    ]
    stored = fleet.plane.store.bundle(new_digest)
    assert stored is not None
    signed = verify_envelope(stored.envelope, {**fleet.plane.pushes.trusted})
    assert signed.bundle.overrides[0].expires_at is not None
    assert good != new_digest
    audit = (await fleet.admin.get("/v1/audit", params={"limit": 500})).json()
    assert any(e["actor"] == "kim" and e["action"] == "push" for e in audit)
    flips = [e for e in audit if e["action"] == "killswitch_set"]
    assert [(e["actor"], e["reason"]) for e in flips] == [
        ("kim", "admin block misfires on checkout")
    ]
    assert flips[0]["details"]["rule"] == "block-admin"
    assert flips[0]["details"]["rollout_id"] == body["rollout_id"]


async def test_killswitch_needs_a_reason_and_a_known_rule(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    await _seeded(fleet, key)
    bundles_before = len(fleet.plane.store.bundles())
    no_reason = await fleet.admin.post(
        "/v1/killswitches", json={"rule": "block-known-bad", "state": "disabled", "reason": " "}
    )
    assert no_reason.status_code == 400
    unknown = await fleet.admin.post(
        "/v1/killswitches", json={"rule": "no-such-rule", "state": "disabled", "reason": "x"}
    )
    assert unknown.status_code == 404
    bad_state = await fleet.admin.post(
        "/v1/killswitches", json={"rule": "block-known-bad", "state": "off", "reason": "x"}
    )
    assert bad_state.status_code == 400
    assert len(fleet.plane.store.bundles()) == bundles_before
    assert (await fleet.status())["rollout"] is None


async def test_clearing_a_killswitch_lifts_the_override(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    await _seeded(fleet, key)
    flip = await fleet.admin.post(
        "/v1/killswitches",
        json={"rule": "block-known-bad", "state": "log_only", "reason": "false positives"},
    )
    assert await fleet.wait_rollout_done(flip.json()["rollout_id"]) == "completed"
    cleared = await fleet.admin.post(
        "/v1/killswitches/block-known-bad/clear", json={"reason": "list fixed"}
    )
    assert cleared.status_code == 202, cleared.text
    assert cleared.json()["change_class"] == "killswitch"
    assert await fleet.wait_rollout_done(cleared.json()["rollout_id"]) == "completed"
    assert (await fleet.admin.get("/v1/killswitches")).json() == []
    audit = (await fleet.admin.get("/v1/audit", params={"limit": 500})).json()
    cleared_entries = [e for e in audit if e["action"] == "killswitch_clear"]
    assert [(e["reason"], e["details"]["rule"]) for e in cleared_entries] == [
        ("list fixed", "block-known-bad")
    ]
