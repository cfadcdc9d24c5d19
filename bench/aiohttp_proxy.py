"""A naive aiohttp reverse proxy, the baseline a framework-based node would be.

Usage: python bench/aiohttp_proxy.py LISTEN_PORT ORIGIN_URL
"""

from __future__ import annotations

import sys

from aiohttp import ClientSession, TCPConnector, web

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
}


def main() -> None:
    port, origin = int(sys.argv[1]), sys.argv[2].rstrip("/")

    async def start(app: web.Application) -> None:
        app["session"] = ClientSession(connector=TCPConnector(limit=256), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await app["session"].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        session: ClientSession = request.app["session"]
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with session.request(
            request.method, origin + request.path_qs, headers=headers, data=await request.read()
        ) as upstream:
            body = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=upstream.status, body=body, headers=out)

    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
