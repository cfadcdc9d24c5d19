"""Rollouts through a real control plane: staged, gated, rolled back, one at a time."""

from __future__ import annotations

from control_harness import (
    HEALTHY,
    Fleet,
    Traffic,
    block_everything,
    envelope,
    site_bundle,
    wait_for,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


async def _seed(fleet: Fleet, key: Ed25519PrivateKey) -> str:
    """Put the fleet on a first good bundle (global policy) and return its digest."""
    digest, raw = envelope(site_bundle(), key)
    response = await fleet.push(raw, policy="global")
    assert response.status_code == 202, response.text
    assert await fleet.wait_rollout_done(response.json()["rollout_id"]) == "completed"
    await wait_for(lambda: all(n.current == digest for n in fleet.nodes))
    return digest


async def test_a_bundle_that_blocks_everyone_stops_at_the_canary(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    bad_digest, bad = envelope(block_everything(site_bundle()), key)

    def traffic(digest: str) -> Traffic:
        return Traffic(requests=20, blocked=20) if digest == bad_digest else HEALTHY

    await fleet.add_nodes(5, traffic=traffic)
    good = await _seed(fleet, key)
    response = await fleet.push(bad)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["change_class"] == "logic"
    assert body["policy"] == "logic"
    assert await fleet.wait_rollout_done(body["rollout_id"]) == "rolled_back"
    received = [n for n in fleet.nodes if bad_digest in n.assigned]
    assert len(received) == 1, "only the canary may ever receive the bad bundle"
    await wait_for(lambda: all(n.current == good for n in fleet.nodes))
    status = await fleet.status()
    assert status["last_good"] == good
    audit = (await fleet.admin.get("/v1/audit", params={"limit": 500})).json()
    assert any(e["actor"] == "gate" for e in audit), "the gate's decision is audited"


async def test_a_nack_for_capacity_rolls_back(fleet: Fleet, key: Ed25519PrivateKey) -> None:
    big_digest, big = envelope(site_bundle("needs-more"), key)
    await fleet.add_nodes(4, refuse={big_digest})
    good = await _seed(fleet, key)
    response = await fleet.push(big)
    assert response.status_code == 202, response.text
    assert await fleet.wait_rollout_done(response.json()["rollout_id"]) == "rolled_back"
    assert sum(1 for n in fleet.nodes if big_digest in n.assigned) == 1
    assert all(n.current == good for n in fleet.nodes)


async def test_one_rollout_at_a_time(fleet: Fleet, key: Ed25519PrivateKey) -> None:
    await fleet.add_nodes(3)
    await _seed(fleet, key)
    _, second = envelope(site_bundle("second"), key)
    _, third = envelope(site_bundle("third"), key)
    first = await fleet.push(second)
    assert first.status_code == 202, first.text
    before = (await fleet.admin.get("/v1/bundles")).json()
    conflict = await fleet.push(third)
    assert conflict.status_code == 409
    assert "still active" in conflict.json()["error"]
    assert (await fleet.admin.get("/v1/bundles")).json() == before


async def test_pause_resume_and_abort_by_hand(fleet: Fleet, key: Ed25519PrivateKey) -> None:
    await fleet.add_nodes(4)
    good = await _seed(fleet, key)
    new_digest, new = envelope(site_bundle("by-hand"), key)
    rollout = (await fleet.push(new)).json()["rollout_id"]
    no_reason = await fleet.admin.post("/v1/rollout/pause", json={})
    assert no_reason.status_code == 400
    paused = await fleet.admin.post("/v1/rollout/pause", json={"reason": "looking at graphs"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["state"] == "paused"
    again = await fleet.admin.post("/v1/rollout/pause", json={"reason": "twice"})
    assert again.status_code == 409
    resumed = await fleet.admin.post("/v1/rollout/resume", json={})
    assert resumed.json()["state"] == "baking"
    aborted = await fleet.admin.post("/v1/rollout/abort", json={"reason": "not today"})
    assert aborted.json()["state"] == "aborted"
    assert await fleet.wait_rollout_done(rollout) == "aborted"
    await wait_for(lambda: all(n.current == good for n in fleet.nodes))
    assert (await fleet.status())["last_good"] == good
    assert any(new_digest in n.applied for n in fleet.nodes)


async def test_a_good_bundle_completes_wave_by_wave(fleet: Fleet, key: Ed25519PrivateKey) -> None:
    await fleet.add_nodes(3)
    await _seed(fleet, key)
    # A content change (IP list) rolls out with the content policy, canary first.
    data = site_bundle().model_dump(mode="json")
    data["ip_lists"]["known-bad"].append("192.0.2.77")
    from failsmall.model import Bundle

    new_digest, new = envelope(Bundle.model_validate(data), key)
    response = await fleet.push(new)
    body = response.json()
    assert body["change_class"] == "content"
    status = await fleet.status()
    assert status["rollout"]["wave"] == "canary"
    assert [w["name"] for w in status["rollout"]["waves"]] == ["canary", "10%", "50%", "100%"]
    assert await fleet.wait_rollout_done(body["rollout_id"], timeout_s=40) == "completed"
    await wait_for(lambda: all(n.current == new_digest for n in fleet.nodes))
    assert (await fleet.status())["last_good"] == new_digest


async def test_a_rollback_is_stored_as_one_step_before_any_pointer_moves(
    fleet: Fleet, key: Ed25519PrivateKey
) -> None:
    await fleet.add_nodes(6)
    good = await _seed(fleet, key)
    new_digest, new = envelope(site_bundle("to-roll-back"), key)
    await fleet.push(new)
    await wait_for(lambda: sum(n.current == new_digest for n in fleet.nodes) >= 2)
    store = fleet.plane.store
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    rolled = await fleet.admin.post("/v1/rollout/rollback", json={"reason": "drill"})
    store.db.set_trace_callback(None)
    assert rolled.status_code == 200, rolled.text
    # Every node's desired bundle is the good one as soon as the rollback is acknowledged, and
    # it was written by one transaction (the rollout step), whatever the transport did since.
    assert set(store.desired().values()) == {good}
    desired_writes = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO desired")]
    assert desired_writes, statements
    begins = [i for i, s in enumerate(statements) if s.startswith("BEGIN")]
    commits = [i for i, s in enumerate(statements) if s == "COMMIT"]
    opened = max(b for b in begins if b < desired_writes[0])
    closed = min(c for c in commits if c > opened)
    assert all(opened < i < closed for i in desired_writes)
    await wait_for(lambda: all(n.current == good for n in fleet.nodes))
    await wait_for(lambda: not fleet.plane.pending_moves())
