"""The origin behind a drill's fleet, as its own process: `python -m failsmall.drill.origin PORT`
serves the demo shop and API (the one `failsmall up` uses) on 127.0.0.1:PORT."""

from __future__ import annotations

import sys

from aiohttp import web

from failsmall.cli.demo_origin import demo_origin_app


def main(argv: list[str]) -> None:
    if len(argv) != 1 or not argv[0].isdigit():
        sys.exit("usage: python -m failsmall.drill.origin PORT")
    web.run_app(demo_origin_app(), host="127.0.0.1", port=int(argv[0]), print=None, access_log=None)


if __name__ == "__main__":
    main(sys.argv[1:])
