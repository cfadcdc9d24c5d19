"""The control plane survives a restart mid-rollout and resumes where it was."""

from __future__ import annotations

from pathlib import Path

import httpx
from control_harness import ScriptedNode, envelope, running_plane, site_bundle, wait_for
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.model import Bundle
from failsmall.transport.natsd import free_port


async def test_restart_mid_rollout_resumes_it(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    db = tmp_path / "control.db"
    port = free_port()
    nodes: list[ScriptedNode] = []
    data = site_bundle().model_dump(mode="json")
    data["ip_lists"]["known-bad"].append("192.0.2.99")
    good_digest, good = envelope(site_bundle(), key)
    new_digest, new = envelope(Bundle.model_validate(data), key)
    try:
        async with running_plane(db, key, port) as plane:
            token = (tmp_path / "admin.token").read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=plane.url, headers=headers, timeout=30) as admin:
                node_token = (
                    await admin.post("/v1/tokens", json={"principal": "edge-*", "role": "node"})
                ).json()["token"]
                nodes = [ScriptedNode(f"edge-{i}", plane.url, node_token) for i in range(4)]
                for node in nodes:
                    node.start()
                await wait_for(lambda: len(plane.fleet.live_nodes()) == 4)
                seed = await admin.post("/v1/bundles", content=good, params={"policy": "global"})
                await wait_for(lambda: plane.driver.last_good == good_digest)
                assert seed.status_code == 202
                pushed = await admin.post("/v1/bundles", content=new)
                rollout_id = pushed.json()["rollout_id"]
                await wait_for(lambda: any(n.current == new_digest for n in nodes))
                revision_before = max(a.revision for a in plane.store.assignments().values())
        # The control plane is down; nodes keep serving and retrying.
        async with running_plane(db, key, port) as plane:
            assert plane.driver.active is not None
            assert plane.driver.active.rollout_id == rollout_id
            await wait_for(lambda: plane.driver.last_good == new_digest, timeout_s=30)
            await wait_for(lambda: all(n.current == new_digest for n in nodes))
            assert max(a.revision for a in plane.store.assignments().values()) > revision_before
            actions = [e.action for e in plane.audit.entries(limit=500)]
            assert "resume_after_restart" in actions
            row = plane.store.rollout(rollout_id)
            assert row is not None and row.state == "completed"
    finally:
        for node in nodes:
            await node.stop()
