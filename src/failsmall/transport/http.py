"""The HTTP transport: nodes long-poll their channel pointer from the control plane.

Routes (served by the control plane, every one needs the node bearer token):

    GET  /v1/nodes/{id}/assignment?after=REV&timeout=S   -> 200 {"digest", "revision"}
                                                            204 when nothing newer came in S
    GET  /v1/bundles/{digest}                            -> 200 signed envelope, 404 unknown
    POST /v1/nodes/{id}/apply                            -> 202 (an ApplyReport as JSON)
    POST /v1/nodes/{id}/health                           -> 202 (a HealthReport as JSON)

`HttpNodeChannel` is the node side (aiohttp client); `HttpControlChannel` is the control side.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from enum import Enum
from typing import Any, NoReturn, assert_never

import aiohttp
from aiohttp import web

from failsmall.supervise import LoopHealth
from failsmall.transport.base import (
    ApplyReport,
    Assignment,
    BundleNotFoundError,
    HealthReport,
    NoChange,
    TransportError,
)
from failsmall.transport.board import PointerBoard
from failsmall.transport.control import ReportSink

MAX_WATCH_S = 60.0
MAX_REPORT_BYTES = 256 * 1024


class NodeAccess(Enum):
    """What a bearer token may do on a node's routes: act as that node, nothing because nobody
    knows the token (401), or nothing because the token belongs to someone else (403)."""

    ALLOWED = "allowed"
    UNKNOWN_TOKEN = "unknown_token"
    FORBIDDEN = "forbidden"


NodeTokenCheck = Callable[[str, str], NodeAccess]
"""Decides what a bearer token may do as the given node id: `check(token, node_id)`; an empty
node id asks about the routes no single node owns (fetching a bundle)."""


def fixed_node_token(expected: str) -> NodeTokenCheck:
    """A check that accepts one shared fleet token for every node."""

    def check(token: str, node_id: str) -> NodeAccess:
        if hmac.compare_digest(token.encode(), expected.encode()):
            return NodeAccess.ALLOWED
        return NodeAccess.UNKNOWN_TOKEN

    return check


class BodyTooLargeError(Exception):
    """A request body over the route's limit (413)."""


class NotJsonError(Exception):
    """A request body that is not JSON, or nested deeper than the decoder goes (400)."""


async def read_json(request: web.BaseRequest, limit: int) -> Any:
    """The request's JSON body, read up to `limit` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLargeError(f"the request body is over {limit} bytes")
    raw = bytearray()
    async for chunk in request.content.iter_any():
        raw += chunk
        if len(raw) > limit:
            raise BodyTooLargeError(f"the request body is over {limit} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, depth
        raise NotJsonError(f"the request body must be JSON: {type(exc).__name__}: {exc}") from exc


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refused(access: NodeAccess, node_id: str) -> web.Response:
    """The answer for a token that may not act as `node_id` ("" for any node)."""
    who = f"node {node_id!r}" if node_id else "a node"
    match access:
        case NodeAccess.UNKNOWN_TOKEN:
            return _json_error(
                401, f"a valid node token for {who} is required (Authorization: Bearer ...)"
            )
        case NodeAccess.FORBIDDEN | NodeAccess.ALLOWED:
            return _json_error(
                403,
                f"this token may not act as {who}: a node token acts only for the node ids its "
                "principal name matches, and other roles not at all",
            )
        case _:
            assert_never(access)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class HttpControlChannel:
    """The control side of the HTTP transport: pointers, bundles and the node-facing routes."""

    def __init__(self, node_auth: NodeTokenCheck, board: PointerBoard | None = None) -> None:
        self.board = board or PointerBoard()
        self._node_auth = node_auth
        self._bundles: dict[str, bytes] = {}
        self._sink: ReportSink | None = None

    async def start(self, sink: ReportSink) -> None:
        self._sink = sink

    async def publish_bundle(self, digest: str, envelope: bytes) -> None:
        self._bundles[digest] = envelope

    async def assign(self, node_id: str, digest: str) -> Assignment:
        if digest not in self._bundles:
            raise BundleNotFoundError(f"bundle {digest} is not published; publish it first")
        return await self.board.assign(node_id, digest)

    async def assignments(self) -> dict[str, Assignment]:
        return self.board.snapshot()

    def health(self) -> list[LoopHealth]:
        """No background loop: reports arrive on the control plane's own HTTP server."""
        return []

    async def close(self) -> None:
        """Stop taking reports and end every long-poll in flight."""
        self._sink = None
        await self.board.release()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/nodes/{node_id}/assignment", self._watch),
            web.get("/v1/bundles/{digest}", self._bundle),
            web.post("/v1/nodes/{node_id}/apply", self._apply),
            web.post("/v1/nodes/{node_id}/health", self._health),
        ]

    def _access(self, request: web.Request, node_id: str) -> NodeAccess:
        token = bearer_token(request)
        return self._node_auth(token, node_id) if token else NodeAccess.UNKNOWN_TOKEN

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        node_id = request.match_info["node_id"]
        if (access := self._access(request, node_id)) is not NodeAccess.ALLOWED:
            return _refused(access, node_id)
        try:
            after = int(request.query.get("after", "0"))
            timeout = float(request.query.get("timeout", "30"))
        except ValueError:
            return _json_error(400, "'after' must be an integer and 'timeout' a number of seconds")
        if after < 0 or not 0 <= timeout <= MAX_WATCH_S:
            return _json_error(400, f"'after' must be >= 0 and 'timeout' within 0..{MAX_WATCH_S}")
        result = await self.board.wait(node_id, after, timeout)
        match result:
            case Assignment(digest=digest, revision=revision):
                return web.json_response({"digest": digest, "revision": revision})
            case NoChange():
                return web.Response(status=204)
            case _:
                assert_never(result)

    async def _bundle(self, request: web.Request) -> web.StreamResponse:
        if (access := self._access(request, "")) is not NodeAccess.ALLOWED:
            return _refused(access, "")
        digest = request.match_info["digest"]
        envelope = self._bundles.get(digest)
        if envelope is None:
            return _json_error(404, f"no bundle with digest {digest} is published")
        return web.Response(body=envelope, content_type="application/json")

    async def _report_body(self, request: web.Request) -> dict[str, Any] | web.Response:
        node_id = request.match_info["node_id"]
        if (access := self._access(request, node_id)) is not NodeAccess.ALLOWED:
            return _refused(access, node_id)
        if self._sink is None:
            return _json_error(503, "the control plane is starting; retry shortly")
        try:
            data = await read_json(request, MAX_REPORT_BYTES)
        except BodyTooLargeError as exc:
            return _json_error(413, f"{exc}; a report is a small JSON object")
        except NotJsonError as exc:
            return _json_error(400, f"the report must be a JSON object: {exc}")
        if not isinstance(data, dict):
            return _json_error(400, "the report must be a JSON object")
        if data.get("node_id") != node_id:
            return _json_error(400, f"report node_id must be {node_id!r}, the id in the path")
        return data

    async def _apply(self, request: web.Request) -> web.Response:
        data = await self._report_body(request)
        if isinstance(data, web.Response):
            return data
        try:
            report = ApplyReport.from_dict(data)
        except (KeyError, ValueError, TypeError) as exc:
            return _json_error(400, f"not an apply report: {exc!r}")
        if self._sink is not None:
            await self._sink.on_apply(report)
        return web.json_response({"accepted": True}, status=202)

    async def _health(self, request: web.Request) -> web.Response:
        data = await self._report_body(request)
        if isinstance(data, web.Response):
            return data
        try:
            report = HealthReport.from_dict(data)
        except (KeyError, ValueError, TypeError) as exc:
            return _json_error(400, f"not a health report: {exc!r}")
        if self._sink is not None:
            await self._sink.on_health(report)
        return web.json_response({"accepted": True}, status=202)


