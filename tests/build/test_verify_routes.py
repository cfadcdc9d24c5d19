"""`verify` inspects what a node inspects: a corpus request the bundle routes nowhere is
answered 404 without a WAF pass, so it verifies nothing, and verify says so."""

from __future__ import annotations

from failsmall.build.verify import verify_bundle
from tests.engine.factory import bundle, request, waf_bundle

OOPS = {
    "id": "oops",
    "expression": 'http.request.headers["x"][0] == "a"',  # raises: no header x
    "action": {"type": "block"},
}


def test_a_request_the_bundle_does_not_route_is_a_finding_not_a_silent_pass() -> None:
    routed_elsewhere = waf_bundle(
        [OOPS],
        origins=[{"id": "api", "url": "http://127.0.0.1:9"}],
        routes=[{"host": "api.example", "origin": "api"}],
    )
    report = verify_bundle(routed_elsewhere, [request("/")])  # Host: shop.example
    assert not report.ok
    assert report.authored == ["unrouted:404"]
    [finding] = [e for e in report.errored if e.where == "route"]
    assert finding.request_index == 0 and "no route for host 'shop.example'" in finding.error
    # Routed, the same request reaches the rule, whose error verify reports.
    routed = verify_bundle(
        waf_bundle([OOPS]),
        [request("/")],
    )
    assert [e.where for e in routed.errored][:1] == ["oops"]
    assert not [e for e in routed.errored if e.where == "route"]
    assert verify_bundle(bundle(), [request("/")]).ok
