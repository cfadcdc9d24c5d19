"""Which node ids a token may act as on the transport routes."""

from __future__ import annotations

import pytest

from failsmall.control.auth import Principal, Role


@pytest.mark.parametrize(
    ("name", "node_id", "allowed"),
    [
        ("edge-7", "edge-7", True),
        ("edge-7", "edge-70", False),
        ("edge-7", "EDGE-7", False),
        ("edge-*", "edge-70", True),
        ("edge-*", "core-1", False),
        ("*", "anything", True),
        ("edge-7", "", True),  # routes no single node owns: fetching a bundle by digest
    ],
)
def test_a_node_token_acts_as_the_ids_its_principal_matches(
    name: str, node_id: str, allowed: bool
) -> None:
    assert Principal(name, Role.NODE, "t1").may_act_as_node(node_id) is allowed


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.KILLSWITCH])
def test_people_tokens_never_act_as_nodes(role: Role) -> None:
    assert not Principal("*", role, "t1").may_act_as_node("edge-1")
    assert not Principal("*", role, "t1").may_act_as_node("")


def test_an_admin_may_act_as_any_node() -> None:
    assert Principal("admin", Role.ADMIN, "t1").may_act_as_node("edge-1")
