"""Per-request latency through the whole engine pipeline with the example config.

    python bench/engine.py [--json] [--cpu] [--iterations N] [--only NAME ...] [--profile NAME]

Measures p50/p99 for small requests (up to 8 KiB) and 1 MiB bodies, every iteration with its own
query values, session cookie, path id and body id (and, in the rows "new values", a JSON body
whose every value is new; in the row "sent again", the same body each time; in the rows "JSON
order", the order of `bench/proxy.py`'s JSON columns, with a new order id or, "distinct", a new
token in every id, name and note as in its distinct column), for the example bundle and, as the
baseline measured in the same run, an empty bundle (the pipeline's fixed cost).
Targets on a 2-core machine: GET page p50 <= 15 µs, 8 KiB JSON p50 <= 60 µs, 1 MiB JSON <= 3 ms.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import gc
import json
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from failsmall.build import load_config_dir
from failsmall.build.corpus import within_buffer
from failsmall.engine import Engine, Request
from failsmall.engine.request import RequestView
from failsmall.model import Bundle

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the proxy bench's order
from proxy import HEADERS as PROXY_HEADERS
from proxy import ORDER as ORDER_FILE

ROOT = Path(__file__).resolve().parents[1]
BROWSER = (
    ("Host", "shop.example"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-GB,en;q=0.9"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Cookie", "session=4f9a1c0e7b2d; theme=dark; _ga=GA1.2.1234567890.1700000000"),
    ("Sec-Fetch-Mode", "navigate"),
)


def big_json(batch: int | None = None) -> bytes:
    """A valid JSON document just under 1 MiB: an import of customer records, the first naming
    the import (`BODY_ID`). With a `batch` number, every value (not the field names) is one no
    other batch has: an import never seen before."""
    rows: list[dict[str, object]] = []
    size = 2
    i = 0
    tag = "" if batch is None else f"{batch}-"
    while True:
        row = {
            "id": i if batch is None else batch * 1_000_000 + i,
            "name": f"Customer {tag}{i}",
            "email": f"user{tag}{i}@example.com",
            "address": f"{i} Main Street, Springfield {tag}".rstrip(),
            "notes": f"prefers email; no calls {tag}".rstrip(),
        }
        if i == 0:
            row = {"import": BODY_ID.decode(), **row}
        size += len(json.dumps(row)) + 2
        if size > 1024 * 1024:
            return json.dumps(rows).encode()
        rows.append(row)
        i += 1


#: The id a body carries (a cart's, an import's, a form's reference, an upload's file name),
#: replaced in each iteration's body by one of its own (see `vary`): every row with a body sends
#: one it has not sent before (most of its values known), as distinct clients do.
BODY_ID = b"c0ffee00"


def cart_json(limit: int, batch: int | None = None) -> bytes:
    """A valid JSON shopping cart of as many items as fit in `limit` bytes (about 150, 300
    values): a cart id, then items with a SKU, a quantity and a note. With a `batch` number,
    its SKUs and notes are ones no other batch has."""
    items: list[dict[str, object]] = []
    body = b""
    tag = "" if batch is None else f"{batch}-"
    while True:
        n = len(items)
        items.append({"sku": f"SKU-{tag}{n}", "qty": n % 7, "note": f"gift wrap {tag}".rstrip()})
        candidate = json.dumps({"cart": BODY_ID.decode(), "items": items}).encode()
        if len(candidate) > limit:
            return body
        body = candidate


#: The JSON order of `bench/proxy.py`'s JSON columns, each "@" its token (`json_order.txt`).
ORDER = ORDER_FILE.read_text(encoding="utf-8").strip()


def order_token(i: int) -> str:
    """The token of the proxy bench's distinct order `i` (as `bench/json_body.lua` makes it)."""
    return f"{i * 2654435761 % 2**32:08x}"


def order_json(i: int) -> bytes:
    """The proxy bench's distinct order `i`: every id, name, note and path with its token."""
    return ORDER.replace("@", order_token(i)).encode()


def big_upload() -> bytes:
    payload = random.Random(7).randbytes(1024 * 1024 - 300)
    return (
        b'--xYzBoundary\r\nContent-Disposition: form-data; name="file"; '
        b'filename="photo-'
        + BODY_ID
        + b'.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        + payload
        + b"\r\n--xYzBoundary--\r\n"
    )


