"""A labelled traffic generator: browsers (people), and curl/python clients, headless browsers,
scanners and credential stuffers (bots), each with the headers, header order and request rate
its kind sends, with the noise real traffic has (browsers without Accept-Language, bots that
claim a browser's User-Agent).

It yields requests as the engine sees them, with the client's rate and the true label. The
features of each request are read with the engine's own feature tests (`feature_values`), so
the rows it writes into a table are the values a node would have logged. `send` replays them
to a node over a real socket, labelled by request id, for ingest from the access log."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from failsmall.engine.bot import LoadedFeature, user_agent_class
from failsmall.engine.request import Request, RequestView
from failsmall.model.bot import Feature, feature_from_key

GENERATOR_ID_PREFIX = "gen"


class ClientKind(StrEnum):
    BROWSER = "browser"
    CURL = "curl"
    PYTHON = "python"
    HEADLESS = "headless"
    SCANNER = "scanner"
    CREDENTIAL_STUFFER = "stuffer"


HUMAN_KINDS = frozenset({ClientKind.BROWSER})

# The share of each kind in the generated mix (people are most of the traffic).
DEFAULT_MIX: dict[ClientKind, float] = {
    ClientKind.BROWSER: 0.70,
    ClientKind.CURL: 0.06,
    ClientKind.PYTHON: 0.08,
    ClientKind.HEADLESS: 0.06,
    ClientKind.SCANNER: 0.04,
    ClientKind.CREDENTIAL_STUFFER: 0.06,
}

# The features a table learns from: those of the example site's file and some more.
CANDIDATE_KEYS: tuple[str, ...] = (
    "ua:browser",
    "ua:curl",
    "ua:python",
    "ua:go",
    "ua:java",
    "ua:headless",
    "ua:scanner",
    "ua:empty",
    "ua:other",
    "hdr:accept-language",
    "nohdr:accept-language",
    "hdr:sec-fetch-mode",
    "hdr:sec-ch-ua",
    "hdr:cookie",
    "hdr:referer",
    "nohdr:accept",
    "nohdr:accept-encoding",
    "accept-any",
    "order:host,user-agent,accept",
    "rate:5",
    "rate:20",
    "rate:100",
)

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15"
)
HEADLESS = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/131.0 Safari/537.36"
PATHS = ("/", "/products", "/products/42", "/cart", "/search", "/api/items", "/static/app.js")
SCAN_PATHS = ("/.env", "/wp-login.php", "/admin", "/.git/config", "/phpmyadmin/", "/backup.zip")


@dataclass(frozen=True, slots=True)
class LabelledRequest:
    kind: ClientKind
    request: Request
    rate: float  # the client's requests per second, as a node's rate tracker would see it

    @property
    def is_bot(self) -> bool:
        return self.kind not in HUMAN_KINDS


def candidate_features(keys: Sequence[str] = CANDIDATE_KEYS) -> list[Feature]:
    return [feature_from_key(k) for k in keys]


def generate(
    count: int, seed: int = 0, mix: dict[ClientKind, float] | None = None
) -> Iterator[LabelledRequest]:
    """`count` requests from a seeded mix of clients: the same seed, the same traffic."""
    rng = random.Random(seed)
    shares = mix or DEFAULT_MIX
    kinds, weights = list(shares), list(shares.values())
    for _ in range(count):
        kind = rng.choices(kinds, weights)[0]
        headers, path, method, rate = _client(kind, rng)
        request = Request(
            method=method,
            path=path,
            headers=tuple(headers),
            host="shop.example",
            client_ip=f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}",
        )
        yield LabelledRequest(kind, request, rate)


def feature_values(features: Sequence[Feature], request: Request, rate: float) -> tuple[int, ...]:
    """Each feature's value (0 or 1) with the engine's own tests."""
    loaded = [LoadedFeature.load(f) for f in features]
    return _values(loaded, request, rate)


def _values(
    loaded: Sequence[LoadedFeature],
    request: Request,
    rate: float,
    ua_classes: dict[str, str] | None = None,
) -> tuple[int, ...]:
    view = RequestView(request)
    agent = view.user_agent
    known = ua_classes if ua_classes is not None else {}
    ua_class = known.get(agent)
    if ua_class is None:
        ua_class = known[agent] = user_agent_class(agent)
    return tuple(int(f.present(view, rate, ua_class)) for f in loaded)


def table_rows(
    requests: Iterator[LabelledRequest], features: Sequence[Feature]
) -> Iterator[tuple[int | str, ...]]:
    """Rows for a feature table: values, label (1 bot), labelled_by."""
    loaded = [LoadedFeature.load(f) for f in features]
    ua_classes: dict[str, str] = {}  # the generator's user agents are a few strings
    for item in requests:
        values = _values(loaded, item.request, item.rate, ua_classes)
        yield (*values, int(item.is_bot), f"generator:{item.kind.value}")


def _client(kind: ClientKind, rng: random.Random) -> tuple[list[tuple[str, str]], str, str, float]:
    host = ("Host", "shop.example")
    path = rng.choice(PATHS)
    match kind:
        case ClientKind.BROWSER:
            headers = [host, ("User-Agent", rng.choice((CHROME, FIREFOX, SAFARI)))]
            headers.append(("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"))
            if rng.random() < 0.9:
                headers.append(("Accept-Language", rng.choice(("en-US,en;q=0.9", "de", "fr"))))
            headers.append(("Accept-Encoding", "gzip, deflate, br"))
            if rng.random() < 0.8:
                headers.append(("Sec-Fetch-Mode", "navigate"))
            if rng.random() < 0.6:
                headers.append(("Sec-CH-UA", '"Chromium";v="131"'))
            if rng.random() < 0.7:
                headers.append(("Cookie", "session=abc"))
            if rng.random() < 0.6:
                headers.append(("Referer", "https://shop.example/"))
            rate = rng.uniform(2, 40) if rng.random() < 0.08 else rng.uniform(0.05, 4)
            return headers, path, "GET", rate
        case ClientKind.CURL:
            agent = rng.choice(("curl/8.5.0", "Wget/1.21", "curl/7.88.1"))
            if rng.random() < 0.15:
                agent = CHROME  # a script that copies a browser's User-Agent
            return (
                [host, ("User-Agent", agent), ("Accept", "*/*")],
                path,
                "GET",
                rng.uniform(0.1, 8),
            )
        case ClientKind.PYTHON:
            agent = rng.choice(("python-requests/2.32", "aiohttp/3.9", "python-httpx/0.27"))
            headers = [host, ("User-Agent", agent), ("Accept-Encoding", "gzip, deflate")]
            headers.append(("Accept", "*/*"))
            if rng.random() < 0.2:
                headers.append(("Cookie", "session=stolen"))
            return headers, path, "GET", rng.uniform(0.5, 30)
        case ClientKind.HEADLESS:
            agent = HEADLESS if rng.random() < 0.6 else CHROME
            headers = [host, ("User-Agent", agent), ("Accept", "text/html,*/*;q=0.8")]
            if rng.random() < 0.5:
                headers.append(("Accept-Language", "en-US"))
            headers.append(("Accept-Encoding", "gzip, deflate, br"))
            if rng.random() < 0.5:
                headers.append(("Sec-Fetch-Mode", "navigate"))
            return headers, path, "GET", rng.uniform(1, 15)
        case ClientKind.SCANNER:
            agent = rng.choice(("sqlmap/1.8", "Nikto/2.5", "nuclei", "Mozilla/5.0 zgrab/0.x", ""))
            headers = [host, ("User-Agent", agent)]
            if rng.random() < 0.5:
                headers.append(("Accept", "*/*"))
            return headers, rng.choice(SCAN_PATHS), "GET", rng.uniform(5, 120)
        case ClientKind.CREDENTIAL_STUFFER:
            agent = rng.choice((CHROME, FIREFOX, "python-requests/2.32", "Go-http-client/1.1"))
            headers = [("User-Agent", agent), host, ("Accept", "*/*")]
            if rng.random() < 0.3:
                headers.append(("Accept-Language", "en-US"))
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
            return headers, "/login", "POST", rng.uniform(15, 150)
        case _:
            raise AssertionError(f"unknown client kind {kind}")


def request_id(item: LabelledRequest, n: int, prefix: str = GENERATOR_ID_PREFIX) -> str:
    """`gen-bot-scanner-17`: the label travels in the request id, which the node logs."""
    label = "bot" if item.is_bot else "human"
    return f"{prefix}-{label}-{item.kind.value}-{n}"


def raw_request(item: LabelledRequest, n: int, prefix: str = GENERATOR_ID_PREFIX) -> bytes:
    request = item.request
    lines = [f"{request.method} {request.path} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    lines.append(f"X-Request-Id: {request_id(item, n, prefix)}")
    body = b"user=alice&password=hunter2" if request.method == "POST" else b""
    if body:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Sent:
    """What `send` got: responses, and connections that failed (refused, reset, timed out)."""

    answered: int = 0
    failed: int = 0


async def send(
    host: str,
    port: int,
    items: Sequence[LabelledRequest],
    *,
    start: int = 0,
    id_prefix: str = GENERATOR_ID_PREFIX,
) -> Sent:
    """Send each request on its own connection (sources 127.0.0.x, one per client kind, so the
    node's per-client rate sees kinds apart)."""
    sent = Sent()
    kinds = list(ClientKind)
    for n, item in enumerate(items, start):
        local = f"127.0.0.{10 + kinds.index(item.kind)}" if host.startswith("127.") else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(local, 0) if local else None), 5
            )
        except (OSError, TimeoutError):
            sent.failed += 1
            continue
        try:
            writer.write(raw_request(item, n, id_prefix))
            await writer.drain()
            if await asyncio.wait_for(reader.read(), 10):
                sent.answered += 1
            else:
                sent.failed += 1
        except (OSError, TimeoutError):
            sent.failed += 1
        finally:
            writer.close()
    return sent
