"""The audit log as someone with write access to the control plane's files would attack it:
rows rewritten with every later hash recomputed, the last entries deleted, the checkpoint file
deleted or forged. And what the control plane refused is in the log, without any token."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import httpx
from control_harness import Fleet, envelope, site_bundle
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from test_cli import cli

from failsmall.control.audit import Checkpoint, entry_hash


async def _log_with_entries(fleet: Fleet, count: int = 6) -> None:
    for i in range(count):
        await fleet.token("viewer", f"reader-{i}")


def _attacker(fleet: Fleet) -> sqlite3.Connection:
    """A second connection to the store file, with the append-only guards dropped."""
    db = sqlite3.connect(fleet.plane.store.path, isolation_level=None)
    db.execute("DROP TRIGGER IF EXISTS audit_no_update")
    db.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return db


def _rechain_from(db: sqlite3.Connection, first: int) -> None:
    """Recompute every hash from entry `first` on, as a careful forger would."""
    rows = db.execute("SELECT * FROM audit WHERE seq >= ? ORDER BY seq", (first,)).fetchall()
    prev = db.execute("SELECT hash FROM audit WHERE seq = ?", (first - 1,)).fetchone()
    prev_hash = prev[0] if prev else "0" * 64
    for seq, at, actor, action, reason, details, _, _ in rows:
        digest = entry_hash(seq, at, actor, action, reason, details, prev_hash)
        db.execute(
            "UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev_hash, digest, seq)
        )
        prev_hash = digest


async def _verify(fleet: Fleet) -> dict[str, object]:
    response = await fleet.admin.get("/v1/audit/verify")
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


async def test_an_intact_log_is_anchored_by_signed_checkpoints(fleet: Fleet) -> None:
    await _log_with_entries(fleet)
    result = await _verify(fleet)
    assert result["intact"] is True
    assert result["anchored_through"] == result["entries"]
    assert result["unanchored"] == 0
    path = fleet.plane.audit.checkpoints.path
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    last = Checkpoint.from_line(path.read_bytes().splitlines()[-1])
    assert last.seq == result["entries"] and last.hash == result["head"]


async def test_a_rewritten_row_with_every_later_hash_recomputed_is_detected(fleet: Fleet) -> None:
    await _log_with_entries(fleet)
    db = _attacker(fleet)
    db.execute("UPDATE audit SET actor = 'nobody', reason = 'nothing happened' WHERE seq = 3")
    _rechain_from(db, 3)
    result = await _verify(fleet)
    assert result["intact"] is False
    assert result["broken_at"] == 3
    assert "signed checkpoint" in str(result["problem"])


async def test_deleting_the_last_entries_is_detected(fleet: Fleet) -> None:
    await _log_with_entries(fleet)
    entries = int(str((await _verify(fleet))["entries"]))
    _attacker(fleet).execute("DELETE FROM audit WHERE seq > ?", (entries - 2,))
    result = await _verify(fleet)
    assert result["intact"] is False
    assert result["broken_at"] == entries - 1
    assert "deleted" in str(result["problem"])


async def test_a_deleted_checkpoint_file_is_reported_not_intact(
    fleet: Fleet, tmp_path: Path
) -> None:
    await _log_with_entries(fleet)
    path = fleet.plane.audit.checkpoints.path
    path.unlink()
    result = await _verify(fleet)
    assert result["intact"] is False
    assert result["broken_at"] is None
    assert str(path) in str(result["problem"]) and "missing" in str(result["problem"])
    env = {"FAILSMALL_HOME": str(tmp_path / "home")}
    token = (tmp_path / "admin.token").read_text().strip()
    args = ("audit", "verify", "--control", fleet.plane.url, "--token", token)
    code, out, _ = await cli(*args, env=env)
    assert code == 1
    assert "cannot be verified" in out and "missing" in out
    code, out, _ = await cli(*args, "--json", env=env)
    assert code == 1
    assert json.loads(out)["intact"] is False


async def test_a_checkpoint_signed_by_another_key_is_a_forgery(fleet: Fleet) -> None:
    await _log_with_entries(fleet)
    db = _attacker(fleet)
    db.execute("UPDATE audit SET reason = 'rewritten' WHERE seq = 2")
    _rechain_from(db, 2)
    seq, head = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    forged = Checkpoint.sign(int(seq), str(head), Ed25519PrivateKey.generate())
    with fleet.plane.audit.checkpoints.path.open("ab") as out:
        out.write(forged.to_line())
    result = await _verify(fleet)
    assert result["intact"] is False
    assert result["broken_at"] == 2


async def test_refusals_are_audited_without_the_token(fleet: Fleet, key: Ed25519PrivateKey) -> None:
    viewer = await fleet.token("viewer", "vic")
    url = fleet.plane.url
    wrong_token = "not-a-real-token-1234567890"
    async with httpx.AsyncClient(base_url=url, timeout=30) as anyone:
        assert (await anyone.get("/v1/status")).status_code == 401
        unknown = {"Authorization": f"Bearer {wrong_token}"}
        assert (await anyone.get("/v1/bundles", headers=unknown)).status_code == 401
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        _, raw = envelope(site_bundle(), key)
        forbidden = await anyone.post("/v1/bundles", content=raw, headers=as_viewer)
        assert forbidden.status_code == 403
        as_viewer_node = await anyone.get("/v1/nodes/edge-1/assignment", headers=as_viewer)
        assert as_viewer_node.status_code in (401, 403)
    _, untrusted = envelope(site_bundle("from-a-stranger"), Ed25519PrivateKey.generate())
    refused = await fleet.push(untrusted)
    assert refused.status_code == 400
    audit = (await fleet.admin.get("/v1/audit", params={"limit": 500})).json()
    refusals = [(e["actor"], e["action"], e["details"].get("route", "")) for e in audit]
    assert ("unknown", "refused_unauthorised", "GET /v1/status") in refusals
    assert ("unknown", "refused_unauthorised", "GET /v1/bundles") in refusals
    assert ("vic", "refused_forbidden", "POST /v1/bundles") in refusals
    assert ("vic", "refused_node_route", "") in refusals
    pushes = [e for e in audit if e["action"] == "refused_push"]
    assert len(pushes) == 1 and pushes[0]["actor"] == "admin"
    assert pushes[0]["details"]["refused_by"] == "SignatureError"
    text = json.dumps(audit)
    assert wrong_token not in text and viewer not in text
    assert (await _verify(fleet))["intact"] is True


async def test_a_flood_of_refusals_is_recorded_within_budget(fleet: Fleet) -> None:
    before = len((await fleet.admin.get("/v1/audit", params={"limit": 10_000})).json())
    async with httpx.AsyncClient(base_url=fleet.plane.url, timeout=30) as anyone:
        for _ in range(200):
            assert (await anyone.get("/v1/status")).status_code == 401
    audit = (await fleet.admin.get("/v1/audit", params={"limit": 10_000})).json()
    recorded = [e for e in audit if e["action"] == "refused_unauthorised"]
    assert 20 <= len(recorded) < 100
    assert len(audit) - before == len(recorded)
    counted = sum(int(e["details"].get("not_recorded_before", 0)) for e in recorded)
    assert len(recorded) + counted + fleet.plane.refusals.not_recorded == 200


async def test_a_client_records_a_decision_as_its_token_principal(fleet: Fleet) -> None:
    operator = await fleet.token("operator", "olga")
    decision = {
        "action": "features_refused",
        "reason": "feature file 'v2' refused: delta 93%",
        "details": {"version": "v2", "problems": ["delta: 93%"]},
        "actor": "someone-else",
    }
    async with httpx.AsyncClient(base_url=fleet.plane.url, timeout=30) as client:
        as_operator = {"Authorization": f"Bearer {operator}"}
        recorded = await client.post("/v1/audit", json=decision, headers=as_operator)
    assert recorded.status_code == 201, recorded.text
    assert recorded.json()["actor"] == "olga"
    as_admin = await fleet.admin.post("/v1/audit", json=decision | {"action": "features_published"})
    assert as_admin.status_code == 201 and as_admin.json()["actor"] == "admin"
    audit = (await fleet.admin.get("/v1/audit", params={"limit": 500})).json()
    mine = [e for e in audit if e["action"].startswith("features_")]
    assert [(e["actor"], e["action"]) for e in mine] == [
        ("olga", "features_refused"),
        ("admin", "features_published"),
    ]
    assert mine[0]["reason"] == decision["reason"]
    assert mine[0]["details"] == decision["details"]
    assert (await _verify(fleet))["intact"] is True
    document = (await fleet.admin.get("/v1/openapi.json")).json()
    assert "`operator`" in document["paths"]["/v1/audit"]["post"]["description"]


async def test_a_client_cannot_forge_or_smuggle_audit_entries(fleet: Fleet) -> None:
    viewer = await fleet.token("viewer", "vic")
    flipper = await fleet.token("killswitch", "kim")
    before = (await _verify(fleet))["entries"]
    decision = {"action": "features_refused", "reason": "r"}
    async with httpx.AsyncClient(base_url=fleet.plane.url, timeout=30) as client:
        for token in (viewer, flipper):
            denied = await client.post(
                "/v1/audit", json=decision, headers={"Authorization": f"Bearer {token}"}
            )
            assert denied.status_code == 403, denied.text
        assert (await client.post("/v1/audit", json=decision)).status_code == 401
    bad_bodies = [
        ({"action": "rollout_completed", "reason": "r"}, "not one a client may record"),
        ({"action": "killswitch_set", "reason": "r"}, "not one a client may record"),
        ({"action": "token_create", "reason": "r"}, "not one a client may record"),
        ({"action": "features_", "reason": "r"}, "not one a client may record"),
        ({"action": "features_X", "reason": "r"}, "not one a client may record"),
        ({"action": "features_" + "a" * 41, "reason": "r"}, "at most 49"),
        ({"action": "features_a-b", "reason": "r"}, "at most 40 after features_"),
        ({"action": "features_refused"}, "'reason' is required"),
        ({"action": "features_refused", "reason": "a\x1b[2Jb"}, "control characters"),
        ({"action": "features_refused", "reason": "x" * 1001}, "at most 1000"),
        ({"action": "features_refused", "reason": "r", "details": []}, "JSON object"),
        ({"action": "features_refused", "reason": "r", "details": {"k": ["\u202e"]}}, "control"),
        ({"action": "features_refused", "reason": "r", "details": {"\x07": 1}}, "control"),
        ({"action": "features_refused", "reason": "r", "details": {"k": "x" * 17_000}}, "bytes"),
    ]
    for body, why in bad_bodies:
        response = await fleet.admin.post("/v1/audit", json=body)
        assert response.status_code == 400, (body, response.text)
        assert why in response.json()["error"], (body, response.text)
    huge = {"action": "features_refused", "reason": "r", "details": {"k": "x" * 70_000}}
    assert (await fleet.admin.post("/v1/audit", json=huge)).status_code == 413
    audit = (await fleet.admin.get("/v1/audit", params={"limit": 500})).json()
    assert not [e for e in audit if e["action"].startswith("features_")]
    refused = [e for e in audit if e["action"] == "refused_forbidden"]
    assert {(e["actor"], e["details"]["route"]) for e in refused} == {
        ("vic", "POST /v1/audit"),
        ("kim", "POST /v1/audit"),
    }
    result = await _verify(fleet)
    assert result["intact"] is True and int(str(result["entries"])) > int(str(before))
