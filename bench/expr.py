"""Rule expression evaluation: our compiled closures against the reference CEL implementation.

    python bench/expr.py [--json] [--iterations N]

For ten representative rule expressions, µs per evaluation:
- ours, on a request whose views are already computed (the expression's own cost);
- ours, on a fresh `RequestView` each time (adds computing the views the expression reads);
- the reference (`cel`) with a prebuilt `cel.Context`, and with a prebuilt dict;
- the reference including building its context from the request (what using it per request costs).
Ratios are reference / ours, measured in the same run; the per-request ratio compares the
reference with its context built from the request against ours on a fresh view.
Target: a typical rule < 1 µs.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import cel
from rich.console import Console
from rich.table import Table

from failsmall.engine.expr import Expression, compile_expression
from failsmall.engine.expr.reference import reference_activation, reference_context
from failsmall.engine.request import Request, RequestView

IP_LISTS = {
    "office": ["10.0.0.0/8", "192.168.10.0/24", "2001:db8:10::/48"],
    "known-bad": [f"203.0.113.{i}" for i in range(1, 200)] + ["198.51.100.0/24"],
}

EXPRESSIONS = {
    "path prefix": 'http.request.uri.path.startsWith("/admin")',
    "method and path": 'http.request.method == "POST" && http.request.uri.path == "/login"',
    "bot score": 'bot.score < 30 && http.request.uri.path == "/login"',
    "ip list": 'ip_in_list(ip.src, "known-bad")',
    "cidr or path": 'ip_in_cidr(ip.src, "10.0.0.0/8") || http.request.uri.path.startsWith("/int")',
    "method set, no cookie": (
        'http.request.method in ["PUT", "DELETE", "PATCH"] || !has(http.request.cookies.session)'
    ),
    "user-agent regex": (
        'http.request.headers["user-agent"].exists(ua, '
        'ua.matches("(?i)(curl|wget|python-requests|sqlmap)"))'
    ),
    "query or body": (
        'http.request.uri.query.contains("union select") || '
        'http.request.body.raw.matches("(?i)<script")'
    ),
    "all args numeric": (
        '"id" in http.request.uri.args && http.request.uri.args["id"].all(v, v.matches("^[0-9]+$"))'
    ),
    "header count": 'size(http.request.headers.names) < 3 || !("accept" in http.request.headers)',
}

REQUEST = Request(
    method="GET",
    path="/products/42",
    query="id=42&ref=home&utm_source=mail",
    headers=(
        ("Host", "shop.example"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0"),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Accept-Language", "en-GB,en;q=0.9"),
        ("Cookie", "session=4f9a1c0e7b2d; theme=dark"),
    ),
    body=b"name=pat&comment=nice+product",
    client_ip="192.0.2.44",
    host="shop.example",
)


def new_view() -> RequestView:
    return RequestView(REQUEST, bot_score=87, signature_hits=frozenset())


def per_call_us(function: Callable[[], Any], iterations: int, budget_s: float) -> float:
    """Best of five runs of `iterations` calls (each run also stops at `budget_s` / 5), in µs."""
    best = float("inf")
    for _ in range(5):
        gc.collect()
        gc.disable()
        try:
            deadline = time.perf_counter() + budget_s / 5
            calls = 0
            start = time.perf_counter_ns()
            while calls < iterations:
                for _ in range(100):
                    function()
                calls += 100
                if time.perf_counter() > deadline:
                    break
            elapsed = time.perf_counter_ns() - start
        finally:
            gc.enable()
        best = min(best, elapsed / calls / 1000)
    return best


def measure(name: str, expression: Expression, iterations: int) -> dict[str, Any]:
    warm = new_view()
    if expression.evaluate(warm) != _reference_result(expression, warm):
        raise SystemExit(f"{name}: ours and the reference disagree; fix that before timing")
    program = cel.compile(expression.reference_source)
    context = reference_context(expression, warm)
    activation = reference_activation(expression, warm)
    budget = 2.0
    return {
        "expression": name,
        "source": expression.source,
        "ours_us": per_call_us(lambda: expression.evaluate(warm), iterations, budget),
        "ours_fresh_view_us": per_call_us(
            lambda: expression.evaluate(new_view()), iterations, budget
        ),
        "reference_context_us": per_call_us(lambda: program.execute(context), iterations, budget),
        "reference_dict_us": per_call_us(lambda: program.execute(activation), iterations, budget),
        "reference_per_request_us": per_call_us(
            lambda: program.execute(reference_context(expression, new_view())),
            max(iterations // 20, 100),
            budget,
        ),
    }


def _reference_result(expression: Expression, view: RequestView) -> Any:
    return cel.compile(expression.reference_source).execute(reference_activation(expression, view))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--iterations", type=int, default=20_000, help="calls per timing run")
    args = parser.parse_args(argv)
    rows = [
        measure(name, compile_expression(source, IP_LISTS), args.iterations)
        for name, source in EXPRESSIONS.items()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="rule expression evaluation, µs per call (best of 5)")
    table.add_column("expression")
    table.add_column("ours", justify="right")
    table.add_column("ours, fresh view", justify="right")
    table.add_column("cel, Context", justify="right")
    table.add_column("cel, dict", justify="right")
    table.add_column("cel, per request", justify="right")
    table.add_column("Context / ours", justify="right")
    table.add_column("dict / ours", justify="right")
    table.add_column("per request: cel / ours", justify="right")
    for row in rows:
        ours = row["ours_us"]
        table.add_row(
            row["expression"],
            f"{ours:.2f}",
            f"{row['ours_fresh_view_us']:.2f}",
            f"{row['reference_context_us']:.2f}",
            f"{row['reference_dict_us']:.2f}",
            f"{row['reference_per_request_us']:.1f}",
            f"{row['reference_context_us'] / ours:.1f}x",
            f"{row['reference_dict_us'] / ours:.1f}x",
            f"{row['reference_per_request_us'] / row['ours_fresh_view_us']:.1f}x",
        )
    console = Console()
    console.print(table)
    console.print(
        "ours: the expression on a request whose views are computed; fresh view: plus computing "
        "the views it reads. cel per request: building the reference's Context from the request, "
        "then executing; compare it with ours on a fresh view."
    )
    typical = sorted(row["ours_us"] for row in rows)[len(rows) // 2]
    console.print(f"median of ours: {typical:.2f} µs per evaluation (target: under 1 µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
