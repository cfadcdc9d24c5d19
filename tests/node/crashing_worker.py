"""A node worker whose engine crashes the process with SIGSEGV while serving a bundle whose name
starts with `segfault`, as a faulty native extension would: no bundle crashes the real engine,
so this is the one change to a real worker (`python crashing_worker.py --config-json ...`)."""

from __future__ import annotations

import ctypes
import sys
from typing import Any

from failsmall.engine import Engine
from failsmall.node.__main__ import main

_evaluate = Engine.evaluate


def evaluate(self: Engine, request: Any, state: Any) -> Any:
    if self.bundle.name.startswith("segfault"):
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return _evaluate(self, request, state)


if __name__ == "__main__":
    Engine.evaluate = evaluate  # type: ignore[method-assign]
    sys.exit(main())
