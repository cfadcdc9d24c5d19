"""A node worker whose engine crashes the process with SIGSEGV while serving a bundle whose name
starts with `segfault`, as a faulty native extension would: no bundle crashes the real engine,
so this is the one change to a real worker (`python crashing_worker.py --config-json ...`)."""

from __future__ import annotations

import ctypes
import sys

from failsmall.engine.routing import Route, Router
from failsmall.model.bundle import Bundle
from failsmall.node.__main__ import main

_build = Router.build


class CrashingRouter(Router):
    """The engine routes each request first (`Engine.evaluate`): this router crashes there."""

    def route(self, host: str, path: str, resolved: str) -> Route:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
        return super().route(host, path, resolved)


def build(bundle: Bundle) -> Router:
    router = _build(bundle)
    return CrashingRouter(router.routes) if bundle.name.startswith("segfault") else router


if __name__ == "__main__":
    Router.build = staticmethod(build)  # type: ignore[method-assign,assignment]
    sys.exit(main())
