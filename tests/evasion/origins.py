"""Two real origins that say what arrived: an aiohttp application and the stdlib file server.

Each one resolves paths and parses bodies with its own, unmodified code and records what that
code found: the protected resources it served and the attack payloads its parsers delivered to
the application. An evasion test sends the same bytes straight to the origin (so the payload is
shown to be real for that origin) and through the edge (where the origin must then have seen
nothing of it).
"""

from __future__ import annotations

import contextlib
import os
import threading
import unicodedata
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from io import BufferedIOBase
from pathlib import Path
from typing import Any

from aiohttp import web

#: A SQL injection the managed ruleset blocks when it arrives plainly in a form field.
ATTACK = "1' UNION SELECT name, pass FROM accounts--"

#: The resources the edge protects: `/admin` behind a rule, `/login` behind a rate limit.
PROTECTED = ("admin", "login")


@dataclass
class Witness:
    """What an origin's own code made of the requests it received."""

    port: int = 0
    served: list[str] = field(default_factory=list)
    """Protected resources served, by name (`admin`, `login`)."""
    payloads: list[str] = field(default_factory=list)
    """Parsed values in which the application found `ATTACK`."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def app(witness: Witness) -> web.Application:
    """An aiohttp application: `GET /admin`, `/login`, and `POST /submit`, which reads its
    body the way aiohttp hands it to a handler (request bodies with `Content-Encoding` are
    decompressed by aiohttp itself; `request.json()`, `request.post()` for urlencoded and
    multipart forms) and, like applications that fold compatibility characters (Django's
    username field, Java's `Normalizer`), NFKC-normalizes the text it reads."""

    def protected(name: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            witness.served.append(name)
            return web.Response(text=f"{name} page")

        return handler

    async def submit(request: web.Request) -> web.Response:
        values: list[str] = []
        if request.content_type == "application/json":
            _leaves(await request.json(), values)
        else:
            try:
                form = await request.post()
            except UnicodeDecodeError as exc:
                return web.json_response({"error": f"the form is not UTF-8: {exc}"}, status=400)
            for name, value in form.items():
                values.append(name)
                if isinstance(value, str):
                    values.append(value)
        found = [v for v in values if ATTACK in unicodedata.normalize("NFKC", v)]
        witness.payloads.extend(found)
        return web.json_response({"fields": len(values), "attack": bool(found)})

    application = web.Application(client_max_size=16 * 1024 * 1024, client_max_fields=100_000)
    for name in PROTECTED:
        application.router.add_route("*", f"/{name}", protected(name))
    application.router.add_post("/submit", submit)
    return application


def _leaves(node: object, out: list[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            out.append(str(key))
            _leaves(value, out)
    elif isinstance(node, list):
        for value in node:
            _leaves(value, out)
    else:
        out.append(str(node))


@contextlib.asynccontextmanager
async def app_origin() -> AsyncIterator[Witness]:
    """The aiohttp application on a free loopback port."""
    witness = Witness()
    runner = web.AppRunner(app(witness), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server: Any = site._server
    witness.port = server.sockets[0].getsockname()[1]
    try:
        yield witness
    finally:
        await runner.cleanup()


class _FileHandler(SimpleHTTPRequestHandler):
    """The stdlib file server, recording which protected file it served."""

    witness: Witness

    def send_head(self) -> BufferedIOBase | None:  # type: ignore[override]
        sent: BufferedIOBase | None = super().send_head()  # type: ignore[assignment]
        if sent is not None:
            relative = os.path.relpath(self.translate_path(self.path), self.directory)
            if relative in PROTECTED:
                self.witness.served.append(relative)
        return sent

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def file_origin(root: Path) -> Iterator[Witness]:
    """`http.server` serving `root`, which holds the files `admin` and `login`, on a free
    loopback port, in a thread."""
    witness = Witness()
    root.mkdir(parents=True, exist_ok=True)
    for name in PROTECTED:
        (root / name).write_text(f"{name} page")
    handler = type("Handler", (_FileHandler,), {"witness": witness})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    witness.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="file-origin", daemon=True)
    thread.start()
    try:
        yield witness
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
