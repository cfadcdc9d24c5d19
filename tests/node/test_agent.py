"""The config agent: bad bundles are NACKed while the old one keeps serving; LKG; crash guard."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.model import Bundle, Capacities, Feature, FeatureFile, FeatureKind
from failsmall.model.envelope import sign_bundle
from failsmall.node.guard import CrashGuard
from failsmall.node.lkg import LastKnownGood
from failsmall.node.server import EdgeNode
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    eventually,
    make_bundle,
    serving,
)


async def get(node: EdgeNode, path: str = "/hello") -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{node.port}{path}")


async def nack_for(watch: WatchDir, digest: str) -> dict[str, object]:
    def found() -> bool:
        return any(r["digest"] == digest for r in watch.apply_reports())

    await eventually(found, what=f"an apply report for {digest}")
    report = next(r for r in watch.apply_reports() if r["digest"] == digest)
    assert report["result"] == "nack", report
    return report


async def test_bad_bundles_are_nacked_and_the_old_one_keeps_serving(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await start_node()
    good = keys.sign(make_bundle(origin.url, name="good"))
    watch.publish(good)
    await serving(node, good.digest)
    assert (await get(node)).status_code == 200

    candidate = keys.sign(make_bundle(origin.url, name="candidate"))
    raw = candidate.to_bytes()

    # Truncated envelope.
    watch.publish_raw(candidate.digest, raw[: len(raw) // 2])
    report = await nack_for(watch, candidate.digest)
    assert "not valid JSON" in str(report["error"])

    # Signed by a key this node does not trust.
    stranger = sign_bundle(make_bundle(origin.url, name="stranger"), Ed25519PrivateKey.generate())
    watch.publish(stranger)
    assert "not trusted" in str((await nack_for(watch, stranger.digest))["error"])

    # Unsigned: the signature field is empty.
    unsigned = keys.sign(make_bundle(origin.url, name="unsigned"))
    envelope = json.loads(unsigned.to_bytes())
    envelope["signature"] = ""
    watch.publish_raw(unsigned.digest, json.dumps(envelope).encode())
    assert "signature" in str((await nack_for(watch, unsigned.digest))["error"])

    # Content changed after signing.
    tampered = keys.sign(make_bundle(origin.url, name="tampered"))
    envelope = json.loads(tampered.to_bytes())
    envelope["bundle"]["name"] = "evil"
    watch.publish_raw(tampered.digest, json.dumps(envelope).encode())
    assert "hashes to" in str((await nack_for(watch, tampered.digest))["error"])

    # A valid bundle, but not the one assigned.
    other = keys.sign(make_bundle(origin.url, name="other"))
    watch.publish_raw("sha256:" + "0" * 64, other.to_bytes())
    assert "was assigned" in str((await nack_for(watch, "sha256:" + "0" * 64))["error"])

    # Over this node's capacity: the doubled feature file.
    features = FeatureFile(
        version="2",
        features=[
            Feature(name=f"f{i:03d}", kind=FeatureKind.HEADER_PRESENT, param=f"x-h{i}", weight=0.1)
            for i in range(250)
        ],
    )
    base = make_bundle(origin.url, name="doubled")
    doubled_bundle = Bundle.model_validate(
        {
            **base.model_dump(),
            "bot": {**base.bot.model_dump(), "feature_file": features.model_dump()},
            "requires": Capacities(bot_feature_slots=1000).model_dump(),
        }
    )
    doubled = keys.sign(doubled_bundle)
    watch.publish(doubled)
    assert "capacity" in str((await nack_for(watch, doubled.digest))["error"])

    # A bundle that is not assigned at all never reaches the engine; the good one still serves.
    assert node.slot.digest == good.digest
    got = await get(node)
    assert got.status_code == 200
    assert got.headers["x-failsmall-bundle"] == good.digest.removeprefix("sha256:")[:12]
    assert node.lkg.pointer().current == good.digest


async def test_applied_bundle_becomes_lkg_and_node_boots_from_it(
    tmp_path: Path, start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await start_node()
    first = keys.sign(make_bundle(origin.url, name="first"))
    second = keys.sign(make_bundle(origin.url, name="second"))
    watch.publish(first)
    await serving(node, first.digest)
    watch.publish(second)
    await serving(node, second.digest)
    await node.stop()
    pointer = LastKnownGood(tmp_path / "state").pointer()
    assert (pointer.current, pointer.previous) == (second.digest, first.digest)

    # The control plane is gone (an empty watch dir), the node still boots and serves.
    empty = tmp_path / "nothing"
    empty.mkdir()
    again = await start_node(watch_dir=empty)
    assert again.slot.digest == second.digest
    assert (await get(again)).status_code == 200


async def test_a_fault_after_apply_quarantines_the_bundle_and_boots_the_previous_lkg(
    tmp_path: Path, start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    good = keys.sign(make_bundle(origin.url, name="good"))
    bad = keys.sign(make_bundle(origin.url, name="bad"))
    state = tmp_path / "state"
    lkg = LastKnownGood(state)
    lkg.save(good.digest, good.to_bytes())
    lkg.save(bad.digest, bad.to_bytes())
    # The process applied `bad` 2 s ago and died of a fault it recorded (the marker was never
    # cleared): the files such a death leaves, as in test_crash.py with a real process.
    CrashGuard(state).begin(bad.digest, time.time() - 2)
    (state / "fault.log").write_text("Fatal Python error: Segmentation fault\n\nThread ...\n")
    watch.publish(bad)  # the control plane still assigns it

    node = await start_node()
    assert node.slot.digest == good.digest
    assert (await get(node)).status_code == 200
    assert node.guard.is_poisoned(bad.digest)
    assert "Segmentation fault" in node.guard.quarantined[bad.digest].cause
    assert LastKnownGood(state).pointer().current == good.digest

    def poisoned_reported() -> bool:
        return any(
            bool(r["digest"] == bad.digest and r["result"] == "poisoned")
            for r in watch.apply_reports()
        )

    await eventually(poisoned_reported, what="a POISONED report")
    await eventually(lambda: node.agent.status.revision == watch.revision, what="the assignment")
    assert node.slot.digest == good.digest  # never applied again
    async with httpx.AsyncClient() as client:
        config = (await client.get(f"http://127.0.0.1:{node.admin_port}/config")).json()
    assert config["poisoned"] == [bad.digest]
    assert config["serving"] == good.digest
    await eventually(
        lambda: any(r["quarantined"] for r in watch.health_reports()), what="a health report"
    )
    quarantined = [r for r in watch.health_reports() if r["quarantined"]][-1]["quarantined"]
    assert [q["digest"] for q in quarantined] == [bad.digest]


async def test_a_death_with_no_recorded_cause_does_not_quarantine(
    tmp_path: Path, start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    good = keys.sign(make_bundle(origin.url, name="good"))
    newer = keys.sign(make_bundle(origin.url, name="newer"))
    state = tmp_path / "state"
    lkg = LastKnownGood(state)
    lkg.save(good.digest, good.to_bytes())
    lkg.save(newer.digest, newer.to_bytes())
    CrashGuard(state).begin(newer.digest, time.time() - 2)  # killed from outside: no fault.log
    node = await start_node()
    assert node.slot.digest == newer.digest
    assert not node.guard.quarantined
    marker = json.loads((state / "applying.json").read_text())
    assert (marker["digest"], marker["deaths"]) == (newer.digest, 1)


async def test_an_old_marker_is_not_a_crash_loop(
    tmp_path: Path, start_node: StartNode, keys: Keys, origin: OriginServer
) -> None:
    good = keys.sign(make_bundle(origin.url, name="good"))
    state = tmp_path / "state"
    LastKnownGood(state).save(good.digest, good.to_bytes())
    CrashGuard(state).begin(good.digest, time.time() - 60)
    node = await start_node()
    assert node.slot.digest == good.digest
    assert not node.guard.poisoned


async def test_health_reports_count_traffic(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await start_node()
    digest = watch.publish(keys.sign(make_bundle(origin.url)))
    await serving(node, digest)
    for _ in range(5):
        assert (await get(node)).status_code == 200
    assert (await get(node, "/slow?s=0")).status_code == 200

    def counted() -> bool:
        return bool(sum(r["requests"] for r in watch.health_reports()) >= 6)

    await eventually(counted, what="health reports with the traffic")
    last = watch.health_reports()[-1]
    assert last["node_id"] == "edge-test"
    assert last["digest"] == digest
    assert last["lkg_digest"] == digest


async def test_traffic_before_a_swap_is_reported_under_the_old_digest(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await start_node()
    first = watch.publish(keys.sign(make_bundle(origin.url)))
    await serving(node, first)
    for _ in range(4):
        assert (await get(node)).status_code == 200
    second = watch.publish(keys.sign(make_bundle(origin.url, name="second")))
    await serving(node, second)
    for _ in range(3):
        assert (await get(node)).status_code == 200

    def by_digest() -> dict[str, int]:
        counts: dict[str, int] = {}
        for report in watch.health_reports():
            digest = str(report["digest"])
            counts[digest] = counts.get(digest, 0) + int(str(report["requests"]))
        return counts

    await eventually(lambda: by_digest().get(second, 0) >= 3, what="reports for the new bundle")
    assert by_digest() == {first: 4, second: 3}


async def test_admin_endpoints(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await start_node()
    digest = watch.publish(keys.sign(make_bundle(origin.url)))
    await serving(node, digest)
    await get(node)
    admin = f"http://127.0.0.1:{node.admin_port}"
    async with httpx.AsyncClient(base_url=admin) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
        config = (await client.get("/config")).json()
    for name in (
        'failsmall_requests_total{decision="allow",status="200"}',
        "failsmall_module_outcomes_total",
        "failsmall_request_duration_seconds_bucket",
        'failsmall_bundle_applies_total{result="ack"} 1.0',
        f'failsmall_bundle_info{{digest="{digest}"',
        "failsmall_breaker_state",
    ):
        assert name in metrics, name
    assert config["serving"] == digest
    assert config["lkg"]["current"] == digest


async def test_a_watched_bundle_file_is_served_and_replaced(
    tmp_path: Path, start_node: StartNode, keys: Keys, origin: OriginServer
) -> None:
    path = tmp_path / "edge.bundle.json"
    first = keys.sign(make_bundle(origin.url, name="first"))
    path.write_bytes(first.to_bytes())
    node = await start_node(watch_dir=None, bundle_file=path)
    await serving(node, first.digest)
    second = keys.sign(make_bundle(origin.url, name="second"))
    path.write_bytes(second.to_bytes())
    await serving(node, second.digest)
    path.write_bytes(second.to_bytes()[:100])
    reports = path.with_name(path.name + ".apply-reports.jsonl")

    def nacked() -> bool:
        return reports.exists() and '"nack"' in reports.read_text()

    await eventually(nacked, what="a NACK for the truncated file")
    assert node.slot.digest == second.digest
    assert (await get(node)).status_code == 200


async def test_a_broken_channel_is_retried_while_the_node_keeps_serving(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await start_node()
    good = keys.sign(make_bundle(origin.url, name="good"))
    watch.publish(good)
    await serving(node, good.digest)
    (watch.root / "assignment.json").write_text("{not json")
    await eventually(lambda: node.agent.status.channel_errors >= 2, what="channel retries")
    assert (await get(node)).status_code == 200
    assert node.slot.digest == good.digest
    newer = keys.sign(make_bundle(origin.url, name="newer"))
    watch.publish(newer)  # the channel recovers; the agent picks up where it was
    await serving(node, newer.digest)
    assert (await get(node)).status_code == 200
