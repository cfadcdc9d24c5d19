"""The killswitch check sends its sample along every route of the bundle: the engine inspects
routed requests only, so a sample no route takes would check nothing."""

from __future__ import annotations

from tests.engine.factory import bundle

from failsmall.control.killswitch import SAMPLE_REQUESTS, _on_every_route
from failsmall.engine import Engine, Routed


def test_every_sample_reaches_every_route() -> None:
    site = bundle(
        origins=[
            {"id": "api", "url": "http://127.0.0.1:9"},
            {"id": "web", "url": "http://127.0.0.1:10"},
        ],
        routes=[
            {"host": "api.example", "origin": "api"},
            {"host": "*", "path_prefix": "/shop/", "origin": "web"},
        ],
    )
    engine = Engine.build(site)
    state = engine.new_state(seed=0)
    samples = _on_every_route(site)
    assert len(samples) == 2 * len(SAMPLE_REQUESTS)
    reached = [engine.evaluate(sample, state).route for sample in samples]
    assert all(isinstance(route, Routed) for route in reached)
    assert {route.origin.id for route in reached if isinstance(route, Routed)} == {"api", "web"}
    assert not _on_every_route(bundle(routes=[]))
