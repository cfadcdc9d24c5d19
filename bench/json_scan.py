"""The JSON body scan alone (`ValueScanner.scan_json`), split into its parts, for a profiler.

    python bench/json_scan.py [--json] [--bodies N] [--rounds R] [--only NAME ...]

Scans the 8 KiB cart and the 1 MiB import of `bench/engine.py` with the example bundle's
scanner and limits and its 8 MiB memo: either one body again and again (its values remembered
after the first), or N bodies each with values of its own (its SKUs, notes, names, e-mails,
addresses and ids unseen), R rounds over them. Each row gives the CPU time per body of scanning
the body's text alone, its fields alone (names and values), and both (as the engine does).
Run it under `perf record -D 25000` (the delay skips the bundle's compilation) to see where a
value's time goes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from failsmall.build import load_config_dir
from failsmall.engine import Engine
from failsmall.engine.native import Memo
from failsmall.engine.signatures.scanner import MEMO_BYTES
from failsmall.model.traffic import Limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import ROOT, big_json, cart_json

#: The tag of the body every other body is made from by replacing it (much faster than
#: building each body anew, so the profile is the scan's).
TAG = 99999


def cart_bodies(count: int) -> list[bytes]:
    template = cart_json(8192, TAG)
    return [template.replace(f"{TAG}-".encode(), f"{i:05d}-".encode()) for i in range(count)]


def import_bodies(count: int) -> list[bytes]:
    template = big_json(TAG)
    return [
        template.replace(f"{TAG}-".encode(), f"{i:05d}-".encode()).replace(
            f'"id": {TAG}'.encode(), f'"id": 1{i:05d}'.encode()
        )
        for i in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bodies", type=int, default=2000, help="bodies of 8 KiB (1 MiB: /200)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", action="append", metavar="NAME", help="measure only this row")
    args = parser.parse_args()
    engine = Engine.build(load_config_dir(ROOT / "examples" / "site"))
    scanner = engine.waf.scanner
    values = scanner._values if scanner is not None else None
    if scanner is None or values is None:
        raise SystemExit("the example bundle has no signature scanner: nothing to measure")
    text_bit, names_bit, values_bit = scanner._text_bit, scanner._names_bit, scanner._values_bit
    big_limits = engine.limits.model_copy(
        update={"waf_max_values": 8 * engine.limits.waf_max_values}
    )
    small_count, big_count = args.bodies, max(2, args.bodies // 200)
    # each row: its bodies, and one to scan first (for new values, one of none of the bodies)
    carts, imports = cart_bodies(small_count + 1), import_bodies(big_count + 1)
    rows: list[tuple[str, bytes, list[bytes], Limits]] = [
        ("8 KiB cart, same", carts[0], carts[:1] * small_count, engine.limits),
        ("8 KiB cart, new values", carts[-1], carts[:-1], engine.limits),
        ("1 MiB import, same", imports[0], imports[:1] * big_count, big_limits),
        ("1 MiB import, new values", imports[-1], imports[:-1], big_limits),
    ]
    parts = {
        "text": (text_bit, 0, 0),
        "fields": (0, names_bit, values_bit),
        "both": (text_bit, names_bit, values_bit),
    }
    results = []
    for name, first, bodies, limits in rows:
        if args.only and name not in args.only:
            continue
        texts = [body.decode("utf-8", errors="replace") for body in bodies]
        row: dict[str, object] = {"body": name}
        for part, bits in parts.items():
            memo = Memo(MEMO_BYTES)
            scan_args = (
                limits.waf_max_values,
                limits.waf_max_body_depth,
                limits.waf_max_transformed_chars,
                limits.waf_max_values,
                limits.waf_max_transformed_chars,
            )
            for _ in range(2):  # the memo stores a value on its second offer
                values.scan_json(set(), memo, first, first.decode(), *bits, *scan_args)
            total = 0
            for _ in range(args.rounds):
                for body, text in zip(bodies, texts, strict=True):
                    start = time.thread_time_ns()
                    values.scan_json(set(), memo, body, text, *bits, *scan_args)
                    total += time.thread_time_ns() - start
            row[f"{part}_us"] = round(total / len(bodies) / args.rounds / 1000, 1)
        results.append(row)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = Table(title="scan_json alone, CPU µs per body (example bundle, 8 MiB memo)")
    for column in ("body", "text µs", "fields µs", "both µs"):
        table.add_column(column, justify="left" if column == "body" else "right")
    for r in results:
        table.add_row(str(r["body"]), str(r["text_us"]), str(r["fields_us"]), str(r["both_us"]))
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
