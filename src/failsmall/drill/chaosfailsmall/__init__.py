"""chaosfailsmall: a Chaos Toolkit extension that drives a failsmall fleet.

Actions (`failsmall.drill.chaosfailsmall.actions`): push a signed bundle, set or clear a
killswitch, roll back the rollout under way, wait for it to end, kill -9 or stop a node's
worker, partition a node from its control plane and mend it (through the link control a local
drill fleet serves: `local_fleet(...).links_url`).
Probes (`failsmall.drill.chaosfailsmall.probes`): fleet health, rollout state, error rate.

Every function takes the experiment's `configuration` (`failsmall_control`: the control plane
URL; `failsmall_nodes`: comma-separated node proxy URLs, loopback only) and the `failsmall`
secrets (`token`: a bearer token). `experiments/` holds an example experiment.
"""

from __future__ import annotations

from typing import Any

import httpx

Configuration = dict[str, Any]
Secrets = dict[str, Any]


class FailsmallActivityError(Exception):
    """The fleet refused or could not be reached; the message says which and why."""


def control(configuration: Configuration | None, secrets: Secrets | None) -> httpx.Client:
    """A client of the control plane the experiment names."""
    url = (configuration or {}).get("failsmall_control", "")
    if not url:
        raise FailsmallActivityError("set configuration.failsmall_control to the control URL")
    token = (secrets or {}).get("token", "")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=str(url), headers=headers, timeout=60)


def answer(response: httpx.Response, expected: int) -> Any:
    if response.status_code != expected:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise FailsmallActivityError(
            f"{response.request.url.path}: {response.status_code} {message}"
        )
    return response.json()
