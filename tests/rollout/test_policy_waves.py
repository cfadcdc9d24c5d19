"""Policies and wave membership: canary first, sticky, deterministic, sized as declared."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from failsmall.rollout import (
    CONTENT,
    EXPEDITED,
    GLOBAL,
    LOGIC,
    ChangeClass,
    Policy,
    PolicyError,
    UnknownPolicyError,
    Wave,
    fleet_order,
    policy_for,
    policy_named,
    wave_members,
)


def test_each_class_has_its_policy_and_global_is_never_chosen() -> None:
    chosen = {policy_for(c).name for c in ChangeClass}
    assert chosen == {"logic", "content", "expedited"}
    assert policy_named("global") is GLOBAL
    assert [w.fraction for w in GLOBAL.waves] == [1.0]
    with pytest.raises(UnknownPolicyError, match="choose one of content, expedited, global"):
        policy_named("yolo")


def test_expedited_is_faster_with_the_same_gates_and_a_canary() -> None:
    assert EXPEDITED.gate == LOGIC.gate
    assert EXPEDITED.waves[0].name == "canary"
    assert [w.fraction for w in EXPEDITED.waves] == [w.fraction for w in LOGIC.waves]
    assert sum(w.bake_s for w in EXPEDITED.waves) < sum(w.bake_s for w in CONTENT.waves)
    assert sum(w.bake_s for w in CONTENT.waves) <= sum(w.bake_s for w in LOGIC.waves)
    assert LOGIC.waves[0].bake_s == 5.0
    assert EXPEDITED.waves[0].bake_s == 2.0


@pytest.mark.parametrize(
    ("fleet", "canary"), [(1, 1), (3, 1), (99, 1), (100, 1), (101, 2), (5000, 50)]
)
def test_canary_is_one_node_or_one_percent(fleet: int, canary: int) -> None:
    assert LOGIC.waves[0].size(fleet) == canary
    assert LOGIC.waves[-1].size(fleet) == fleet


@pytest.mark.parametrize(
    ("waves", "problem"),
    [
        ((), "no waves"),
        ((Wave("a", 0.5, 1, 1), Wave("b", 0.1, 1, 1), Wave("c", 1.0, 1, 1)), "less than the wave"),
        ((Wave("a", 0.5, 1, 1),), "whole fleet"),
        ((Wave("a", 0.0, 1, 1), Wave("b", 1.0, 1, 1)), "not in"),
        ((Wave("a", 0.1, 0, 1), Wave("b", 1.0, 1, 1)), "at least one node"),
        ((Wave("a", 1.0, 1, -1),), "negative bake"),
    ],
)
def test_inconsistent_policies_are_refused(waves: tuple[Wave, ...], problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        Policy(name="custom", waves=waves)


def test_policy_round_trips_through_a_dict() -> None:
    assert Policy.from_dict(LOGIC.to_dict()) == LOGIC


node_ids = st.sets(st.text("abcdef0123456789-", min_size=1, max_size=12), min_size=1, max_size=300)
salts = st.text(min_size=0, max_size=10)


@given(node_ids, salts)
def test_waves_are_sticky_cumulative_and_sized(nodes: set[str], salt: str) -> None:
    previous: set[str] = set()
    for wave in LOGIC.waves:
        members = wave_members(nodes, salt, wave, len(nodes))
        assert len(members) == wave.size(len(nodes))
        assert len(set(members)) == len(members)
        assert previous <= set(members)
        previous = set(members)
    assert previous == nodes


@given(node_ids, salts, st.randoms(use_true_random=False))
def test_order_is_deterministic_whatever_the_input_order(
    nodes: set[str], salt: str, rng: object
) -> None:
    shuffled = sorted(nodes)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fleet_order(shuffled, salt) == fleet_order(sorted(nodes), salt)


@given(node_ids, st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=8))
def test_a_node_joining_or_leaving_does_not_reshuffle_the_others(
    nodes: set[str], extra: str, salt: str
) -> None:
    before = fleet_order(nodes, salt)
    after = fleet_order(nodes | {extra}, salt)
    assert [n for n in after if n != extra] == [n for n in before if n != extra]


def test_rotating_the_salt_changes_the_canaries() -> None:
    nodes = {f"edge-{i:04d}" for i in range(1000)}
    canary = LOGIC.waves[0]
    first = wave_members(nodes, "salt-1", canary, len(nodes))
    assert first == wave_members(nodes, "salt-1", canary, len(nodes))
    rotated = wave_members(nodes, "salt-2", canary, len(nodes))
    assert len(rotated) == len(first) == 10
    assert set(rotated) != set(first)
