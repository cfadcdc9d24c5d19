"""End to end on a local fleet: generated traffic → the nodes' access logs → ingest → generate
→ publish (class content, canary first) → the nodes score with the new weights. A file the
guards refuse, and one the canary rejects, leave the fleet on its last good bundle."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from failsmall.features.generate import generate_feature_file, write_feature_file
from failsmall.features.replay import expose_copy
from failsmall.features.source import open_source
from failsmall.features.traffic import ClientKind, generate, send
from failsmall.model.bot import FeatureFile
from failsmall.rollout import CONTENT

from .fleet import EXAMPLE, FeatureFleet, feature_fleet, wait_for

pytestmark = pytest.mark.slow
TABLE = "http_requests_features"


def _logged(path: Path, prefix: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in lines if str(e.get("id", "")).startswith(prefix)]


def _json_documents(text: str) -> list[dict[str, object]]:
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return documents


def _score(file: FeatureFile, present: set[str]) -> int:
    total = file.base_score + sum(f.weight for f in file.features if f.key in present)
    return max(1, min(99, round(total)))


async def _probe_scores(fleet: FeatureFleet, tag: str) -> list[dict[str, Any]]:
    """Send one curl-like request to every node; their log lines for it."""
    probe = next(r for r in generate(200, seed=5) if r.kind is ClientKind.CURL)
    for node in fleet.nodes:
        sent = await send("127.0.0.1", node.port, [probe], start=0, id_prefix=f"probe{tag}")
        assert sent.answered == 1
    logs = [fleet.access_log(n) for n in fleet.nodes]
    await wait_for(lambda: all(_logged(log, f"probe{tag}") for log in logs), timeout_s=10)
    return [_logged(log, f"probe{tag}")[0] for log in logs]


async def test_generated_traffic_becomes_weights_the_fleet_scores_with(tmp_path: Path) -> None:
    async with feature_fleet(tmp_path) as fleet:
        example = FeatureFile.model_validate(
            yaml.safe_load((EXAMPLE / "features.yaml").read_text())
        )
        traffic = list(generate(800, seed=11))
        half = len(traffic) // 2
        sent = await asyncio.gather(
            send("127.0.0.1", fleet.nodes[0].port, traffic[:half]),
            send("127.0.0.1", fleet.nodes[1].port, traffic[half:], start=half),
        )
        assert sum(s.answered for s in sent) >= 780, sent
        logs = [fleet.access_log(n) for n in fleet.nodes]
        await wait_for(lambda: sum(len(_logged(log, "gen-")) for log in logs) >= 780)
        before = await _probe_scores(fleet, "a")
        assert all(e["bot"] == _score(example, set(e["bf"])) for e in before), before

        analytics = f"sqlite:{tmp_path / 'analytics.db'}"
        args = ["--source", analytics, "--table", TABLE, "--json"]
        code, out, err = await fleet.cli(
            "features",
            "ingest",
            *args,
            "--features",
            str(EXAMPLE / "features.yaml"),
            *(a for log in logs for a in ("--access-log", str(log))),
        )
        assert code == 0, err
        ingested = json.loads(out)["ingested"]
        rows = sum(r["rows"] for r in ingested.values())
        # Requests the rate limit answers first (credential stuffers on /login) are not scored.
        assert rows >= 700 and all(r["bots"] and r["humans"] for r in ingested.values())

        learned_path = tmp_path / "learned.yaml"
        code, out, err = await fleet.cli(
            "features",
            "generate",
            *args,
            "--out",
            str(learned_path),
            "--compare",
            str(EXAMPLE / "features.yaml"),
        )
        assert code == 0, err
        report = json.loads(out)
        assert report["quality"]["recall"] > 0.8, report
        learned = FeatureFile.model_validate(yaml.safe_load(learned_path.read_text()))

        good = await fleet.last_good()
        state = tmp_path / "state"
        publish = [
            "features",
            "publish",
            "--key",
            str(fleet.key_file),
            "--base",
            str(fleet.base_file),
            "--state",
            str(state),
            "--json",
        ]
        code, out, err = await fleet.cli(*publish[:2], str(learned_path), *publish[2:])
        assert code == 0, f"{out}\n{err}\n{await fleet.audit()}"
        published = json.loads(out)
        assert published["outcome"] == "published"
        assert await fleet.last_good() == published["digest"] != good
        rollout = (await fleet.admin.get(f"/v1/rollouts/{published['rollout_id']}")).json()
        assert (rollout["change_class"], rollout["policy"]) == ("content", "content")
        assert CONTENT.waves[0].name == "canary"

        after = await _probe_scores(fleet, "b")
        for entry in after:
            present = set(entry["bf"])
            assert entry["bot"] == _score(learned, present)
        assert any(_score(learned, set(e["bf"])) != _score(example, set(e["bf"])) for e in after)

        # 2025-11-18: a copy of the table becomes visible and the query loses its filter.
        source = open_source(analytics)
        expose_copy(source, TABLE, "r0", tmp_path / "r0.db")
        doubled_path = tmp_path / "doubled.yaml"
        write_feature_file(
            generate_feature_file(source, TABLE, database_filter=False).data, doubled_path
        )
        source.close()
        code, out, err = await fleet.cli(*publish[:2], str(doubled_path), *publish[2:])
        assert code == 1
        refusal = json.loads(out)
        assert any(p.startswith("delta:") for p in refusal["problems"]), refusal
        assert await fleet.last_good() == published["digest"]

        # A file that scores everyone as a certain bot: the canary blocks people, the gate
        # rolls back, and the fleet stays on the learned file.
        hostile = {
            "version": "everyone-a-bot",
            "base_score": 1,
            "features": [
                {"name": f.name, "kind": f.kind.value, "param": f.param, "weight": 0.0}
                for f in learned.features
            ],
        }
        hostile_path = tmp_path / "hostile.yaml"
        write_feature_file(hostile, hostile_path)
        code, out, err = await fleet.cli(
            *publish[:2],
            str(hostile_path),
            *publish[2:],
            "--accept-delta",
            "--reason",
            "test: a file the canary must reject",
        )
        assert code == 1, out
        assert "rolled_back" in json.loads(out)["error"]
        await wait_for(lambda: all(published["digest"] in n.served()[-1:] for n in fleet.nodes), 30)
        assert await fleet.last_good() == published["digest"]

        # Every cycle regenerates from the store (without the copy: the ATTACH was that
        # connection's); the same rows give the same file, so nothing is pushed again.
        code, out, err = await fleet.cli(
            *publish[:2],
            str(tmp_path / "cycle.yaml"),
            *publish[2:],
            "--every",
            "1s",
            "--times",
            "2",
            "--source",
            analytics,
            "--table",
            TABLE,
        )
        assert code == 0, err
        cycles = _json_documents(out)
        assert [c["outcome"] for c in cycles] == ["unchanged", "unchanged"]
        assert cycles[0]["version"] == learned.version

        entries = [e for e in await fleet.audit() if str(e["action"]).startswith("features_")]
        assert {e["actor"] for e in entries} == {"admin"}
        assert [e["action"] for e in entries] == [
            "features_published",
            "features_refused",
            "features_delta_accepted",
            "features_rejected",
        ]
        assert entries[2]["reason"] == "test: a file the canary must reject"
