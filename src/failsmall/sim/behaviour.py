"""How a bundle behaves on the nodes that serve it, in the simulator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Behaviour:
    """Per-request rates and latency of a bundle while nodes serve it.

    `crashes`: nodes that apply it crash-loop until their guard quarantines it.
    `failed_share`: the share of users' requests a node fails while it serves it (the traffic
    model's fault; a crash-looping node answers nothing, so its share is 1).
    `lost_share`: the part of `failed_share` never answered (lost, as a drill counts it).
    Latency is not modelled for users' requests: `p99_ms` is what nodes report to the gate.
    """

    error_rate: float = 0.002
    block_rate: float = 0.02
    module_error_rate: float = 0.0
    p99_ms: float = 40.0
    crashes: bool = False
    failed_share: float = 0.0
    lost_share: float = 0.0


HEALTHY = Behaviour()
BLOCKS_EVERYONE = Behaviour(block_rate=1.0, failed_share=1.0)
HALF_ABORTED = Behaviour(error_rate=0.5, failed_share=0.5)
CRASH_LOOP = Behaviour(crashes=True, failed_share=1.0, lost_share=1.0)
