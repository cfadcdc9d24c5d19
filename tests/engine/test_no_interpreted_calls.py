"""The compiled engine evaluates a request without running one interpreted Python function.

mypyc compiles the request path (pyproject.toml's `[tool.failsmall]`), but a compiled module
still runs interpreted code where it calls what mypyc does not compile: a named tuple's or a
dataclass's generated `__new__`/`__init__`, a module left out of the list, a lambda kept in a
table. Each such call costs the interpreter's frame, about as much as the rest of a small
module's work. `sys.setprofile` sees exactly those calls (compiled functions make no frame),
so this counts them over requests of the kinds the benchmarks send, after a warm-up: distinct
browser GETs, the same GET again, distinct JSON orders, a form, and an unrouted host.
"""

from __future__ import annotations

import gc
import sys
from collections import Counter
from types import FrameType

import pytest

from failsmall.engine import Engine, Request
from failsmall.managed.measure import managed_bundle
from failsmall.model import Bundle, Origin, Route

BROWSER = (
    ("host", "shop.example"),
    ("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
    ("accept", "text/html"),
    ("accept-language", "en"),
)


def engine_of(managed: bool) -> Engine:
    origin = Origin(id="web", url="http://127.0.0.1:1")
    bundle = (managed_bundle(1) if managed else Bundle()).model_copy(
        update={"origins": [origin], "routes": [Route(host="shop.example", origin="web")]}
    )
    return Engine.build(Bundle.model_validate(bundle.model_dump()))


def traffic(n: int) -> list[Request]:
    """`n` requests of each kind, every one with its own values where the kind has any."""
    made: list[Request] = []
    for i in range(n):
        token = f"{i * 2654435761 % 2**32:08x}"
        cookie = ("cookie", f"session={token}; theme=dark")
        query = f"ref=home&page={i % 40}&q=item+{i * 7919 % 100000}"
        order = (
            f'{{"order":"ORD-{token}","customer":{{"email":"alex.{token}@shop.example"}},'
            f'"items":[{{"sku":"SKU-{token}-1","qty":1,"note":"wrap item {token}"}}]}}'
        ).encode()
        made += [
            Request("GET", f"/products/{i}", query, (*BROWSER, cookie), b"", host="shop.example"),
            Request("GET", "/", "", BROWSER, b"", host="shop.example"),
            Request(
                "POST",
                "/checkout",
                "",
                (*BROWSER, ("content-type", "application/json")),
                order,
                host="shop.example",
            ),
            Request(
                "POST",
                "/login",
                "",
                (*BROWSER, ("content-type", "application/x-www-form-urlencoded")),
                f"user=alex{token}&remember=1".encode(),
                host="shop.example",
            ),
            Request("GET", "/", "", BROWSER, b"", host="elsewhere.example"),
        ]
    return made


@pytest.mark.parametrize("managed", [True, False], ids=["managed ruleset", "empty bundle"])
def test_a_request_runs_no_interpreted_function(managed: bool) -> None:
    engine = engine_of(managed)
    state = engine.new_state(seed=0)
    warm_up, measured = traffic(20), traffic(40)[20 * 5 :]
    for request in warm_up:
        engine.evaluate(request, state)
    calls: Counter[str] = Counter()

    def count(frame: FrameType, event: str, _arg: object) -> None:
        if event == "call":
            code, made = frame.f_code, frame.f_locals.get("_cls") or frame.f_locals.get("self")
            of = f" of {made.__name__ if isinstance(made, type) else type(made).__name__}"
            calls[f"{code.co_filename}:{code.co_firstlineno} {code.co_qualname}{of}"] += 1

    verdicts = []
    gc.disable()  # a collection would run the callbacks others registered (hypothesis has one)
    sys.setprofile(count)
    try:
        for request in measured:
            verdicts.append(engine.evaluate(request, state))
    finally:
        sys.setprofile(None)
        gc.enable()
    assert len({v.decision for v in verdicts}) >= 2, "the traffic is routed and unrouted"
    assert not calls, f"interpreted calls in {len(measured)} requests: {calls.most_common(8)}"