def requests() -> dict[str, Request]:
    form = (
        f"ref={BODY_ID.decode()}&name=O%27Brien&email=pat%40example.com&comment="
        + "nice+product+" * 150
    ).encode()
    json_8k = cart_json(8192)
    return {
        "GET page": Request(
            "GET",
            "/products/42",
            "ref=home&utm_source=mail",
            BROWSER,
            client_ip="192.0.2.44",
            host="shop.example",
        ),
        "GET api": Request(
            "GET",
            "/api/v1/orders",
            "page=2&per_page=50",
            (
                ("Host", "api.example"),
                ("User-Agent", "okhttp/4.12"),
                ("Accept", "application/json"),
                ("X-Api-Key", "k-123"),
            ),
            client_ip="192.0.2.45",
            host="api.example",
        ),
        "POST form 2 KiB": Request(
            "POST",
            "/contact",
            "",
            (*BROWSER, ("Content-Type", "application/x-www-form-urlencoded")),
            form[:2048],
            client_ip="192.0.2.46",
            host="shop.example",
        ),
        "POST JSON 8 KiB": Request(
            "POST",
            "/api/v1/cart",
            "",
            (
                ("Host", "api.example"),
                ("Content-Type", "application/json"),
                ("User-Agent", "Mozilla/5.0 (Macintosh) Safari/605.1.15"),
            ),
            json_8k,
            client_ip="192.0.2.47",
            host="api.example",
        ),
        "POST JSON order": Request(
            "POST",
            "/checkout",
            "",
            (*PROXY_HEADERS, ("Content-Type", "application/json")),
            ORDER.replace("@", BODY_ID.decode()).encode(),
            client_ip="192.0.2.50",
            host="shop.example",
        ),
        "POST 1 MiB JSON": Request(
            "POST",
            "/api/v1/import",
            "",
            (
                ("Host", "api.example"),
                ("Content-Type", "application/json"),
                ("User-Agent", "okhttp/4.12"),
            ),
            big_json(),
            client_ip="192.0.2.48",
            host="api.example",
        ),
        "POST 1 MiB upload": Request(
            "POST",
            "/upload",
            "",
            (*BROWSER, ("Content-Type", "multipart/form-data; boundary=xYzBoundary")),
            big_upload(),
            client_ip="192.0.2.49",
            host="shop.example",
        ),
    }


#: Requests whose body is made anew for each iteration, every value in it one not seen before
#: (the rows above change only the body's id, so most of its values are remembered after the
#: first): the body of iteration `i`.
FRESH_BODIES: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "POST JSON 8 KiB, new values": ("POST JSON 8 KiB", lambda i: cart_json(8192, i)),
    "POST JSON order, distinct": ("POST JSON order", order_json),
    "POST 1 MiB JSON, new values": ("POST 1 MiB JSON", big_json),
}
#: Requests whose body is the same in every iteration (with a new head each time): a client
#: sending one document again, which the WAF finds whole from its third sending.
SENT_AGAIN: dict[str, str] = {"POST 1 MiB JSON, sent again": "POST 1 MiB JSON"}


def copy_of(body: bytes, _iteration: int) -> bytes:
    """`body` as a new bytes object (its hash not computed yet)."""
    return bytes(bytearray(body))


def vary(request: Request, i: int) -> Request:
    """A distinct request per iteration: unique query values, session cookie, path id and body
    id (`BODY_ID`), so caches inside the engine see realistic, not identical, traffic."""
    query = f"{request.query}&page={i}&q=item+{i * 7919 % 100000}".lstrip("&")
    headers = tuple(
        (k, f"session={i * 2654435761 % 2**32:08x}; theme=dark") if k == "Cookie" else (k, v)
        for k, v in request.headers
    )
    path = request.path.replace("/42", f"/{i % 5000}")
    body = request.body.replace(BODY_ID, f"{i * 40503 % 2**32:08x}".encode(), 1)
    return Request(
        request.method,
        path,
        query,
        headers,
        body,
        request.body_truncated,
        request.client_ip,
        request.host,
        now=1000.0 + i,
    )


