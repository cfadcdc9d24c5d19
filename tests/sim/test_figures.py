"""The simulator reports a drill's figures, computed from its traffic model.

The hand-checked fleet: 100 nodes, 50 requests/s each, every apply taking exactly 0.2 s
(`apply_sigma=0`), health reports every second.
"""

from __future__ import annotations

import json

from typer.testing import CliRunner

from failsmall.cli.main import app
from failsmall.sim import SimSettings, run_scenario
from failsmall.sim.figures import Measured, NotMeasured
from failsmall.sim.traffic import Failing, Traffic

EXACT = SimSettings(nodes=100, seed=1, apply_sigma=0.0)


def test_bad_rule_on_the_canary_hand_checked() -> None:
    # Idle until 3.0 s, push: the canary (1% of 100 = 1 node) serves the rule that blocks
    # everyone from 3.2 s; the report round at 4.0 s fails the gate and rolls back; the canary
    # is back on v1 at 4.2 s. One node fails all its 50 requests/s for 1 s: 50 failed, out of
    # 100 nodes x 50/s x 4.2 s = 21,000 requests.
    result = run_scenario("bad-canary", EXACT)
    f = result.figures
    assert (f.requests, f.requests_failed) == (21_000, 50)
    assert f.requests_lost == 0, "blocked requests are answered"
    assert f.failed_share == 50 / 21_000
    assert f.bad_bundles == ("v2-blocks-all",)
    assert f.nodes_served_bad == 1
    assert f.time_to_detect == Measured(1.0)
    assert isinstance(f.time_to_roll_back, Measured)
    assert abs(f.time_to_roll_back.seconds - 0.2) < 1e-9
    assert f.widest_skew == 2


def test_half_aborting_bundle_fails_half_the_canarys_requests() -> None:
    f = run_scenario("fault-abort", EXACT).figures
    assert (f.requests, f.requests_failed, f.nodes_served_bad) == (21_000, 25, 1)


def test_crash_loop_fails_everything_until_quarantine() -> None:
    # The canary crash-loops from 3.2 s until its guard quarantines the bundle 3 s later.
    f = run_scenario("crash-loop", EXACT).figures
    assert (f.requests_failed, f.nodes_served_bad) == (150, 1)
    assert f.requests_lost == 150, "a crash-looping node answers nothing: every failure is lost"
    assert f.time_to_detect == Measured(3.2)


def test_refused_bundle_is_bad_but_fails_nothing() -> None:
    f = run_scenario("capacity-nack", EXACT).figures
    assert (f.requests_failed, f.nodes_served_bad, f.widest_skew) == (0, 0, 1)
    assert f.bad_bundles == ("v2-doubled",)
    assert f.time_to_roll_back == Measured(0.0)


def test_good_change_has_no_bad_bundle_to_time() -> None:
    f = run_scenario("good", EXACT).figures
    assert (f.requests, f.requests_failed, f.nodes_served_bad) == (100_000, 0, 0)
    assert isinstance(f.time_to_detect, NotMeasured)
    assert isinstance(f.time_to_roll_back, NotMeasured)


def test_traffic_counts_each_span_at_its_failing_share() -> None:
    traffic = Traffic(rate_per_node_s=10.0, nodes=4)
    down = Failing(failed=1.0, lost=1.0)
    traffic.swap(1.0, Failing(), down)  # one node answers nothing from 1 s
    traffic.join(2.0, Failing(failed=0.5))  # a fifth node joins at 2 s failing half
    traffic.leave(3.0, down)  # the silent node leaves at 3 s
    traffic.advance(4.0)
    assert traffic.requests == 10 * (4 * 2 + 5 * 1 + 4 * 1)
    assert traffic.failed == 10 * (1 * 1 + 1.5 * 1 + 0.5 * 1)
    assert traffic.lost == 10 * (1 * 1 + 1 * 1)


def test_same_seed_same_figures() -> None:
    settings = SimSettings(nodes=500, seed=7)
    first = run_scenario("flapping", settings)
    again = run_scenario("flapping", settings)
    assert first.to_dict() == again.to_dict()
    other = run_scenario("fault-abort", SimSettings(nodes=500, seed=8)).figures
    assert other != run_scenario("fault-abort", SimSettings(nodes=500, seed=7)).figures


def test_json_carries_the_figures() -> None:
    out = CliRunner().invoke(app, ["sim", "bad-canary", "--nodes", "100", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["nodes_served_bad_bundle"] == 1
    assert data["requests_failed"] > 0
    assert data["requests_lost"] == 0
    assert data["time_to_detect_s"] >= 0
    assert data["widest_version_skew"] == 2