class HttpNodeChannel:
    """The node side of the HTTP transport (implements `NodeChannel`)."""

    def __init__(self, base_url: str, token: str, request_timeout_s: float = 10.0) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._request_timeout_s = request_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers)
        return self._session

    async def _request(
        self, method: str, path: str, timeout_s: float, **kwargs: Any
    ) -> tuple[int, bytes]:
        url = self._base + path
        try:
            async with self._client().request(
                method, url, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} {url} failed: {exc!r}") from exc

    @staticmethod
    def _raise_for(status: int, body: bytes, what: str) -> NoReturn:
        if status in (401, 403):
            raise TransportError(f"{what}: the control plane rejected the node token ({status})")
        raise TransportError(f"{what}: HTTP {status}: {body[:200].decode(errors='replace')}")

    async def watch(
        self, node_id: str, after_revision: int, timeout_s: float
    ) -> Assignment | NoChange:
        timeout_s = min(max(timeout_s, 0.0), MAX_WATCH_S)
        status, body = await self._request(
            "GET",
            f"/v1/nodes/{node_id}/assignment",
            timeout_s + self._request_timeout_s,
            params={"after": str(after_revision), "timeout": f"{timeout_s:.3f}"},
        )
        if status == 204:
            return NoChange(revision=after_revision)
        if status != 200:
            self._raise_for(status, body, "watching the assignment")
        try:
            data = json.loads(body)
            return Assignment(digest=str(data["digest"]), revision=int(data["revision"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise TransportError(f"malformed assignment from the control plane: {exc!r}") from exc

    async def fetch(self, digest: str) -> bytes:
        status, body = await self._request("GET", f"/v1/bundles/{digest}", self._request_timeout_s)
        if status == 404:
            raise BundleNotFoundError(f"no bundle with digest {digest} is published")
        if status != 200:
            self._raise_for(status, body, f"fetching bundle {digest}")
        return body

    async def _post(self, path: str, payload: dict[str, Any], what: str) -> None:
        status, body = await self._request("POST", path, self._request_timeout_s, json=payload)
        if status != 202:
            self._raise_for(status, body, what)

    async def send_apply(self, report: ApplyReport) -> None:
        await self._post(f"/v1/nodes/{report.node_id}/apply", report.to_dict(), "sending apply")

    async def send_health(self, report: HealthReport) -> None:
        await self._post(f"/v1/nodes/{report.node_id}/health", report.to_dict(), "sending health")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
