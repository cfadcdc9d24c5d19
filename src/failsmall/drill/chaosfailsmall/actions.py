"""Chaos Toolkit actions on a failsmall fleet (through the control plane's HTTP API, the
nodes' admin endpoints and the drill's link control)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from failsmall.drill.chaosfailsmall import (
    Configuration,
    FailsmallActivityError,
    Secrets,
    answer,
    control,
)
from failsmall.drill.chaosfailsmall.probes import live_nodes

__all__ = [
    "clear_killswitch",
    "kill_node_worker",
    "mend_node",
    "partition_node",
    "push_bundle",
    "resume_node_worker",
    "roll_back",
    "set_killswitch",
    "stop_node_worker",
    "wait_for_live_nodes",
    "wait_for_rollout",
]


def push_bundle(
    path: str, configuration: Configuration | None = None, secrets: Secrets | None = None
) -> dict[str, Any]:
    """Push a signed bundle envelope file; its rollout starts with the policy of its class."""
    with control(configuration, secrets) as client:
        result: dict[str, Any] = answer(
            client.post("/v1/bundles", content=Path(path).read_bytes()), 202
        )
        return result


def set_killswitch(
    rule: str,
    reason: str,
    state: str = "disabled",
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Switch a rule off (or to log only) through the fleet's killswitch path."""
    with control(configuration, secrets) as client:
        body = {"rule": rule, "state": state, "reason": reason}
        result: dict[str, Any] = answer(client.post("/v1/killswitches", json=body), 202)
        return result


def clear_killswitch(
    rule: str,
    reason: str,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> dict[str, Any]:
    """Lift a rule's killswitch. A rule with no killswitch in the current bundle is already
    what this action asks for (the switch was never set, or a rollback took it away), so that
    is a success that says so: as an experiment's rollback, this action converges."""
    with control(configuration, secrets) as client:
        current = answer(client.get("/v1/killswitches"), 200)
        if rule not in {str(entry.get("rule")) for entry in current}:
            return {"rule": rule, "cleared": False, "note": "no killswitch set on this rule"}
        response = client.post(f"/v1/killswitches/{rule}/clear", json={"reason": reason})
        result: dict[str, Any] = answer(response, 202)
        return result


def roll_back(
    reason: str, configuration: Configuration | None = None, secrets: Secrets | None = None
) -> dict[str, Any]:
    """Roll back the rollout under way."""
    with control(configuration, secrets) as client:
        result: dict[str, Any] = answer(
            client.post("/v1/rollout/rollback", json={"reason": reason}), 200
        )
        return result


def wait_for_rollout(
    timeout_s: float = 120,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> str:
    """Wait until no rollout is under way; returns how the latest one ended."""
    deadline = time.monotonic() + timeout_s
    with control(configuration, secrets) as client:
        while time.monotonic() < deadline:
            status = answer(client.get("/v1/status"), 200)
            if status["rollout"] is None:
                recent = status.get("recent_rollouts") or [{}]
                return str(recent[0].get("state", "none"))
            time.sleep(0.25)
    raise FailsmallActivityError(f"a rollout is still under way after {timeout_s:g} s")


def wait_for_live_nodes(
    count: int,
    timeout_s: float = 60,
    configuration: Configuration | None = None,
    secrets: Secrets | None = None,
) -> int:
    """Wait until at least `count` nodes report to the control plane (after a partition is
    mended or a worker restarted); returns how many do."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = live_nodes(configuration, secrets)
        if live >= count:
            return live
        if time.monotonic() > deadline:
            raise FailsmallActivityError(
                f"only {live} nodes report to the control plane after {timeout_s:g} s, not {count}"
            )
        time.sleep(0.25)


def kill_node_worker(admin_url: str) -> int:
    """kill -9 the worker behind a node's admin endpoint (its supervisor starts another, which
    boots from its last-known-good bundle). Returns the pid killed. Loopback nodes only."""
    pid = _worker_pid(admin_url)
    os.kill(pid, signal.SIGKILL)
    return pid


def stop_node_worker(admin_url: str, seconds: float) -> int:
    """SIGSTOP the worker behind a node's admin endpoint for `seconds` (at most 600), then
    SIGCONT it, whatever happens meanwhile. Returns its pid. Loopback nodes only."""
    if not 0 <= seconds <= 600:
        raise FailsmallActivityError(f"seconds must lie in 0..600, not {seconds}")
    pid = _worker_pid(admin_url)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    return pid


def resume_node_worker(pid: int) -> int:
    """SIGCONT a stopped worker (a rollback for an interrupted `stop_node_worker`)."""
    os.kill(pid, signal.SIGCONT)
    return pid


def partition_node(
    links_url: str, node_id: str, mode: str = "cut", seconds: float | None = None
) -> dict[str, Any]:
    """Cut (or black-hole, `mode="blackhole"`) the transport between a node and its control
    plane, through the link control a local drill fleet serves at `links_url`. With `seconds`
    (at most 600), mend it after that long, whatever happens meanwhile; without, the link stays
    cut until `mend_node`. Returns the link's state as the link control last reported it."""
    if mode not in ("cut", "blackhole"):
        raise FailsmallActivityError(f"mode must be cut or blackhole, not {mode!r}")
    if seconds is not None and not 0 <= seconds <= 600:
        raise FailsmallActivityError(f"seconds must lie in 0..600, not {seconds}")
    state = _set_link(links_url, node_id, mode)
    if seconds is None:
        return state
    try:
        time.sleep(seconds)
    finally:
        state = _set_link(links_url, node_id, "mended")
    return state


def mend_node(links_url: str, node_id: str) -> dict[str, Any]:
    """Let the transport between a node and its control plane through again (a rollback for
    `partition_node`; mending a link that is not cut changes nothing)."""
    return _set_link(links_url, node_id, "mended")


def _set_link(links_url: str, node_id: str, state: str) -> dict[str, Any]:
    _require_loopback(links_url, "only a fleet on this machine (loopback) can be partitioned")
    try:
        response = httpx.post(
            f"{links_url.rstrip('/')}/links/{node_id}", json={"state": state}, timeout=10
        )
    except httpx.HTTPError as exc:
        raise FailsmallActivityError(
            f"cannot reach the link control at {links_url}: {exc}"
        ) from exc
    result: dict[str, Any] = answer(response, 200)
    return result


def _require_loopback(url: str, message: str) -> None:
    if httpx.URL(url).host not in ("127.0.0.1", "localhost", "::1"):
        raise FailsmallActivityError(message)


def _worker_pid(admin_url: str) -> int:
    _require_loopback(admin_url, "only a node on this machine (loopback) can be signalled")
    described = answer(httpx.get(f"{admin_url.rstrip('/')}/config", timeout=5), 200)
    return int(described["pid"])
