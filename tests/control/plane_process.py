"""A control plane in a process of its own, for tests that kill it with SIGKILL.

    python plane_process.py DB KEY PORT [--nats URL] [--dead-after S]

Short ticks as in `control_harness.running_plane`, and the default policies with 2 s bakes (long
enough for the test traffic to fill a gate window) and 20 extensions: a bake's extensions are
counted from the wave's start, so the seconds a killed control plane takes to restart would use
up the default two at once and pause the rollout for a person, which is not what is tested here.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from pathlib import Path

from control_harness import quick

from failsmall.build import read_private_key
from failsmall.cli.control_cmd import serve
from failsmall.control.plane import ControlSettings
from failsmall.rollout import NAMED_POLICIES


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("key", type=Path)
    parser.add_argument("port", type=int)
    parser.add_argument("--nats", default="")
    parser.add_argument("--dead-after", type=float, default=3.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = ControlSettings(
        db=args.db,
        key=read_private_key(args.key),
        port=args.port,
        transport="nats" if args.nats else "http",
        nats_servers=[args.nats] if args.nats else [],
        tick_s=0.2,
        dead_after_s=args.dead_after,
        admin_token_file=args.db.parent / "admin.token",
        policies={
            name: dataclasses.replace(quick(policy, bake_s=2.0), max_extensions=20)
            for name, policy in NAMED_POLICIES.items()
        },
    )
    return asyncio.run(serve(settings))


if __name__ == "__main__":
    raise SystemExit(main())
