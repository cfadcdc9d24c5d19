"""Every verdict of the engine on a real-traffic corpus, written out to compare two trees.

    python bench/verdicts.py (--blazehttp DIR | --corpus JSONL) [-o FILE] [--limit N] [--json]

Runs each request of the blazehttp tuning half (DIR is the `testcases` directory of a
chaitin/blazehttp checkout, GPL-3.0, read in place; only the cases under 00-7f), or of a JSONL
corpus (the lines `failsmall verify` reads, a file or a directory of them), twice through the
example site's engine and through the managed ruleset at paranoia levels 1 and 2, from six
client addresses in turn (the example's office and known-bad lists, IPv6, others) and a clock
that moves on, storing cacheable responses. It writes the repr of every verdict (outcomes, bot
score, cache decision, limits reached), of every cache decision on the response and of the
rate-limit buckets left, one per line, and prints their count and sha256. Run it from two trees:
the same digest means the same decisions (`bench/interpreted.py` runs it with the compiled
modules' Python source). Exit status: 0, or 2 when the corpus is absent or unreadable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from failsmall.build import load_config_dir
from failsmall.build.corpus import CorpusError
from failsmall.engine import Engine
from failsmall.engine.cache import CacheFill, CacheMiss
from failsmall.managed.corpora import LabelledRequest, benign_requests, blazehttp_cases
from failsmall.managed.measure import managed_bundle

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = ("192.0.2.44", "203.0.113.9", "192.0.2.3", "2001:db8:10::1", "198.51.100.7", "10.0.0.1")
PASSES = 2


def engines() -> dict[str, Engine]:
    return {
        "site": Engine.build(load_config_dir(ROOT / "examples" / "site")),
        "pl1": Engine.build(managed_bundle(1)),
        "pl2": Engine.build(managed_bundle(2)),
    }


def verdict_lines(label: str, engine: Engine, cases: list[LabelledRequest]) -> Iterator[str]:
    state = engine.new_state(seed=1)
    for round_ in range(PASSES):
        for i, case in enumerate(cases):
            now = 1000.0 + i * 0.01 + round_ * 500
            request = case.request._replace(client_ip=CLIENTS[i % len(CLIENTS)], now=now)
            verdict = engine.evaluate(request, state)
            yield f"{label} {round_} {case.name} {verdict!r}"
            if isinstance(verdict.cache, CacheMiss):
                plan = engine.on_response(verdict, 200, [(b"Cache-Control", b"max-age=3")])
                if isinstance(plan, CacheFill):
                    plan.add(b"x")
                    yield f"  stored {plan.commit()}"
                else:
                    yield f"  {plan!r}"
    buckets = sorted((k, round(b.tokens, 9)) for k, b in state.ratelimit.buckets.items())
    yield f"{label} buckets {buckets!r} clients {len(state.ratelimit.client_rates)}"
    yield f"{label} module errors {state.module_errors!r}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    corpus = parser.add_mutually_exclusive_group(required=True)
    corpus.add_argument("--blazehttp", type=Path, metavar="DIR")
    corpus.add_argument("--corpus", type=Path, metavar="JSONL")
    parser.add_argument("-o", "--output", type=Path, help="write the lines to this file")
    parser.add_argument("--limit", type=int, help="only the first N requests of the corpus")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        cases = (
            list(blazehttp_cases(args.blazehttp))
            if args.blazehttp is not None
            else [
                LabelledRequest(f"line {n}", False, request)
                for n, request in enumerate(benign_requests(args.corpus), 1)
            ]
        )
    except (CorpusError, OSError) as exc:
        if args.json:
            print(json.dumps({"error": str(exc)}))
        else:
            print(exc, file=sys.stderr)
        return 2
    cases = cases[: args.limit] if args.limit is not None else cases
    digest = hashlib.sha256()
    count = 0
    out = args.output.open("w", encoding="utf-8") if args.output else None
    try:
        with Progress(console=Console(stderr=True), transient=True, disable=args.json) as bar:
            built = engines()
            task = bar.add_task("verdicts", total=len(built) * PASSES * len(cases))
            for label, engine in built.items():
                for line in verdict_lines(label, engine, cases):
                    digest.update(line.encode() + b"\n")
                    count += 1
                    if out is not None:
                        out.write(line + "\n")
                    if not line.startswith(" "):
                        bar.advance(task)
    finally:
        if out is not None:
            out.close()
    report = {"requests": len(cases), "lines": count, "sha256": digest.hexdigest()}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['requests']} requests, {count} lines, sha256 {report['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
