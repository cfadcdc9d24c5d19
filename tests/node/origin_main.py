"""Runs the test origin as its own process: `python origin_main.py PORT`."""

from __future__ import annotations

import sys

from aiohttp import web

from tests.node.conftest import OriginServer, origin_app

if __name__ == "__main__":
    web.run_app(
        origin_app(OriginServer()),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
    )
