"""The drill's parts on their own: scenarios, bundle changes, feature files, the hotwired
stand-ins, the open-loop load generator against a real server, and the report's figures."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from aiohttp import web

from failsmall.cli.up_cmd import PROBE_HEADERS, demo_bundle, example_dir
from failsmall.drill import scenario as scenarios
from failsmall.drill.changes import changed, with_feature_file
from failsmall.drill.features import FeatureFileError, feature_files
from failsmall.drill.fleet import Serving
from failsmall.drill.hotwired.parts import PreallocatedBot, PreFixKillswitch
from failsmall.drill.load import Answer, OpenLoop, Outcome
from failsmall.drill.page import render
from failsmall.drill.record import Recorder
from failsmall.drill.report import Measured, NotMeasured, figures
from failsmall.drill.runner import DrillRun
from failsmall.drill.scenario import BlockEveryone, BodyBuffer, DeadOrigin, Hypothesis, Pattern
from failsmall.engine import Engine, Request, RequestView
from failsmall.model import Bundle, Capacities, capacity_problems
from failsmall.model.envelope import bundle_data
from failsmall.node.serving import short_digest
from failsmall.transport.natsd import free_port


def seed() -> Bundle:
    return demo_bundle(example_dir(), 9)


def test_every_built_in_scenario_parses() -> None:
    names = scenarios.library()
    assert {"2025-11-18", "2025-12-05", "bad-rule", "origin-shift", "kill-node"} <= set(names)
    for name in names:
        assert scenarios.load(name).name == name


def test_a_bad_scenario_gets_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: x\nsteps:\n  - type: push\n    change: {type: no_such_change}\n")
    with pytest.raises(scenarios.ScenarioError, match="steps"):
        scenarios.load(str(path))
    with pytest.raises(scenarios.ScenarioError, match="built in"):
        scenarios.load("no-such-scenario")


def test_changes_make_the_bundle_they_name() -> None:
    base = seed()
    assert changed(
        base, BodyBuffer(type="body_buffer", bytes=1 << 20), 1
    ).limits.waf_body_buffer == (1 << 20)
    blocking = changed(base, BlockEveryone(type="block_everyone"), 1)
    assert blocking.ruleset("site-custom").rules[0].expression == "true"
    dead = changed(base, DeadOrigin(type="dead_origin", origin="web"), 4321)
    assert next(o for o in dead.origins if o.id == "web").url == "http://127.0.0.1:4321"


def test_a_pattern_change_adds_log_rules_at_the_top() -> None:
    pattern = r"""(["'])(?:.*=.*)\1"""
    bundle = changed(seed(), Pattern(type="pattern", pattern=pattern, rules=3), dead_port=9)
    added = bundle.ruleset("site-custom").rules[:3]
    assert [r.id for r in added] == ["drill-pattern-1", "drill-pattern-2", "drill-pattern-3"]
    assert all(r.action.type == "log" for r in added)
    assert '.matches("([\\"\'])(?:.*=.*)\\\\1")' in added[0].expression


def test_the_doubled_feature_file_passes_node_capacity_and_the_good_one_does_not() -> None:
    base = seed()
    files = feature_files(120, 200)
    assert files.good.slots == 120 and files.doubled.slots == 240
    names = [f.name for f in files.doubled.features]
    assert len(set(names)) == len(names), "the doubled file still parses"
    node = Capacities(bot_feature_slots=200)
    good = with_feature_file(base, files.good)
    doubled = with_feature_file(base, files.doubled, "doubled")
    assert capacity_problems(good, node) == []
    assert capacity_problems(doubled, node), "a node must see the doubled file as over capacity"
    assert with_feature_file(good, files.good) == good, "the same file gives the same bundle"
    with pytest.raises(FeatureFileError, match="replays nothing; set `seed_features` above 100"):
        feature_files(60, 200)


def test_the_preallocated_bot_raises_past_its_capacity() -> None:
    files = feature_files(120, 200)
    view = RequestView(Request("GET", "/", headers=(("user-agent", "curl/8"),)))
    PreallocatedBot(files.good, 200).score(view)
    with pytest.raises(IndexError):
        PreallocatedBot(files.doubled, 200).score(view)


def test_the_pre_fix_killswitch_fails_requests_its_execute_rule_matches() -> None:
    data = bundle_data(seed())
    data["overrides"] = [
        {"rule": "run-failsmall-managed", "state": "disabled", "reason": "drill", "author": "t"}
    ]
    bundle = Bundle.model_validate(data)
    killswitch = PreFixKillswitch(bundle)
    assert killswitch.killed == {"run-failsmall-managed"}
    engine = Engine.build(killswitch.engine_bundle(bundle))
    verdict = engine.evaluate(
        Request("GET", "/", headers=tuple(PROBE_HEADERS.items())), engine.new_state(seed=0)
    )
    with pytest.raises(AttributeError):
        killswitch.read_results(verdict)
    # The shipped engine: the same killswitch is a rule state, and nothing fails.
    shipped = Engine.build(bundle)
    ok = shipped.evaluate(
        Request("GET", "/", headers=tuple(PROBE_HEADERS.items())), shipped.new_state(seed=0)
    )
    assert not ok.errored


async def test_open_loop_load_keeps_its_rate_and_counts_a_stall_as_latency_and_loss() -> None:
    """A server that stalls for a while: requests due meanwhile are still sent on time, their
    latency runs from when they were due, and those past the timeout are lost."""
    stalled_until = 0.0

    async def handler(request: web.Request) -> web.Response:
        delay = stalled_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return web.Response(text="ok", headers={"X-Failsmall-Bundle": "0123456789ab"})

    app = web.Application()
    app.router.add_get("/{p:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    answers: list[Answer] = []
    try:
        load = OpenLoop(
            lambda: [("n1", "127.0.0.1", port)],
            rate=100,
            timeout_s=0.5,
            max_in_flight=1000,
            max_requests=200,
            max_duration_s=10,
            sink=answers.append,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(load.run(stop))
        await asyncio.sleep(0.5)
        stalled_until = time.monotonic() + 0.8
        await task
    finally:
        await runner.cleanup()
    assert len(answers) == 200, "every request due is sent and accounted for"
    dues = sorted(a.due for a in answers)
    assert dues[-1] - dues[0] == pytest.approx(1.99, abs=0.01), "sent at the fixed rate"
    lost = [a for a in answers if a.outcome is Outcome.LOST]
    slow = [a for a in answers if a.outcome is Outcome.OK and a.latency_s > 0.2]
    assert lost, "requests stalled past the timeout are lost"
    assert slow, "requests answered after the stall carry the stall in their latency"
    assert {a.bundle for a in answers if a.outcome is Outcome.OK} == {"0123456789ab"}
    assert {a.bundle for a in lost} == {""}


def _run_with(events: list[tuple[float, str, str, str]], digest: str) -> DrillRun:
    """A recorded drill: 3 nodes, 10 s at 10 req/s each; node edge-1 serves `digest` from 3 s
    to 6 s and fails every request then."""
    scenario = scenarios.load("bad-rule")
    recorder = Recorder(Hypothesis())
    for second in range(10):
        for node in ("edge-1", "edge-2", "edge-3"):
            bad = node == "edge-1" and 3 <= second < 6
            for i in range(10):
                outcome = Outcome.BLOCKED if bad else Outcome.OK
                recorder.answer(Answer(node, second + i / 10, second + i / 10 + 0.01, outcome, 403))
        for tick in range(4):
            t = second + tick / 4
            for node in ("edge-1", "edge-2", "edge-3"):
                on = digest if node == "edge-1" and 3 <= t < 6 else "sha256:seed"
                recorder.view(node, Serving(on), t)
    for t, kind, text, about in events:
        recorder.event(kind, text, t, about)
    run = DrillRun(scenario, "default", recorder, "sha256:seed", ["edge-1", "edge-2", "edge-3"])
    run.suspects[digest] = "blocks-everyone"
    run.faults_from, run.rollbacks_done, run.ended = 2.0, 8.0, 10.0
    run.steady_before, run.recovered_at = True, 9.0
    return run


def test_figures_from_a_recorded_drill() -> None:
    bad = "sha256:bad"
    run = _run_with(
        [
            (3.0, "push", "admin push: pushed blocks-everyone", bad),
            (4.0, "gate", "gate gate_fail: block rate", bad),
            (4.0, "rollback", "gate rollback: health gate failed", bad),
            (6.2, "rollback", "rollout rolled_back: every returned node confirmed", bad),
        ],
        bad,
    )
    f = figures(run)
    assert f.requests == 300
    assert f.failed_share == pytest.approx(30 / 300)
    assert f.nodes_served_bad == ["edge-1"]
    assert f.bad_bundles == {bad: "blocks-everyone"}
    assert f.time_to_detect == Measured(1.0)
    assert isinstance(f.time_to_roll_back, Measured)
    assert f.time_to_roll_back.seconds == pytest.approx(2.2)
    assert f.widest_skew == 2
    assert f.failed_share_by_node["edge-1"] > 0.4 and f.failed_share_by_node["edge-2"] == 0
    data = f.to_dict()
    assert data["nodes_served_bad_bundle"] == ["edge-1"]
    assert data["timeline"]["per_second"][4]["blocked"] == 10


def _canary_blip(named: bool) -> DrillRun:
    """Three nodes answering 40 requests a second on the seed, their views sampled every
    0.25 s; edge-2 serves a bad bundle from 3.0 s to 3.15 s, between two samples, and its
    answers name it when `named`."""
    seed, bad = "sha256:" + "5e" * 32, "sha256:" + "ba" * 32
    nodes = ["edge-1", "edge-2", "edge-3"]
    recorder = Recorder(Hypothesis())
    for step in range(400):
        t, node = step / 40, nodes[step % 3]
        on_bad = node == "edge-2" and 3.0 <= t < 3.15
        outcome, status = (Outcome.BLOCKED, 403) if on_bad else (Outcome.OK, 200)
        tag = short_digest(bad if on_bad else seed) if named else ""
        recorder.answer(Answer(node, t, t + 0.001, outcome, status, tag))
    for tick in range(40):
        for node in nodes:
            recorder.view(node, Serving(seed), tick / 4)
    recorder.event("push", "admin push: pushed blocks-everyone", 3.0, bad)
    recorder.event("gate", "gate gate_fail: block rate", 3.1, bad)
    recorder.event("rollback", "gate rollback: health gate failed", 3.1, bad)
    run = DrillRun(scenarios.load("bad-rule"), "default", recorder, seed, nodes)
    run.suspects[bad] = run.labels[bad] = "blocks-everyone"
    run.faults_from, run.rollbacks_done, run.ended = 2.0, 8.0, 10.0
    run.steady_before, run.recovered_at = True, 9.0
    return run


def test_a_bundle_served_between_two_samples_is_seen_in_the_answers() -> None:
    """The samples of edge-2's view never show the bad bundle; its answers do, so the node
    counts as having served it, the skew as two, and the rollback runs to its last answer."""
    f = figures(_canary_blip(named=True))
    assert f.nodes_served_bad == ["edge-2"]
    assert f.widest_skew == 2
    assert isinstance(f.time_to_roll_back, Measured)
    assert f.time_to_roll_back.seconds == pytest.approx(0.001, abs=1e-6)
    unnamed = figures(_canary_blip(named=False))
    assert unnamed.nodes_served_bad == [] and unnamed.widest_skew == 1, "samples alone miss it"


def test_no_alarm_means_no_timings() -> None:
    run = _run_with([], "sha256:harmless")
    run.recorder.counts.clear()
    f = figures(run)
    assert isinstance(f.time_to_detect, NotMeasured)
    assert isinstance(f.time_to_roll_back, NotMeasured)


def test_the_html_page_is_self_contained_and_escapes_what_it_shows() -> None:
    bad = "sha256:bad"
    run = _run_with([(4.0, "gate", "gate gate_fail: <script>alert(1)</script>", bad)], bad)
    page = render([figures(run), figures(run)])
    assert page.startswith("<!doctype html>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "src=" not in page and "href=" not in page and "url(" not in page
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 6, "requests, nodes and events for each of the two runs"
    for svg in svgs:
        ElementTree.fromstring(svg)
