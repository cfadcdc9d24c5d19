"""The WAF's slowest requests, evaluated again and again: a driver for a profiler.

    python bench/waf_slowest.py --blazehttp DIR [--runs N] [--json] NAME...

Each NAME is a request file of the blazehttp corpus (github.com/chaitin/blazehttp, GPL-3.0;
`DIR` is its `testcases` directory, never copied into this repository; only the cases whose
first directory name begins with 0-7 are read), as `bench/waf_tail.py` lists its slowest. Each
is evaluated `--runs` times with a fresh engine state (no memo from an earlier run), and the
best and median engine time (CPU time of the thread) of each is printed. Run it under
`perf record -g` to see where the time of those requests goes.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from failsmall.build.corpus import BodyRejected, CorpusError, within_buffer
from failsmall.engine import Engine
from failsmall.managed.measure import managed_bundle
from waf_tail import corpus_requests, no_corpus_message, refuse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--blazehttp", type=Path, help="the blazehttp `testcases` directory")
    parser.add_argument("--runs", type=int, default=50, help="evaluations of each request")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("names", nargs="+", help="request file names (as waf_tail lists them)")
    args = parser.parse_args(argv)
    console = Console(stderr=args.json)
    if args.blazehttp is None or not args.blazehttp.is_dir():
        return refuse(console, args.json, no_corpus_message(args.blazehttp))
    try:
        by_name = dict(corpus_requests(args.blazehttp))
    except CorpusError as exc:
        return refuse(console, args.json, str(exc))
    missing = [name for name in args.names if name not in by_name]
    if missing:
        # Names as typed, shown as text (`ascii` spells out control characters).
        message = f"not in the corpus's 0-7 half: {', '.join(ascii(name) for name in missing)}"
        return refuse(console, args.json, message)
    engine = Engine.build(managed_bundle())
    rows: list[dict[str, object]] = []
    for name in args.names:
        seen = within_buffer(by_name[name], engine.limits)
        if isinstance(seen, BodyRejected):
            rows.append({"request": name, "rejected": True})
            continue
        times: list[float] = []
        for _ in range(args.runs):
            state = engine.new_state(seed=0)
            gc.disable()
            started = time.thread_time_ns()
            engine.evaluate(seen, state)
            times.append((time.thread_time_ns() - started) / 1000)
            gc.enable()
        rows.append(
            {
                "request": name,
                "best_us": round(min(times), 1),
                "median_us": round(statistics.median(times), 1),
            }
        )
    if args.json:
        print(json.dumps({"ok": True, "runs": args.runs, "requests": rows}))
        return 0
    table = Table(title=f"engine time over {args.runs} runs each")
    for column in ("request", "best µs", "median µs"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["request"]), str(row.get("best_us", "rejected")), str(row.get("median_us", ""))
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
