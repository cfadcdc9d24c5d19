"""Spellings of `/admin` and `/login` that real origins resolve to those resources: a rule
written for `/admin` and the rate limit on `/login` must hold for every one of them."""

from __future__ import annotations

import pytest

from tests.evasion.conftest import APP_HOST, BLOCKED, FILES_HOST, OVER_RATE, Edge, Sent, send
from tests.evasion.evasion import assert_edge_stops

pytestmark = pytest.mark.asyncio(loop_scope="package")

# aiohttp's router matches the percent-decoded path; the stdlib file server also resolves dot
# segments and repeated slashes (it decodes, then cleans the path like `posixpath.normpath`).
ADMIN = [
    (APP_HOST, "/%61dmin"),
    (APP_HOST, "/%61%64%6D%69%6E"),
    (APP_HOST, "/adm%69n"),
    (FILES_HOST, "/admin"),
    (FILES_HOST, "/%61dmin"),
    (FILES_HOST, "/./admin"),
    (FILES_HOST, "//admin"),
    (FILES_HOST, "/.//./admin"),
    (FILES_HOST, "/x/../admin"),
    (FILES_HOST, "/../admin"),
    (FILES_HOST, "/%2e/admin"),
    (FILES_HOST, "/x/%2e%2e/admin"),
    (FILES_HOST, "/x/..%2fadmin"),
    (FILES_HOST, "/x/%2E%2E%2F%61dmin"),
]

LOGIN = [
    (APP_HOST, "/%6cogin"),
    (APP_HOST, "/%6C%6F%67%69%6E"),
    (FILES_HOST, "/%6cogin"),
    (FILES_HOST, "/./login"),
    (FILES_HOST, "//login"),
    (FILES_HOST, "/x/../login"),
    (FILES_HOST, "/x/%2e%2e/log%69n"),
]


async def test_the_rule_for_admin_blocks_the_plain_path(edge: Edge) -> None:
    status = await assert_edge_stops(edge, Sent("GET", "/admin"), "/admin")
    assert status == BLOCKED


@pytest.mark.parametrize(("host", "target"), ADMIN)
async def test_every_spelling_of_admin_meets_the_rule_for_admin(
    edge: Edge, host: str, target: str
) -> None:
    status = await assert_edge_stops(edge, Sent("GET", target, host), "/admin")
    assert status == BLOCKED


@pytest.mark.parametrize(("case", "host", "target"), [(i, *c) for i, c in enumerate(LOGIN)])
async def test_no_spelling_of_login_escapes_its_rate_limit(
    edge: Edge, case: int, host: str, target: str
) -> None:
    client = (("X-Forwarded-For", f"203.0.113.{case + 1}"),)  # a bucket of its own
    origin = edge.origin(host)
    served = len(origin.served)
    for _ in range(2):
        assert (await send(edge.port, Sent("GET", "/login", host, client))).status == 200
    assert origin.served[served:] == ["login", "login"]
    status = await assert_edge_stops(edge, Sent("GET", target, host, client), "/login")
    assert status == OVER_RATE


async def test_other_paths_still_reach_the_origin(edge: Edge) -> None:
    for host, target in [(FILES_HOST, "/admin.txt"), (APP_HOST, "/administrator")]:
        answer = await send(edge.port, Sent("GET", target, host))
        assert answer.status == 404, target  # from the origin, which has no such resource
    elsewhere = (("X-Forwarded-For", "198.51.100.1"),)
    assert (await send(edge.port, Sent("GET", "/login", FILES_HOST, elsewhere))).status == 200