def measure(
    engine: Engine,
    request: Request,
    iterations: int,
    clock: Callable[[], int] = time.perf_counter_ns,
    bodies: Callable[[int], bytes] | None = None,
) -> list[float]:
    state = engine.new_state(seed=0)
    seen = within_buffer(request, engine.limits)
    if not isinstance(seen, Request):
        raise SystemExit(f"{request.uri}: body rejected by the bundle's buffer policy")
    for _ in range(min(200, iterations // 10 + 1)):
        engine.evaluate(seen, state)
    samples: list[float] = []
    gc.disable()
    try:
        for i in range(iterations):
            req = vary(seen, i)
            if bodies is not None:
                req = req._replace(body=bodies(i))
            start = clock()
            engine.evaluate(req, state)
            samples.append((clock() - start) / 1000)
    finally:
        gc.enable()
    return samples


def profile(engine: Engine, request: Request, iterations: int) -> int:
    """Where the time of one kind of distinct request goes: the Python calls it makes, the
    signature scan of its head alone (one C call), and cProfile's table."""
    state = engine.new_state(seed=0)
    scanner = engine.waf.scanner
    heads = [vary(request, 10**6 + i) for i in range(iterations)]
    scan_us: list[float] = []
    if scanner is not None:
        gc.disable()
        for req in heads:
            view = RequestView(req, limits=engine.limits)
            start = time.perf_counter_ns()
            scanner.inspect(view)
            scan_us.append((time.perf_counter_ns() - start) / 1000)
        gc.enable()
    profiler = cProfile.Profile()
    distinct = [vary(request, i) for i in range(iterations)]
    profiler.enable()
    for req in distinct:
        engine.evaluate(req, state)
    profiler.disable()
    stats = pstats.Stats(profiler)
    calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"Python calls per request: {calls / iterations:.1f}")
    if scan_us:
        print(f"signature scan alone (inspect, distinct heads): p50 {pct(scan_us, 0.5):.1f} µs")
    stats.sort_stats("tottime").print_stats(25)
    return 0


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="measure only this request (repeatable)"
    )
    parser.add_argument(
        "--profile",
        metavar="NAME",
        help="instead of measuring, profile this request: Python calls per request, the time "
        "of the head scan alone and the functions that take most time",
    )
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time each request by the CPU time of this thread rather than the wall clock: on a "
        "machine busy with other work, time spent waiting for the CPU is left out",
    )
    args = parser.parse_args()
    clock = time.thread_time_ns if args.cpu else time.perf_counter_ns
    known = requests()
    known |= {name: known[like] for name, (like, _) in FRESH_BODIES.items()}
    known |= {name: known[like] for name, like in SENT_AGAIN.items()}
    unknown = [n for n in (args.only or []) + [args.profile or "GET page"] if n not in known]
    if unknown:
        raise SystemExit(f"unknown request {unknown[0]!r}; choose from {', '.join(known)}")
    example = Engine.build(load_config_dir(ROOT / "examples" / "site"))
    empty = Engine.build(
        Bundle(
            limits={"waf_body_buffer": 1024 * 1024},  # type: ignore[arg-type]
            origins=example.bundle.origins,
            routes=example.bundle.routes,
        )
    )
    # A 1 MiB buffer, and the value limit scaled with it (the default suits 128 KiB).
    big_limits = {
        "waf_body_buffer": 1024 * 1024,
        "waf_max_values": 8 * example.limits.waf_max_values,
    }
    big = Engine.build(
        load_config_dir(ROOT / "examples" / "site").model_copy(
            update={"limits": example.limits.model_copy(update=big_limits)}
        )
    )
    if args.profile:
        return profile(example, known[args.profile], args.iterations)
    rows = []
    for name, request in known.items():
        if args.only and name not in args.only:
            continue
        engine = big if "MiB" in name else example
        n = max(20, args.iterations // 250) if "MiB" in name else args.iterations
        bodies = FRESH_BODIES[name][1] if name in FRESH_BODIES else None
        if name in SENT_AGAIN:  # each time a new bytes object, as a node reads a body
            bodies = functools.partial(copy_of, request.body)
        ex = measure(engine, request, n, clock, bodies)
        base = measure(empty, request, n, clock, bodies)
        rows.append(
            {
                "request": name,
                "p50_us": round(pct(ex, 0.5), 1),
                "p99_us": round(pct(ex, 0.99), 1),
                "mean_us": round(statistics.fmean(ex), 1),
                "baseline_p50_us": round(pct(base, 0.5), 1),
                "ratio_p50_to_baseline": round(pct(ex, 0.5) / pct(base, 0.5), 2),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="engine pipeline latency (example bundle vs empty bundle baseline)")
    for col in ("request", "p50 µs", "p99 µs", "mean µs", "empty-bundle p50 µs", "ratio"):
        table.add_column(col, justify="left" if col == "request" else "right")
    for r in rows:
        table.add_row(
            r["request"],
            str(r["p50_us"]),
            str(r["p99_us"]),
            str(r["mean_us"]),
            str(r["baseline_p50_us"]),
            f"{r['ratio_p50_to_baseline']}x",
        )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
