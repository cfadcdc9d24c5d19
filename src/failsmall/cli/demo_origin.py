"""The demo origin `failsmall up` puts behind the edge: a tiny shop and a JSON API."""

from __future__ import annotations

import json

from aiohttp import web

PAGE = """<!doctype html><title>shop.example</title>
<h1>shop.example</h1><p>Served by the demo origin, through a failsmall edge node.</p>
"""


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def _static(request: web.Request) -> web.Response:
    return web.Response(
        text="console.log('hello from the origin');",
        content_type="application/javascript",
        headers={"Cache-Control": "public, max-age=3600"},
    )


async def _api(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(
        text=json.dumps({"path": request.path, "method": request.method, "received": len(body)}),
        content_type="application/json",
    )


def demo_origin_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/static/{name:.*}", _static)
    app.router.add_route("*", "/api/{rest:.*}", _api)
    app.router.add_route("*", "/{rest:.*}", _page)
    return app


async def start_demo_origin(host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve the demo origin; returns the runner (to clean up) and the bound port."""
    runner = web.AppRunner(demo_origin_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, int(runner.addresses[0][1])
