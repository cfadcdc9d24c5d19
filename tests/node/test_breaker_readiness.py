"""A module whose circuit breaker opens makes the node say so: /readyz, metrics, its log."""

from __future__ import annotations

import logging

import httpx
import pytest

from failsmall.model import ModuleName, ModuleSettings, RateLimit
from tests.node.conftest import Keys, OriginServer, StartNode, WatchDir, ready_node

# A rate limit whose expression fails on every request without the header: the module raises.
FAILING = [
    RateLimit(id="rl", expression='http.request.headers["x"][0] == "1"', requests=1, period_s=1)
]


@pytest.mark.parametrize(
    ("while_open", "ready_status", "served"), [("fail_closed", 503, 503), ("fail_open", 200, 200)]
)
async def test_an_open_breaker_is_loud(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
    caplog: pytest.LogCaptureFixture,
    while_open: str,
    ready_status: int,
    served: int,
) -> None:
    settings = ModuleSettings.model_validate(
        {"breaker_failures": 3, "breaker_cooldown_s": 300, "while_open": while_open}
    )
    node = await ready_node(
        start_node,
        watch,
        keys,
        origin,
        rate_limits=FAILING,
        modules={ModuleName.RATELIMIT: settings},
    )
    admin = f"http://127.0.0.1:{node.admin_port}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{admin}/readyz")).status_code == 200
        for _ in range(3):  # fail open per request: the origin answers
            assert (await client.get(f"http://127.0.0.1:{node.port}/hello")).status_code == 200
        got = await client.get(f"http://127.0.0.1:{node.port}/hello")
        assert got.status_code == served
        ready = await client.get(f"{admin}/readyz")
        metrics = (await client.get(f"{admin}/metrics")).text
    assert ready.status_code == ready_status
    assert ready.text.startswith("degraded: ratelimit circuit breaker open")
    assert f"({while_open}, 1 trips)" in ready.text
    assert 'failsmall_breaker_state{module="ratelimit",state="open"} 1.0' in metrics
    assert 'failsmall_breaker_trips_total{module="ratelimit"} 1.0' in metrics
    with caplog.at_level(logging.WARNING):
        report = node.agent.health_report()
    # The control plane (and so `failsmall status`) hears of the open breaker too.
    assert any(line.startswith("ratelimit circuit breaker open") for line in report.degraded)
    assert any("circuit breaker opened after 3 failures" in r.getMessage() for r in caplog.records)
