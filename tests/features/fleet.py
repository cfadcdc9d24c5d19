"""A local fleet for the feature pipeline: the end-to-end fleet (control plane, edge node
processes writing access logs, the demo origin, steady probe traffic), seeded with the example
bundle through a `global` rollout, whose signed file `features publish --base` carries."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))

from control_harness import EXAMPLE, running_fleet, wait_for
from e2e_harness import RealFleet, real_fleet

from failsmall.build import write_bundle_file

__all__ = ["EXAMPLE", "FeatureFleet", "feature_fleet", "running_fleet", "wait_for"]


@dataclass
class FeatureFleet(RealFleet):
    base_file: Path = Path()  # the seeded bundle, signed


@contextlib.asynccontextmanager
async def feature_fleet(tmp_path: Path, nodes: int = 2) -> AsyncIterator[FeatureFleet]:
    async with real_fleet(tmp_path, nodes) as real:
        signed = real.sign(real.bundle())
        fleet = FeatureFleet(
            **{f.name: getattr(real, f.name) for f in dataclasses.fields(real)},
            base_file=tmp_path / "base.bundle",
        )
        write_bundle_file(signed, fleet.base_file)
        assert await fleet.seed() == signed.digest
        yield fleet
