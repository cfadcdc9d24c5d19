"""Small builders for bundles and requests used across engine tests."""

from __future__ import annotations

from typing import Any

from failsmall.engine import Request
from failsmall.model import Bundle

ROUTED: dict[str, Any] = {
    "origins": [{"id": "web", "url": "http://127.0.0.1:9"}],
    "routes": [{"origin": "web"}],
}
"""Every request to one origin: the engine inspects routed requests only."""


def bundle(**fields: Any) -> Bundle:
    data: dict[str, Any] = dict(ROUTED)
    data.update(fields)
    return Bundle.model_validate(data)


def waf_bundle(rules: list[dict[str, Any]], *extra: dict[str, Any], **fields: Any) -> Bundle:
    """A bundle whose custom phase runs `rules`; `extra` rulesets are added as they are."""
    rulesets = [{"id": "entry", "rules": rules}, *extra]
    return bundle(rulesets=rulesets, phases={"http_request_firewall_custom": "entry"}, **fields)


def request(
    path: str = "/",
    *,
    method: str = "GET",
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    ip: str = "192.0.2.10",
    now: float = 1_800_000_000.0,
) -> Request:
    hdrs = (
        headers
        if headers is not None
        else {
            "Host": "shop.example",
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36",
            "Accept": "text/html",
            "Accept-Language": "en",
        }
    )
    return Request(
        method=method,
        path=path,
        query=query,
        headers=tuple(hdrs.items()),
        body=body,
        client_ip=ip,
        host=hdrs.get("Host", ""),
        now=now,
    )
