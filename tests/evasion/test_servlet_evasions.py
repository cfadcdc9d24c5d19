"""Servlet spellings of `/admin` and `/login` (path parameters, `..;`), which Tomcat resolves
to those files: through the edge, the rule for `/admin` and the rate limit on `/login` hold.

Tomcat's own answer shows what it resolved: the file's content comes back only when it served
that file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from tests.evasion.conftest import BLOCKED, OVER_RATE, Sent, edge_bundle_fields, running_edge, send
from tests.evasion.servlet import page, running_tomcat

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="package")]


@dataclass(frozen=True)
class ServletEdge:
    port: int
    tomcat_port: int


@pytest_asyncio.fixture(scope="module", loop_scope="package")
async def servlet_edge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServletEdge]:
    root = tmp_path_factory.mktemp("servlet")
    with running_tomcat(root / "tomcat") as url:
        async with running_edge(root / "node", edge_bundle_fields(url, url)) as port:
            yield ServletEdge(port, int(url.rsplit(":", 1)[1]))


async def assert_tomcat_served_only_directly(edge: ServletEdge, request: Sent, name: str) -> int:
    direct = await send(edge.tomcat_port, request)
    assert (direct.status, direct.body) == (200, page(name)), (
        f"Tomcat itself does not serve {name} for {request.target!r} "
        f"(it answered {direct.status}): this case proves nothing"
    )
    through = await send(edge.port, request)
    assert through.body != page(name), f"the WAF passed {request.target!r} to Tomcat's {name}"
    return through.status


ADMIN = [
    "/admin;jsessionid=0123456789ABCDEF",
    "/admin/..;/admin",
    "/x/..;/admin",
    "/.;/admin",
    "/x/..;a=b/%61dmin",
    "/;/admin;x=1",
]
LOGIN = ["/login;jsessionid=1", "/x/..;/login", "/%6cogin;a"]


async def test_tomcat_serves_the_plain_paths_and_the_rule_blocks_admin(
    servlet_edge: ServletEdge,
) -> None:
    request = Sent("GET", "/admin")
    assert await assert_tomcat_served_only_directly(servlet_edge, request, "admin") == BLOCKED


@pytest.mark.parametrize("target", ADMIN)
async def test_servlet_spellings_of_admin_meet_the_rule(
    servlet_edge: ServletEdge, target: str
) -> None:
    request = Sent("GET", target)
    assert await assert_tomcat_served_only_directly(servlet_edge, request, "admin") == BLOCKED


@pytest.mark.parametrize(("case", "target"), list(enumerate(LOGIN)))
async def test_servlet_spellings_of_login_meet_its_rate_limit(
    servlet_edge: ServletEdge, case: int, target: str
) -> None:
    client = (("X-Forwarded-For", f"203.0.113.{100 + case}"),)
    for _ in range(2):
        answer = await send(servlet_edge.port, Sent("GET", "/login", headers=client))
        assert (answer.status, answer.body) == (200, page("login"))
    request = Sent("GET", target, headers=client)
    assert await assert_tomcat_served_only_directly(servlet_edge, request, "login") == OVER_RATE
