"""Wave membership by deterministic hashing of node ids with a fleet salt.

Nodes are ordered by `sha256(salt + node_id)`; wave k is the first `wave.size(n)` nodes of that
order. Waves are cumulative and sticky: a node in wave k is in every later wave, because later
waves only take a longer prefix of the same order. The same nodes are canaries for every rollout
until the salt is rotated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from failsmall.rollout.policy import Wave


def node_rank(node_id: str, salt: str) -> tuple[int, str]:
    """The node's place in the fleet order (smaller goes first). Ties break by node id."""
    digest = hashlib.sha256(f"{salt}\x00{node_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big"), node_id


def fleet_order(node_ids: Iterable[str], salt: str) -> list[str]:
    """Every node, in the order waves take them."""
    return sorted(set(node_ids), key=lambda node: node_rank(node, salt))


def wave_members(node_ids: Iterable[str], salt: str, wave: Wave, fleet_size: int) -> list[str]:
    """The nodes wave `wave` covers (cumulative), sized against `fleet_size` nodes."""
    order = fleet_order(node_ids, salt)
    return order[: wave.size(fleet_size)]
