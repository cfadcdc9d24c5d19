"""A node worker whose engine crashes the process with SIGSEGV while serving a bundle whose name
starts with `segfault`, as a faulty native extension would: no bundle crashes the real engine,
so this is the one change to a real worker (`python crashing_worker.py --config-json ...`)."""

from __future__ import annotations

import ctypes
import sys
from dataclasses import replace

from failsmall.engine import Engine
from failsmall.engine.routing import Route, Router
from failsmall.model import Capacities
from failsmall.model.bundle import Bundle
from failsmall.node import agent
from failsmall.node.__main__ import main


class CrashingRouter(Router):
    """The engine routes each request first (`Engine.evaluate`): this router crashes there."""

    def route(self, host: str, path: str, resolved: str) -> Route:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
        return super().route(host, path, resolved)


class CrashingEngines:
    """Builds engines where the node's agent does: a `segfault` bundle's with the router above."""

    @staticmethod
    def build(
        bundle: Bundle, capacities: Capacities | None = None, reuse: Engine | None = None
    ) -> Engine:
        engine = Engine.build(bundle, capacities, reuse=reuse)
        if not bundle.name.startswith("segfault"):
            return engine
        return replace(engine, router=CrashingRouter(engine.router.routes))


if __name__ == "__main__":
    agent.Engine = CrashingEngines  # type: ignore[attr-defined,assignment]
    sys.exit(main())
