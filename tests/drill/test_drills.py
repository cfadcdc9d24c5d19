"""Every scenario in the library, run as a drill against a real local fleet (control plane,
node processes, origin) under open-loop load, its figures checked against the targets.

Scenario durations are shortened here (the rollout policies are the shipped ones)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from failsmall.cli.up_cmd import failsmall_argv
from failsmall.drill import scenario as scenarios
from failsmall.drill.defended import local_fleet
from failsmall.drill.fleet import FleetError
from failsmall.drill.profiles import Profile, RunningFleet, factory
from failsmall.drill.report import Figures, Measured, figures
from failsmall.drill.runner import run_drill
from failsmall.drill.scenario import Scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]

ROLLED_BACK_WITHIN_S = 15.0
MAX_FAILED = 0.01


def short(name: str, **changes: Any) -> Scenario:
    """A library scenario with short waits, and `changes` to its fields."""
    base = scenarios.load(name)
    return base.model_copy(update={"warmup_s": 3, "observe_s": 1, "recover_s": 45, **changes})


async def drill(
    scenario: Scenario, profile: Profile, running: RunningFleet | None = None
) -> Figures:
    result = figures(await run_drill(scenario, factory(profile, running=running)))
    print(json.dumps({k: v for k, v in result.to_dict().items() if k != "timeline"}, indent=1))
    assert result.steady_before, "the steady state must hold before any fault"
    return result


def assert_contained(f: Figures) -> None:
    """The targets: few requests failed, the bad bundle never past the canary, the fleet back
    on the last good bundle quickly, and the steady state back after the drill."""
    assert f.failed_share <= MAX_FAILED, f"{f.failed_share:.2%} of requests failed"
    assert len(f.nodes_served_bad) <= 1, f"only the canary may serve it, not {f.nodes_served_bad}"
    if isinstance(f.time_to_roll_back, Measured):
        assert f.time_to_roll_back.seconds <= ROLLED_BACK_WITHIN_S
    assert f.steady_after


def assert_outage(f: Figures) -> None:
    """The hotwired fleet reproduces the outage: most requests fail on every node."""
    assert len(f.failed_share_by_node) == 3
    for node, share in f.failed_share_by_node.items():
        assert share > 0.5, f"{node}: only {share:.0%} failed while faulted"
    assert len(f.nodes_served_bad) == 3


FLAPPING = ["doubled", "good", "doubled", "doubled"]


def flapping() -> Scenario:
    base = short("2025-11-18")
    step = base.steps[0].model_copy(update={"sequence": FLAPPING, "cycle_s": 4})
    return base.model_copy(update={"steps": [step]})


def killswitch_now() -> Scenario:
    base = short("2025-12-05")
    raise_buffer, killswitch = base.steps
    steps = [
        raise_buffer.model_copy(update={"hold_s": 0}),
        killswitch.model_copy(update={"hold_s": 4}),
    ]
    return base.model_copy(update={"steps": steps})


async def test_2025_11_18_doubled_feature_file_is_refused_at_the_canary() -> None:
    f = await drill(flapping(), Profile.DEFAULT)
    assert_contained(f)
    assert f.bad_bundles, "the doubled file is a bad bundle (NACKed)"
    assert f.nodes_served_bad == [], "a NACKed bundle is never served"
    assert isinstance(f.time_to_detect, Measured) and f.time_to_detect.seconds <= 5


async def test_2025_11_18_hotwired_reproduces_the_outage() -> None:
    assert_outage(await drill(flapping(), Profile.HOTWIRED))


async def test_2025_12_05_killswitch_on_an_execute_rule_fails_nothing() -> None:
    f = await drill(killswitch_now(), Profile.DEFAULT)
    assert_contained(f)
    assert f.outcomes["error"] == 0
    assert len(f.nodes_served_faulty_push) == 3, "the killswitch is safe, so it completes"


async def test_2025_12_05_hotwired_reproduces_the_outage() -> None:
    assert_outage(await drill(killswitch_now(), Profile.HOTWIRED))


async def test_2024_07_19_content_with_one_field_too_many_is_refused_at_the_canary() -> None:
    f = await drill(short("2024-07-19"), Profile.DEFAULT)
    assert_contained(f)
    assert f.bad_bundles, "the 201-feature file is a bad bundle (NACKed)"
    assert f.nodes_served_bad == [], "a NACKed bundle is never served"
    refused = [e.text for e in f.events if e.kind == "gate" and "refused the bundle" in e.text]
    assert refused, "the canary's NACK fails the gate"


async def test_2024_07_19_hotwired_reproduces_the_outage() -> None:
    assert_outage(await drill(short("2024-07-19"), Profile.HOTWIRED))


async def test_2019_07_02_backtracking_refused_at_build_expensive_stopped_at_the_canary() -> None:
    f = await drill(short("2019-07-02"), Profile.DEFAULT)
    refused = [e.text for e in f.events if e.kind == "refused"]
    assert refused and "linear time" in refused[0], "the build error is shown"
    assert len(f.nodes_served_bad) <= 1, f"only the canary may serve it: {f.nodes_served_bad}"
    gate = [e.text for e in f.events if e.kind == "gate" and "p99" in e.text]
    assert gate, "the health gate's latency signal stopped it"
    assert isinstance(f.time_to_roll_back, Measured)
    assert f.steady_after


async def test_a_slow_origin_shows_as_latency_and_passes() -> None:
    scenario = short("slow-origin")
    step = scenario.steps[0].model_copy(update={"for_s": 6})
    f = await drill(scenario.model_copy(update={"steps": [step]}), Profile.DEFAULT)
    assert f.p99_ms >= 1500, "replies that need the origin wait for it"
    assert f.bad_bundles == {} and f.nodes_served_bad == []
    assert f.steady_after, "the origin's pace comes back and so does the steady state"


@pytest.mark.parametrize("name", ["bad-rule", "origin-shift", "error-storm"])
async def test_a_bad_bundle_is_stopped_at_the_canary(name: str) -> None:
    f = await drill(short(name), Profile.DEFAULT)
    assert len(f.nodes_served_bad) == 1, f"exactly the canary served it: {f.nodes_served_bad}"
    assert isinstance(f.time_to_roll_back, Measured)
    assert f.time_to_roll_back.seconds <= ROLLED_BACK_WITHIN_S
    assert f.widest_skew == 2
    assert f.steady_after


@pytest.mark.parametrize("name", ["kill-node", "stop-node"])
async def test_a_node_lost_costs_only_its_own_traffic(name: str) -> None:
    f = await drill(short(name), Profile.DEFAULT)
    others = {n: s for n, s in f.failed_share_by_node.items() if n != "edge-2"}
    assert f.failed_share_by_node["edge-2"] > 0.3, "the faulted node's share is lost"
    assert all(s <= MAX_FAILED for s in others.values()), others
    assert f.steady_after, "the node comes back (from its LKG) and serves again"


@pytest.mark.parametrize("mode", ["cut", "blackhole"])
async def test_a_node_cut_from_the_control_plane_keeps_serving(mode: str) -> None:
    scenario = short("partition")
    step = scenario.steps[0].model_copy(update={"for_s": 10, "mode": mode})
    f = await drill(scenario.model_copy(update={"steps": [step]}), Profile.DEFAULT)
    assert f.failed_share <= MAX_FAILED
    assert f.steady_after


async def test_the_fleet_keeps_serving_while_the_control_plane_is_down() -> None:
    scenario = short("control-down")
    step = scenario.steps[0].model_copy(update={"for_s": 10})
    f = await drill(scenario.model_copy(update={"steps": [step]}), Profile.DEFAULT)
    assert f.failed_share <= MAX_FAILED
    assert f.steady_after


def test_the_command_reports_as_json_and_html_from_an_edited_copy(tmp_path: Path) -> None:
    """A user copies a library scenario, edits it, and runs it through the CLI."""
    data = yaml.safe_load(scenarios.library_text("stop-node"))
    data.update(warmup_s=3, observe_s=1, recover_s=30, load={"rate": 150})
    data["steps"][0]["for_s"] = 3
    mine = tmp_path / "my-drill.yaml"
    mine.write_text(yaml.safe_dump(data))
    page = tmp_path / "report.html"
    done = subprocess.run(
        [*failsmall_argv(), "drill", str(mine), "--json", "--html", str(page)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (report,) = json.loads(done.stdout)
    assert report["profile"] == "default" and report["scenario"] == "stop-node"
    assert report["requests_lost"] > 0
    for key in ("failed_share", "time_to_detect_s", "time_to_roll_back_s", "widest_version_skew"):
        assert key in report
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html
    assert "src=" not in html and "href=" not in html, "no external assets"


async def test_a_drill_against_a_running_fleet(tmp_path: Path) -> None:
    """`--control URL`: the drill starts nothing, takes the fleet's bundle as its seed and
    sends load to the addresses the nodes report."""
    async with local_fleet(3, keep=tmp_path) as running:
        token = running.api.headers["Authorization"].removeprefix("Bearer ")
        url = str(running.api.base_url).rstrip("/")
        target = RunningFleet(url, token, tmp_path / "signing.key")
        f = await drill(short("bad-rule"), Profile.DEFAULT, target)
        assert len(f.nodes_served_bad) == 1
        assert f.steady_after
        with pytest.raises(FleetError, match="drop --control"):
            await run_drill(short("kill-node"), factory(Profile.DEFAULT, running=target))


def test_ctrl_c_rolls_the_faults_back_then_reports(tmp_path: Path) -> None:
    """SIGINT in the middle of a fault: the rollback runs (the stopped node is resumed), the
    fleet is stopped, and the report says the drill was interrupted."""
    data = yaml.safe_load(scenarios.library_text("stop-node"))
    data.update(warmup_s=3, observe_s=1, recover_s=30, load={"rate": 100})
    data["steps"][0]["for_s"] = 120
    mine = tmp_path / "long-stop.yaml"
    mine.write_text(yaml.safe_dump(data))
    process = subprocess.Popen(
        [*failsmall_argv(), "drill", str(mine)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None and process.stdout is not None
    seen: list[str] = []
    try:
        for line in process.stderr:
            seen.append(line)
            if "SIGSTOP edge-2" in line:
                process.send_signal(signal.SIGINT)
                break
        rest, out = process.stderr.read(), process.stdout.read()
        code = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    log = "".join(seen) + rest
    assert "SIGCONT edge-2" in log, log[-3000:]
    assert "rollbacks done" in log
    assert code == 1, "an interrupted drill is not a passed one"
    assert "fault phase ended early" in out and "interrupted" in out
