"""Chaos Toolkit probes of a failsmall fleet."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpx

from failsmall.cli.up_cmd import PROBE_HEADERS
from failsmall.drill.chaosfailsmall import (
    Configuration,
    FailsmallActivityError,
    Secrets,
    answer,
    control,
)

__all__ = ["error_rate", "fleet_health", "live_nodes", "rollout_state"]


def fleet_health(
    configuration: Configuration | None = None, secrets: Secrets | None = None
) -> dict[str, Any]:
    """Nodes known and live, the last good bundle, and each node's digest."""
    with control(configuration, secrets) as client:
        status = answer(client.get("/v1/status"), 200)
    nodes = status["nodes"]
    return {
        "nodes": len(nodes),
        "live": sum(1 for n in nodes if n["live"]),
        "last_good": status["last_good"],
        "digests": {n["node_id"]: n["digest"] for n in nodes},
    }


def live_nodes(configuration: Configuration | None = None, secrets: Secrets | None = None) -> int:
    """How many nodes report to the control plane."""
    return int(fleet_health(configuration, secrets)["live"])


def rollout_state(
    configuration: Configuration | None = None, secrets: Secrets | None = None
) -> str:
    """`idle`, or the state of the rollout under way."""
    with control(configuration, secrets) as client:
        rollout = answer(client.get("/v1/status"), 200)["rollout"]
    return "idle" if rollout is None else str(rollout.get("state", "unknown"))


def error_rate(
    requests: int = 60, configuration: Configuration | None = None, secrets: Secrets | None = None
) -> float:
    """The share of `requests` benign page requests, spread over the nodes, that failed
    (4xx, 5xx or no answer). Loopback nodes only; bounded to 1000 requests."""
    urls = [u for u in str((configuration or {}).get("failsmall_nodes", "")).split(",") if u]
    if not urls:
        raise FailsmallActivityError("set configuration.failsmall_nodes to the node URLs")
    for url in urls:
        host = httpx.URL(url).host
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise FailsmallActivityError(f"{url}: probes send traffic to loopback only")
    count = max(1, min(requests, 1000))
    failed = 0
    with httpx.Client(timeout=2, headers=PROBE_HEADERS) as client:
        for i in range(count):
            try:
                if client.get(urls[i % len(urls)] + "/").status_code >= 400:
                    failed += 1
            except httpx.HTTPError:
                failed += 1
    return failed / count
