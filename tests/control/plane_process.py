"""A control plane in a process of its own, for tests that kill it with SIGKILL.

    python plane_process.py DB KEY PORT

Short ticks as in `control_harness.running_plane`, and the default policies with 2 s bakes (long
enough for the test traffic to fill a gate window) and 20 extensions: a bake's extensions are
counted from the wave's start, so the seconds a killed control plane takes to restart would use
up the default two at once and pause the rollout for a person, which is not what is tested here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from control_harness import quick

from failsmall.build import read_private_key
from failsmall.cli.control_cmd import serve
from failsmall.control.plane import ControlSettings
from failsmall.rollout import NAMED_POLICIES


def main() -> int:
    db, key, port = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = ControlSettings(
        db=db,
        key=read_private_key(key),
        port=port,
        tick_s=0.2,
        dead_after_s=3.0,
        admin_token_file=db.parent / "admin.token",
        policies={
            name: dataclasses.replace(quick(policy, bake_s=2.0), max_extensions=20)
            for name, policy in NAMED_POLICIES.items()
        },
    )
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
