"""Running one drill on one fleet.

    WARMUP -> (steady state holds?) -> FAULTS -> ROLLBACKS -> RECOVERY -> DONE
                      \\ no: the drill injects nothing --------------------/

Load runs throughout; each node's bundle, the fleet's events and the hypothesis are sampled
continuously. Every fault registers its rollback before it is injected, and rollbacks run
whatever ends the fault phase: its end, a failure, or cancellation (Ctrl-C)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import assert_never

import aiohttp
import httpx

from failsmall.drill.changes import ChangeError, changed, with_feature_file
from failsmall.drill.features import FeatureFileError, feature_files, generated
from failsmall.drill.fleet import Fleet, FleetError, Pushed, PushOutcome, Refused, Serving
from failsmall.drill.link import FaultyLink
from failsmall.drill.load import OpenLoop
from failsmall.drill.record import Recorder
from failsmall.drill.scenario import (
    ControlDownStep,
    FeatureFileSize,
    FlapFeaturesStep,
    KillNodeStep,
    KillswitchStep,
    PartitionStep,
    PushStep,
    Scenario,
    SlowOriginStep,
    Step,
    StopNodeStep,
    WaitStep,
)

SAMPLE_S = 0.25
CHECK_S = 0.5
ROLLOUT_TIMEOUT_S = 120


@dataclass
class DrillRun:
    """Everything one drill observed, for the report."""

    scenario: Scenario
    profile: str
    recorder: Recorder
    seed_digest: str
    node_ids: list[str]
    suspects: dict[str, str] = field(default_factory=dict)
    """Bundles the faults pushed, by digest, with a label."""
    labels: dict[str, str] = field(default_factory=dict)
    steady_before: bool = False
    faults_from: float = 0.0
    rollbacks_from: float = 0.0
    rollbacks_done: float = 0.0
    recovered_at: float | None = None
    ended: float = 0.0
    interrupted: str = ""
    """Why the fault phase ended early (an error or a signal), empty when it ran to its end."""


class Drill:
    def __init__(self, scenario: Scenario, fleet: Fleet) -> None:
        self.scenario = scenario
        self.fleet = fleet
        self.recorder = Recorder(scenario.hypothesis)
        self.run = DrillRun(
            scenario,
            fleet.profile,
            self.recorder,
            fleet.seed_digest,
            [t[0] for t in fleet.load_targets()],
            labels={fleet.seed_digest: "seed"},
        )
        self._stop_load = asyncio.Event()
        self._stop_watch = asyncio.Event()
        self._restore_registered = False

    # -- the whole drill --------------------------------------------------------------------

    async def execute(self) -> DrillRun:
        scenario, recorder = self.scenario, self.recorder
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._learn_feature_files)
        recorder.mono0, recorder.wall0 = loop.time(), time.time()
        recorder.load_clock0 = recorder.mono0
        budget = (
            scenario.warmup_s + _steps_s(scenario.steps) + scenario.observe_s + scenario.recover_s
        )
        load = OpenLoop(
            self.fleet.load_targets,
            scenario.load.rate,
            scenario.load.timeout_s,
            scenario.load.max_in_flight,
            max_requests=int(scenario.load.rate * (budget + 2 * ROLLOUT_TIMEOUT_S)),
            max_duration_s=budget + 2 * ROLLOUT_TIMEOUT_S,
            sink=recorder.answer,
        )
        load_task = asyncio.create_task(load.run(self._stop_load))
        watch_task = asyncio.create_task(self._watch())
        judge_task = asyncio.create_task(self._judge())
        try:
            await asyncio.sleep(scenario.warmup_s)
            self.run.steady_before = self._steady_now()
            if not self.run.steady_before:
                recorder.event(
                    "hypothesis", "steady state does not hold before the faults: none injected"
                )
            else:
                await self._faults()
                await self._recover()
        finally:
            self.run.ended = recorder.now()
            self._stop_load.set()
            await load_task
            self._stop_watch.set()
            await watch_task
            await judge_task
        return self.run

    def _learn_feature_files(self) -> None:
        """Run the feature pipeline for the steps that push its files before the load starts:
        it takes seconds of CPU, which would otherwise show in the drill's latency. A failure
        is recorded; the step then fails with the same message."""
        sizes = set()
        for step in self.scenario.steps:
            match step:
                case FlapFeaturesStep():
                    sizes.add(self.scenario.seed_features)
                case PushStep(change=FeatureFileSize(features=features)):
                    sizes.add(features)
        for size in sorted(sizes):
            try:
                generated(size)
            except FeatureFileError as exc:
                self.recorder.event("fault", f"the feature pipeline failed: {exc}")

    def _steady_now(self) -> bool:
        return self.recorder.checks[-1].holds if self.recorder.checks else False

    async def _faults(self) -> None:
        recorder = self.recorder
        self.run.faults_from = recorder.now()
        async with contextlib.AsyncExitStack() as rollbacks:
            try:
                for step in self.scenario.steps:
                    await self._step(step, rollbacks)
                await asyncio.sleep(self.scenario.observe_s)
            except asyncio.CancelledError:
                # Ctrl-C or SIGTERM: the rollbacks below still run, then the report is made.
                self.run.interrupted = "interrupted by a signal"
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            except (FleetError, ChangeError, FeatureFileError) as exc:
                self.run.interrupted = str(exc)
                recorder.event("fault", f"drill step failed: {exc}")
            finally:
                self.run.rollbacks_from = recorder.now()
                recorder.event("restore", "rolling back every fault")
        self.run.rollbacks_done = recorder.now()
        recorder.event("restore", "rollbacks done")

    async def _recover(self) -> None:
        """Wait until every node serves the seed and the hypothesis holds twice in a row."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.scenario.recover_s
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while loop.time() < deadline:
                views = await self.fleet.views(session)
                seed = self.run.seed_digest
                on_seed = all(isinstance(v, Serving) and v.digest == seed for v in views.values())
                recent = self.recorder.checks[-2:]
                if on_seed and len(recent) == 2 and all(c.holds for c in recent):
                    self.run.recovered_at = self.recorder.now()
                    self.recorder.event("hypothesis", "steady state verified after the drill")
                    return
                await asyncio.sleep(CHECK_S)
        self.recorder.event(
            "hypothesis", f"steady state not back {self.scenario.recover_s:g} s after the rollbacks"
        )

    # -- watching ---------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Sample node views and fleet events until told to stop. A sample that fails is
        recorded as an event and retried on the next round; it never stops the watch."""
        failing = ""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while not self._stop_watch.is_set():
                t = self.recorder.now()
                try:
                    for node_id, view in (await self.fleet.views(session)).items():
                        self.recorder.view(node_id, view, t)
                        wall = self.recorder.wall0 + t
                        for event in self.fleet.node_events(node_id, view, wall):
                            self.recorder.fleet_event(event)
                    for event in await self.fleet.events():
                        self.recorder.fleet_event(event)
                    failing = ""
                except (httpx.HTTPError, FleetError) as exc:
                    if not failing:
                        self.recorder.event("control", f"watching the fleet failed: {exc}")
                    failing = str(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_watch.wait(), SAMPLE_S)

    async def _judge(self) -> None:
        """Check the steady-state hypothesis every CHECK_S, whatever the fleet answers."""
        loop = asyncio.get_running_loop()
        while not self._stop_watch.is_set():
            self.recorder.check(loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_watch.wait(), CHECK_S)

    # -- steps ------------------------------------------------------------------------------

    def _restore_once(self, rollbacks: contextlib.AsyncExitStack) -> None:
        if self._restore_registered:
            return
        self._restore_registered = True

        async def restore() -> None:
            self.recorder.event("restore", "restoring the seed bundle")
            await self.fleet.restore("drill rollback: back to the seed bundle")
            self.recorder.event("restore", "the seed bundle is the fleet's again")

        rollbacks.push_async_callback(restore)

    def _pushed(self, outcome: PushOutcome, label: str, suspect: bool) -> str:
        match outcome:
            case Pushed(digest=digest):
                self.run.labels.setdefault(digest, label)
                if suspect:
                    self.run.suspects[digest] = label
                self.recorder.event("fault", f"pushed {label}", digest=digest)
                return digest
            case Refused(reason=reason):
                self.recorder.event("refused", f"{label} refused: {reason}")
                return ""
            case _:
                assert_never(outcome)

    async def _step(self, step: Step, rollbacks: contextlib.AsyncExitStack) -> None:
        fleet, recorder = self.fleet, self.recorder
        match step:
            case PushStep(change=change, wait=wait, hold_s=hold_s):
                self._restore_once(rollbacks)
                bundle = await asyncio.to_thread(
                    changed, fleet.seed_bundle, change, fleet.dead_port
                )
                label = bundle.name.removeprefix(fleet.seed_bundle.name + "+")
                digest = self._pushed(await fleet.push(bundle, f"drill: {label}"), label, True)
                if digest and wait == "rollout":
                    await fleet.settle(ROLLOUT_TIMEOUT_S)
                await asyncio.sleep(hold_s)
            case KillswitchStep(rule=rule, state=state, wait=wait, hold_s=hold_s):
                self._restore_once(rollbacks)
                label = f"killswitch {rule}"
                outcome = await fleet.killswitch(rule, state, f"drill: {label} {state}")
                if self._pushed(outcome, label, True) and wait == "rollout":
                    await fleet.settle(ROLLOUT_TIMEOUT_S)
                await asyncio.sleep(hold_s)
            case FlapFeaturesStep(capacity=capacity, sequence=sequence, cycle_s=cycle_s):
                self._restore_once(rollbacks)
                loop = asyncio.get_running_loop()
                features = self.scenario.seed_features
                files = await asyncio.to_thread(feature_files, features, capacity)
                for cycle, which in enumerate(sequence, start=1):
                    started = loop.time()
                    doubled = which == "doubled"
                    label = f"features doubled #{cycle}" if doubled else "features good"
                    bundle = with_feature_file(
                        fleet.seed_bundle,
                        files.doubled if doubled else files.good,
                        f"features-doubled-{cycle}" if doubled else "",
                    )
                    self._pushed(await fleet.push(bundle, f"drill: {label}"), label, doubled)
                    await asyncio.sleep(max(0.0, started + cycle_s - loop.time()))
            case KillNodeStep(node=index, down_s=down_s):
                node = fleet.node(index)
                async with contextlib.AsyncExitStack() as local:
                    local.push_async_callback(self._restart, node.node_id, index)
                    node.signal_group(signal.SIGKILL)
                    recorder.event("fault", f"kill -9 {node.node_id}")
                    await asyncio.sleep(down_s)
            case StopNodeStep(node=index, for_s=for_s):
                node = fleet.node(index)
                async with contextlib.AsyncExitStack() as local:
                    local.push_async_callback(self._signal, index, signal.SIGCONT, "SIGCONT")
                    node.signal_group(signal.SIGSTOP)
                    recorder.event("fault", f"SIGSTOP {node.node_id}")
                    await asyncio.sleep(for_s)
            case ControlDownStep(for_s=for_s):
                async with contextlib.AsyncExitStack() as local:
                    local.push_async_callback(self._control_up)
                    await fleet.control_down()
                    recorder.event("fault", "control plane stopped")
                    await asyncio.sleep(for_s)
            case PartitionStep(nodes=indexes, for_s=for_s, mode=mode):
                links = [(fleet.node(i).node_id, fleet.link(i)) for i in indexes]
                async with contextlib.AsyncExitStack() as local:
                    for node_id, link in links:
                        local.callback(self._mend, node_id, link)
                        match mode:
                            case "cut":
                                link.cut()
                            case "blackhole":
                                link.blackhole()
                            case _:
                                assert_never(mode)
                        recorder.event("fault", f"transport {mode} between {node_id} and control")
                    await asyncio.sleep(for_s)
            case SlowOriginStep(delay_s=delay_s, for_s=for_s):
                link = fleet.origin()
                async with contextlib.AsyncExitStack() as local:
                    local.callback(self._mend, "the nodes", link, "the origin")
                    link.slow(delay_s)
                    recorder.event("fault", f"every origin reply held back {delay_s:g} s")
                    await asyncio.sleep(for_s)
            case WaitStep(seconds=seconds):
                await asyncio.sleep(seconds)
            case _:
                assert_never(step)

    def _mend(self, node_id: str, link: FaultyLink, other: str = "control") -> None:
        link.mend()
        self.recorder.event("restore", f"transport mended between {node_id} and {other}")

    async def _restart(self, node_id: str, index: int) -> None:
        node = self.fleet.node(index)
        if node.process is not None:
            node.signal_group(signal.SIGKILL)
            await asyncio.to_thread(node.process.wait, 10)
        node.start()
        self.recorder.event("restore", f"{node_id} started again")

    async def _signal(self, index: int, signum: int, name: str) -> None:
        node = self.fleet.node(index)
        node.signal_group(signum)
        self.recorder.event("restore", f"{name} {node.node_id}")

    async def _control_up(self) -> None:
        await self.fleet.control_up()
        self.recorder.event("restore", "control plane started again")


def _steps_s(steps: list[Step]) -> float:
    total = 0.0
    for step in steps:
        match step:
            case PushStep(hold_s=s) | KillswitchStep(hold_s=s):
                total += s
            case FlapFeaturesStep(sequence=sequence, cycle_s=cycle_s):
                total += len(sequence) * cycle_s
            case (
                KillNodeStep(down_s=s)
                | StopNodeStep(for_s=s)
                | ControlDownStep(for_s=s)
                | PartitionStep(for_s=s)
                | SlowOriginStep(for_s=s)
            ):
                total += s
            case WaitStep(seconds=s):
                total += s
            case _:
                assert_never(step)
    return total


FleetFactory = Callable[[Scenario], contextlib.AbstractAsyncContextManager[Fleet]]


async def run_drill(
    scenario: Scenario,
    fleet_factory: FleetFactory,
    started: Callable[[Drill], None] = lambda drill: None,
) -> DrillRun:
    """Start a fleet, run the scenario on it, stop the fleet (always). `started` is handed the
    drill once its fleet is up (to follow its events)."""
    async with fleet_factory(scenario) as fleet:
        drill = Drill(scenario, fleet)
        started(drill)
        return await drill.execute()
