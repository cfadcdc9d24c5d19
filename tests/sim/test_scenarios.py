"""Each simulated scenario holds its key property at 1,000 nodes, deterministically."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from failsmall.cli.main import app
from failsmall.sim import (
    SCENARIOS,
    SimSettings,
    SimulationError,
    UnknownScenarioError,
    run_scenario,
)

SETTINGS = SimSettings(nodes=1000, seed=1)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_holds(name: str) -> None:
    result = run_scenario(name, SETTINGS)
    failed = [c for c in result.checks if not c.holds]
    assert not failed, failed
    assert result.checks


def test_good_change_completes_through_every_wave() -> None:
    result = run_scenario("good", SETTINGS)
    (record,) = result.rollouts
    assert record.final_state == "completed"
    assert record.canary_size == 10
    assert record.ever_ran == 1000
    mixes = [row.serving.get("v2", 0) for row in result.timeline]
    assert {10, 100, 500, 1000} <= set(mixes)
    assert mixes == sorted(mixes), "the new bundle only ever spreads"


def test_bad_change_reaches_only_the_canary_and_is_rolled_back_fast() -> None:
    (record,) = run_scenario("bad-canary", SETTINGS).rollouts
    assert record.final_state == "rolled_back"
    assert record.ever_assigned == record.canary_size == 10
    assert record.max_running == 10
    assert 0 <= record.time_to_restore_s <= 5.0
    assert "block+challenge rate" in record.reason


def test_capacity_refusal_means_no_engine_ever_ran_it() -> None:
    (record,) = run_scenario("capacity-nack", SETTINGS).rollouts
    assert record.ever_ran == 0
    assert "refused the bundle" in record.reason


def test_crash_loop_is_caught_at_the_canary() -> None:
    (record,) = run_scenario("crash-loop", SETTINGS).rollouts
    assert record.final_state == "rolled_back"
    assert record.ever_ran == record.canary_size


def test_killswitch_is_expedited_but_canary_first() -> None:
    killswitch = run_scenario("killswitch", SETTINGS)
    good = run_scenario("good", SETTINGS)
    (ks,) = killswitch.rollouts
    assert (ks.change_class, ks.policy) == ("killswitch", "expedited")
    assert ks.canary_size == 10
    assert ks.duration_s < good.rollouts[0].duration_s / 2
    first_change = next(row for row in killswitch.timeline if row.serving.get("v1+ks", 0))
    assert first_change.serving["v1+ks"] <= 10


def test_flapping_generator_never_gets_a_doubled_file_into_an_engine() -> None:
    result = run_scenario("flapping", SETTINGS)
    states = [(r.label, r.final_state) for r in result.rollouts]
    assert states == [
        ("ff2", "completed"),
        ("ff3-doubled", "rolled_back"),
        ("ff4", "completed"),
        ("ff5-doubled", "rolled_back"),
        ("ff6", "completed"),
        ("ff7-doubled", "rolled_back"),
    ]
    assert all(r.ever_ran == 0 for r in result.rollouts if "doubled" in r.label)


def test_no_traffic_pauses_for_a_person() -> None:
    (record,) = run_scenario("inconclusive", SETTINGS).rollouts
    assert record.final_state == "paused"
    assert record.ever_assigned == 10
    assert record.duration_s == pytest.approx(15.0)


def test_same_seed_same_run_other_seed_other_run() -> None:
    first = run_scenario("partition", SimSettings(nodes=300, seed=7))
    again = run_scenario("partition", SimSettings(nodes=300, seed=7))
    other = run_scenario("partition", SimSettings(nodes=300, seed=8))
    assert first.to_dict() == again.to_dict()
    assert first.to_dict() != other.to_dict()


def test_unknown_scenario_is_a_clear_error() -> None:
    with pytest.raises(UnknownScenarioError, match="choose one of good, bad-canary"):
        run_scenario("meteor", SETTINGS)


def test_cli_reports_json_and_exit_codes() -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["sim", "bad-canary", "--nodes", "200", "--seed", "3", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["held"] is True
    assert data["rollouts"][0]["final_state"] == "rolled_back"
    assert data["rollouts"][0]["ever_assigned"] == 2
    table = runner.invoke(app, ["sim", "good", "--nodes", "200"])
    assert table.exit_code == 0
    assert "nodes per bundle" in table.output
    assert "completed" in table.output
    unknown = runner.invoke(app, ["sim", "meteor"])
    assert unknown.exit_code == 2
    assert "no scenario named 'meteor'" in unknown.output


def test_an_empty_fleet_is_refused() -> None:
    with pytest.raises(SimulationError, match="at least one node"):
        run_scenario("good", SimSettings(nodes=0))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_holds_at_5000_nodes(name: str) -> None:
    result = run_scenario(name, SimSettings(nodes=5000, seed=1))
    assert result.held, [c for c in result.checks if not c.holds]
