"""`failsmall sim --compare`: every built-in policy over the same fault, drawn as a PNG."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from failsmall.cli.main import app
from failsmall.rollout import NAMED_POLICIES
from failsmall.sim import SimSettings
from failsmall.sim.compare import FLEET, UnknownFaultError, compare_policies
from failsmall.sim.figures import Measured
from failsmall.sim.plot import trade_off

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_compare_writes_a_png_with_one_point_per_policy(tmp_path: Path) -> None:
    png = tmp_path / "trade-off.png"
    out = CliRunner().invoke(
        app, ["sim", "--compare", "--nodes", "1000", "--png", str(png), "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [p["policy"] for p in data["policies"]] == list(NAMED_POLICIES)
    assert _png_size(png.read_bytes()) == (1100, 480)
    by_policy = {p["policy"]: p for p in data["policies"]}
    # Staged policies stop the fault at the 1% canary; the global push reaches everyone.
    assert by_policy["logic"]["fault"]["nodes_served_bad_bundle"] <= 10
    assert by_policy["global"]["fault"]["nodes_served_bad_bundle"] > 900
    reach = {name: p["time_to_reach_fleet_s"] for name, p in by_policy.items()}
    assert reach["global"] < reach["expedited"] < reach["content"] < reach["logic"]


def test_the_picture_has_one_point_per_policy_in_each_panel() -> None:
    points = compare_policies(SimSettings(nodes=500, seed=3), "fault-abort")
    figure = trade_off(points, "test")
    for axes in figure.axes:
        (scatter,) = axes.collections
        assert len(scatter.get_offsets()) == len(NAMED_POLICIES)


def test_compare_is_deterministic_for_a_seed() -> None:
    settings = SimSettings(nodes=500, seed=5)
    first = compare_policies(settings, "crash-loop")
    assert first == compare_policies(settings, "crash-loop")
    assert all(isinstance(p.reach, Measured) for p in first)


def test_unknown_fault_is_refused() -> None:
    with pytest.raises(UnknownFaultError, match="choose one of"):
        compare_policies(SimSettings(nodes=10), "nope")
    out = CliRunner().invoke(app, ["sim", "--compare", "--fault", "nope", "--json"])
    assert out.exit_code == 2
    assert "bad-canary" in out.output


def test_scenario_or_compare_is_needed() -> None:
    out = CliRunner().invoke(app, ["sim", "--json"])
    assert out.exit_code == 2
    assert "--compare" in out.output


@pytest.mark.slow
def test_compare_on_330_sites_of_100_nodes(tmp_path: Path) -> None:
    png = tmp_path / "fleet.png"
    out = CliRunner().invoke(app, ["sim", "--compare", "--png", str(png), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["nodes"] == FLEET == 33_000
    by_policy = {p["policy"]: p["fault"] for p in data["policies"]}
    assert by_policy["logic"]["nodes_served_bad_bundle"] <= 330
    assert by_policy["global"]["nodes_served_bad_bundle"] > 30_000
    assert _png_size(png.read_bytes()) == (1100, 480)


def test_a_scenario_and_compare_together_are_refused() -> None:
    out = CliRunner().invoke(app, ["sim", "good", "--compare", "--json"])
    assert out.exit_code == 2
    assert "--fault" in out.output
