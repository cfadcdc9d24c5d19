"""Bot feature files from 1 million requests: ingest, generate, guard and publish.

Usage: .venv/bin/python bench/features.py [--rows 1000000] [--source sqlite|chdb|both]

Generated labelled traffic (browsers, curl/python clients, headless browsers, scanners,
credential stuffers) is valued with the engine's own feature tests and ingested into a real
store; `generate_feature_file` then reads the metadata and the labelled rows, fits the weights
and scores them, next to the hand-written examples/site/features.yaml, on the same held-out
rows. Then, on a local fleet (control plane, two `failsmall node` processes, the demo origin),
the commands themselves are timed: `failsmall features generate` from the SQLite store and
`failsmall features publish` until its `content` rollout (canary first, health-gated waves)
has completed on every node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from failsmall.features.generate import Generated, generate_feature_file
from failsmall.features.ingest import ingest_generated
from failsmall.features.source import open_source
from failsmall.features.traffic import candidate_features, generate
from failsmall.model.bot import FeatureFile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.features.fleet import feature_fleet

console = Console()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "site"
TABLE = "http_requests_features"


def run_source(url: str, rows: int, example: FeatureFile) -> tuple[float, float, Generated]:
    source = open_source(url)
    started = time.perf_counter()
    ingest_generated(source, TABLE, generate(rows, seed=2026), candidate_features())
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    generated = generate_feature_file(source, TABLE, compare=example)
    generate_s = time.perf_counter() - started
    source.close()
    return ingest_s, generate_s, generated


async def publish_time(generated: Generated, directory: Path) -> tuple[float, float, str]:
    """On a local fleet (control plane, two node processes, the demo origin, probe traffic):
    seconds of `failsmall features generate` from the store and of `failsmall features
    publish` until its `content` rollout completed on every node."""
    learned = directory / "learned.yaml"
    async with feature_fleet(directory / "fleet", nodes=2) as fleet:
        started = time.perf_counter()
        code, out, err = await fleet.cli(
            "features",
            "generate",
            "--source",
            f"sqlite:{directory}/analytics.db",
            "--out",
            str(learned),
            "--json",
        )
        generate_s = time.perf_counter() - started
        assert code == 0, err
        started = time.perf_counter()
        code, out, err = await fleet.cli(
            "features",
            "publish",
            str(learned),
            "--key",
            str(fleet.key_file),
            "--base",
            str(fleet.base_file),
            "--state",
            str(directory / "state"),
            "--json",
        )
        publish_s = time.perf_counter() - started
        assert code == 0, f"{out}\n{err}"
        return generate_s, publish_s, str(json.loads(out)["rollout_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--source", choices=("sqlite", "chdb", "both"), default="both")
    args = parser.parse_args()
    example = FeatureFile.model_validate(yaml.safe_load((EXAMPLE / "features.yaml").read_text()))
    kinds = ("sqlite", "chdb") if args.source == "both" else (args.source,)
    timing = Table(title=f"{args.rows:,} generated requests")
    for column in ("store", "ingest s", "generate s", "features", "fitted rows"):
        timing.add_column(column, justify="left" if column == "store" else "right")
    quality = Table(title="held-out quality (bot = score < 30)")
    for column in ("store", "file", "rows", "precision", "recall", "humans challenged"):
        quality.add_column(column, justify="left" if column in ("store", "file") else "right")
    last: Generated | None = None
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            url = f"sqlite:{tmp}/analytics.db" if kind == "sqlite" else f"chdb:{tmp}/clickhouse"
            with console.status(f"{kind}: ingesting {args.rows:,} requests and generating"):
                ingest_s, generate_s, generated = run_source(url, args.rows, example)
            last = generated
            timing.add_row(
                kind,
                f"{ingest_s:.1f}",
                f"{generate_s:.2f}",
                str(len(generated.data["features"])),
                f"{generated.fitted_rows:,}",
            )
            results = [("learned", generated.quality), ("examples/site", generated.compared)]
            for name, q in results:
                assert q is not None
                quality.add_row(
                    kind,
                    name,
                    f"{q.rows:,}",
                    f"{q.precision:.4f}",
                    f"{q.recall:.4f}",
                    f"{q.humans_challenged:.3%}",
                )
        assert last is not None
        if "sqlite" in kinds:
            with console.status("generate and publish on a local fleet"):
                generate_s, publish_s, rollout = asyncio.run(publish_time(last, Path(tmp)))
    console.print(timing)
    console.print(quality)
    if "sqlite" in kinds:
        console.print(
            f"`failsmall features generate` from the {args.rows:,} rows: {generate_s:.1f} s; "
            f"`failsmall features publish` until its content rollout {rollout} completed on "
            f"2 nodes: {publish_s:.1f} s"
        )


if __name__ == "__main__":
    main()
