"""How a bundle behaves on the nodes that serve it, in the simulator."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Behaviour:
    """Per-request rates and latency of a bundle while nodes serve it.

    `crashes`: nodes that apply it crash-loop until their guard quarantines it.
    """

    error_rate: float = 0.002
    block_rate: float = 0.02
    module_error_rate: float = 0.0
    p99_ms: float = 40.0
    crashes: bool = False


HEALTHY = Behaviour()
BLOCKS_EVERYONE = Behaviour(block_rate=1.0)
HALF_ABORTED = Behaviour(error_rate=0.5)
CRASH_LOOP = Behaviour(crashes=True)
