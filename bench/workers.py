"""Worker scaling with a core's worth of CPU each: `python bench/workers.py [--quick] [--json]`.

Serves with `failsmall node --workers N` (N = 1, 2, 3 by default) in front of nginx and
measures it with wrk (-t1 -c32), as `bench/proxy.py` does, with the empty bundle and the
managed ruleset as shipped, for a browser GET the same each time and browser GETs with a
distinct path id, query and session cookie each (`bench/distinct.lua`). Each worker process
runs in a cgroup of its own with the same CPU quota (`--cpu-per-worker`, 0.3 CPU by default:
`cpu.cfs_quota_us` over `cpu.cfs_period_us`), so N workers have N equal "cores" while wrk,
the origin and this script keep the rest of the machine: on 2 cores three workers hold 0.9 CPU
and leave 1.1 to wrk and the origin, which take up to 0.7 at three workers' rate (with 0.4 each
they wanted part of what the workers held, and the three-worker cells were no scaling
figures). All those groups sit in one parent group weighted 64 times a plain process
(`cpu.shares`), so that other load on a shared machine does not take the workers' quota from
them or slow wrk and the origin down.

The workers are found as the supervisor's children once every one serves its bundle, placed
in their groups, and checked to be the same processes, still in their groups, after the
last measurement: a restarted worker fails the row. Each cell reports req/s, the workers' CPU
per request, how much of its quota each worker used, the CPU that wrk and the origin used
(in cores), what limited the rate, and the ratio to one worker. Only when every worker used
(nearly) all its quota is the ratio a scaling figure; when wrk or the origin used (nearly) a
whole core, or the workers stayed below their quota for another reason, the output says so.
(A worker can use a few percent over its quota: the periods at either end of a measurement
count in part.)
The cgroups are removed at the end, also on Ctrl-C or SIGTERM.

`--rounds N` measures every row N times in turn (each round starts every node again) and
reports each figure as its median over the rounds: a worker's share of its quota the median of
that worker's shares, the limiter read from the medians, the ratio that of the median req/s.
One 5 s cell moves by 10–30% with the machine, and a run's rows are measured minutes apart:
a single round's ratio says as much about those minutes as about the workers. A row failed in
any round is failed, with that round's reason; `--json` also lists each round's rows.

Exit status: 0 every row measured; 1 a row failed (it did not start, did not block an attack,
a worker was restarted, or wrk failed); 2 the bench cannot run (wrk or nginx missing, bad
arguments); 3 the cgroup v1 `cpu` controller cannot be used here (not root, not mounted, not
writable), with what is needed.

Needs: root, the cgroup v1 cpu controller (e.g. /sys/fs/cgroup/cpu), wrk and nginx
(apt-get install -y wrk nginx).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import assert_never

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the helpers of bench/proxy.py
import proxy as bench
from failsmall.transport.natsd import free_port

COLUMNS = (bench.Column.GET, bench.Column.GET_DISTINCT)
BUNDLES = ("empty", "managed")
SATURATED = 0.85  # a worker using this share of its quota, or a process this share of a core
PERIOD_US = 100_000
PARENT_SHARES = 64 * 1024  # cpu.shares of the parent group; a plain process weighs 1024
GROUP_PREFIX = "failsmall-bench-workers-"
EXIT_NO_CGROUP = 3


class CgroupUnavailable(Exception):
    """The cgroup v1 cpu controller cannot be used; the message says what is needed."""


class Limiter(StrEnum):
    """What limited the request rate of one cell."""

    WORKERS = "workers"  # every worker used its quota: the ratio is a scaling figure
    LOAD_GENERATOR = "wrk"  # wrk (one thread) used nearly a whole core
    ORIGIN = "origin"  # the origin (one nginx worker) used nearly a whole core
    UNSATURATED = "unsaturated"  # the workers stayed below their quota for another reason

    @property
    def meaning(self) -> str:
        match self:
            case Limiter.WORKERS:
                return "every worker used its quota: a scaling figure"
            case Limiter.LOAD_GENERATOR:
                return "wrk used nearly a core: not a scaling figure"
            case Limiter.ORIGIN:
                return "the origin used nearly a core: not a scaling figure"
            case Limiter.UNSATURATED:
                return "the workers stayed below their quota: not a scaling figure"
            case _:
                assert_never(self)


@dataclass
class Cell:
    """One row measured with one column's traffic."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float  # the workers' user + system CPU per request
    quota_used: list[float]  # each worker's CPU ÷ its quota over the measurement
    throttled: list[float]  # each worker's share of enforcement periods in which it was throttled
    wrk_cores: float  # wrk's CPU ÷ the measurement's wall time
    origin_cores: float  # the origin's CPU ÷ the measurement's wall time
    limiter: Limiter
    ratio: float | None = None  # req/s ÷ that of one worker, same bundle and column


@dataclass
class Row:
    bundle: str
    workers: int
    outcome: bench.Outcome
    reason: str = ""
    cells: dict[bench.Column, Cell] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.bundle} bundle, --workers {self.workers}"


# --- cgroups ---------------------------------------------------------------------------------


def cpu_controller_mount() -> Path:
    """Where the cgroup v1 `cpu` controller is mounted, or CgroupUnavailable saying why not."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, kind, options, *_ = line.split()
        if kind == "cgroup" and "cpu" in options.split(","):
            return Path(mount)
    raise CgroupUnavailable(
        "no cgroup v1 `cpu` controller is mounted (this bench sets cpu.cfs_quota_us; on a "
        "cgroup v2-only machine it cannot run): mount one with `mkdir -p /sys/fs/cgroup/cpu && "
        "mount -t cgroup -o cpu cgroup /sys/fs/cgroup/cpu`, as root"
    )


def own_group(mount: Path) -> Path:
    """This process's group in the cgroup v1 `cpu` hierarchy mounted at `mount`."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return mount / path.lstrip("/")
    raise CgroupUnavailable("/proc/self/cgroup names no group of the cpu controller")


def move(pid: int, group: Path) -> None:
    (group / "cgroup.procs").write_text(f"{pid}\n")


def group_pids(group: Path) -> set[int]:
    return {int(p) for p in (group / "cgroup.procs").read_text().split()}


def throttle_counts(group: Path) -> tuple[int, int]:
    """The group's enforcement periods so far and those in which it was throttled."""
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return int(stat["nr_periods"]), int(stat["nr_throttled"])


class CpuGroups:
    """A parent group with a `load` group (this process and what it starts) and one group per
    worker with a CPU quota. Use as a context manager: leaving it removes every group."""

    def __init__(self, cpu_per_worker: float) -> None:
        if os.geteuid() != 0:
            raise CgroupUnavailable(
                "cgroups can only be created by root: run the bench as root (e.g. with sudo)"
            )
        self.mount = cpu_controller_mount()
        self.home = own_group(self.mount)
        self.parent = self.home / f"{GROUP_PREFIX}{os.getpid()}"
        self.quota_us = round(cpu_per_worker * PERIOD_US)
        self.workers: list[Path] = []

    @property
    def load(self) -> Path:
        return self.parent / "load"

    def __enter__(self) -> CpuGroups:
        try:
            self.parent.mkdir()
            (self.parent / "cpu.shares").write_text(f"{PARENT_SHARES}\n")
            self.load.mkdir()
            move(os.getpid(), self.load)  # wrk and the origin, started next, run here too
        except OSError as exc:
            self.remove()
            raise CgroupUnavailable(
                f"cannot create and join a cgroup under {self.home} ({exc}): the cgroup v1 cpu "
                "controller must be writable by this user (root, and not a read-only mount)"
            ) from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def worker(self, index: int) -> Path:
        """The group of worker `index`, created on first use with the quota."""
        group = self.parent / f"worker-{index}"
        if not group.exists():
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
            (group / "cpu.cfs_quota_us").write_text(f"{self.quota_us}\n")
            self.workers.append(group)
        return group

    def remove(self) -> None:
        """Move every process left back to where this one came from and remove the groups."""
        if not self.parent.exists():
            return
        children = sorted(p for p in self.parent.iterdir() if p.is_dir())
        for group in [*children, self.parent]:
            for _ in range(50):  # a process may be forking while its group empties
                for pid in group_pids(group):
                    with suppress(ProcessLookupError):  # it exited meanwhile: nothing to move
                        move(pid, self.home)
                try:
                    group.rmdir()
                    break
                except OSError as exc:
                    last = exc
                    time.sleep(0.1)
            else:
                raise OSError(f"could not remove the cgroup {group} ({last}); remove it with rmdir")

    def leftovers(self) -> list[str]:
        """This run's groups still present."""
        return [str(self.parent)] if self.parent.exists() else []


# --- processes -------------------------------------------------------------------------------


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it exited while we looked
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def node_command(workdir: Path, bundle: Path, trust: Path, workers: int) -> bench.Contender:
    port = free_port()
    admins = bench.admin_ports(workers)
    command = [
        sys.executable,
        "-c",
        "from failsmall.cli.main import app; app()",
        "node",
        "--node-id",
        f"bench-workers-{workers}",
        "--state-dir",
        str(workdir / f"state-{bundle.stem}-{workers}"),
        "--trust",
        str(trust),
        "--listen",
        f"127.0.0.1:{port}",
        "--admin",
        f"127.0.0.1:{admins[0]}",
        "--bundle",
        str(bundle),
        "--workers",
        str(workers),
        "--report-interval",
        "5",
    ]
    name = f"{bundle.stem} --workers {workers}"
    return bench.Contender(name, command, port, admins, env={"PYTHONPATH": str(bench.ROOT / "src")})


# --- measuring -------------------------------------------------------------------------------


def limiter(quota_used: Sequence[float], wrk_cores: float, origin_cores: float) -> Limiter:
    if min(quota_used) >= SATURATED:
        return Limiter.WORKERS
    if wrk_cores >= SATURATED:
        return Limiter.LOAD_GENERATOR
    if origin_cores >= SATURATED:
        return Limiter.ORIGIN
    return Limiter.UNSATURATED


def measure_cell(
    node_pid: int,
    placed: dict[int, Path],
    origin_pid: int,
    quota_cores: float,
    port: int,
    duration_s: int,
    connections: int,
    column: bench.Column,
) -> Cell:
    bench.drain(node_pid)
    workers_before = {pid: bench.tree_cpu_s(pid) for pid in placed}
    throttle_before = {pid: throttle_counts(group) for pid, group in placed.items()}
    origin_before = bench.tree_cpu_s(origin_pid)
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    measured = bench.run_wrk(port, duration_s, connections, column)
    wall_s = time.monotonic() - started
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk is the only child reaped
    wrk_s = wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime
    origin_s = bench.tree_cpu_s(origin_pid) - origin_before
    used = {pid: bench.tree_cpu_s(pid) - workers_before[pid] for pid in placed}
    throttled = []
    for pid, group in placed.items():
        periods, hits = throttle_counts(group)
        periods -= throttle_before[pid][0]
        throttled.append((hits - throttle_before[pid][1]) / periods if periods else 0.0)
    quota_used = [used[pid] / (quota_cores * wall_s) for pid in placed]
    requests = measured.rps * duration_s
    return Cell(
        rps=measured.rps,
        p50_ms=measured.p50_ms,
        p99_ms=measured.p99_ms,
        errors=measured.errors,
        cpu_us=sum(used.values()) / requests * 1e6 if requests else 0.0,
        quota_used=quota_used,
        throttled=throttled,
        wrk_cores=wrk_s / wall_s,
        origin_cores=origin_s / wall_s,
        limiter=limiter(quota_used, wrk_s / wall_s, origin_s / wall_s),
    )


def place_workers(node_pid: int, workers: int, groups: CpuGroups) -> dict[int, Path]:
    """Each of the supervisor's `workers` children in a group of its own."""
    pids = sorted(children(node_pid))
    if len(pids) != workers:
        raise bench.BenchError(f"the supervisor has {len(pids)} children, not {workers} workers")
    placed = {}
    for index, pid in enumerate(pids):
        group = groups.worker(index)
        move(pid, group)
        placed[pid] = group
    return placed


def check_placed(node_pid: int, placed: dict[int, Path]) -> None:
    """Raise unless the workers measured are the supervisor's children, each in its group."""
    now = children(node_pid)
    if now != set(placed):
        raise bench.BenchError(
            f"the workers changed during the measurement (pids {sorted(placed)} → "
            f"{sorted(now)}): a worker was restarted, so the figures are void; see the log"
        )
    for pid, group in placed.items():
        if pid not in group_pids(group):
            raise bench.BenchError(f"worker pid {pid} left its cgroup {group}")


def measure_row(
    contender: bench.Contender,
    row: Row,
    workdir: Path,
    groups: CpuGroups,
    origin_pid: int,
    settings: Settings,
    step: bench.Step,
) -> None:
    log = workdir / (re.sub(r"\W+", "-", contender.name).strip("-") + ".log")
    with bench.process(contender.command, log, contender.env) as node:
        for admin in contender.admin_ports:  # every worker serves its bundle
            bench.wait_http(admin, "/readyz", timeout_s=120, proc=node)
        bench.wait_http(contender.port, timeout_s=60, proc=node)
        placed = place_workers(node.pid, row.workers, groups)
        if row.bundle == "managed":
            bench.check_blocks_attacks(contender.port)
        for column in COLUMNS:
            step(f"{row.name}: {column.label}")
            if settings.warmup:
                bench.drain(node.pid)
                bench.run_wrk(contender.port, 1, settings.connections, column)
            row.cells[column] = measure_cell(
                node.pid,
                placed,
                origin_pid,
                settings.cpu_per_worker,
                contender.port,
                settings.duration_s,
                settings.connections,
                column,
            )
        check_placed(node.pid, placed)
        if node.poll() is not None:
            raise bench.BenchError(f"it exited with status {node.returncode} while measured")


@dataclass(frozen=True)
class Settings:
    duration_s: int
    warmup: bool
    connections: int
    cpu_per_worker: float
    counts: tuple[int, ...]
    rounds: int = 1


def measure(settings: Settings, groups: CpuGroups, console: Console) -> list[list[Row]]:
    """The rows of every round (each its own list, rows in the same order), ratios added."""
    rounds: list[list[Row]] = []
    with tempfile.TemporaryDirectory(prefix="failsmall-bench-workers-") as tmp:
        workdir = Path(tmp)
        origin_port = free_port()
        body = bench.BODY.encode("unicode_escape").decode()
        origin_cmd = bench.nginx_conf(
            workdir, "origin", origin_port, f'default_type text/plain; return 200 "{body}";'
        )
        bundles, trust = bench.bundle_files(workdir, f"http://127.0.0.1:{origin_port}")
        with (
            bench.process(origin_cmd, workdir / "origin.log") as origin,
            Progress(console=console, transient=True) as progress,
        ):
            bench.wait_http(origin_port, proc=origin)
            per_round = len(BUNDLES) * len(settings.counts) * len(COLUMNS)
            task = progress.add_task("starting", total=per_round * settings.rounds)
            for number in range(1, settings.rounds + 1):
                title = f"round {number}/{settings.rounds}: " if settings.rounds > 1 else ""

                def step(what: str, title: str = title) -> None:
                    progress.update(task, description=title + what)
                    progress.advance(task)

                rows = measure_round(settings, groups, workdir, bundles, trust, origin.pid, step)
                rounds.append(rows)
                progress.update(task, completed=per_round * len(rounds))
    return rounds


def measure_round(
    settings: Settings,
    groups: CpuGroups,
    workdir: Path,
    bundles: dict[str, Path],
    trust: Path,
    origin_pid: int,
    step: bench.Step,
) -> list[Row]:
    """Every row once, in order, with its ratios to one worker."""
    rows: list[Row] = []
    for name in BUNDLES:
        for count in settings.counts:
            row = Row(name, count, bench.Outcome.MEASURED)
            contender = node_command(workdir, bundles[name], trust, count)
            try:
                measure_row(contender, row, workdir, groups, origin_pid, settings, step)
            except (bench.BenchError, OSError) as exc:
                row = Row(name, count, bench.Outcome.FAILED, str(exc))
            rows.append(row)
    add_ratios(rows)
    return rows


def combine(rounds: Sequence[Sequence[Row]]) -> list[Row]:
    """One row per bundle and worker count from the rounds of a run (each measuring the same
    rows in the same order): each figure of a cell the median of its rounds (`median_cell`),
    the ratios those of the median req/s. A row failed in any round is failed, with that
    round's reason."""
    rows: list[Row] = []
    for same in zip(*rounds, strict=True):
        first = same[0]
        failed = next((r for r in same if r.outcome is not bench.Outcome.MEASURED), None)
        if failed is not None:
            rows.append(Row(first.bundle, first.workers, failed.outcome, failed.reason))
            continue
        cells = {c: median_cell([r.cells[c] for r in same]) for c in first.cells}
        rows.append(Row(first.bundle, first.workers, bench.Outcome.MEASURED, cells=cells))
    add_ratios(rows)
    return rows


def median_cell(cells: Sequence[Cell]) -> Cell:
    """The median of each figure of `cells` (one column of one row, round after round; each
    worker's own figures kept apart, by its index), their errors summed and the limiter read
    from the medians."""

    def per_worker(figures: Sequence[list[float]]) -> list[float]:
        return [statistics.median(one) for one in zip(*figures, strict=True)]

    figures = bench.medians(
        cells, ("rps", "p50_ms", "p99_ms", "cpu_us", "wrk_cores", "origin_cores")
    )
    quota_used = per_worker([c.quota_used for c in cells])
    return Cell(
        **figures,
        errors=sum(c.errors for c in cells),
        quota_used=quota_used,
        throttled=per_worker([c.throttled for c in cells]),
        limiter=limiter(quota_used, figures["wrk_cores"], figures["origin_cores"]),
    )


def add_ratios(rows: Sequence[Row]) -> None:
    for row in rows:
        one = next((r for r in rows if r.bundle == row.bundle and r.workers == 1), None)
        if one is None or one.outcome is not bench.Outcome.MEASURED:
            continue
        for column, cell in row.cells.items():
            base = one.cells[column].rps
            cell.ratio = cell.rps / base if base else None


# --- reporting -------------------------------------------------------------------------------


def conditions(settings: Settings) -> str:
    rounds = f"medians of {settings.rounds} rounds; " if settings.rounds > 1 else ""
    return (
        f"{rounds}wrk -t1 -c{settings.connections} -d{settings.duration_s}s; "
        "origin: nginx (1 worker); "
        f"each node worker in a cgroup of its own with {settings.cpu_per_worker:g} CPU "
        f"(cfs quota {round(settings.cpu_per_worker * PERIOD_US)} µs per {PERIOD_US} µs); "
        f"wrk and the origin share the rest of the {os.cpu_count()} cores"
    )


def print_table(console: Console, rows: Sequence[Row], header: str, load: str) -> None:
    table = Table(title="failsmall node --workers N, each worker with the same CPU quota")
    for name in ("bundle", "workers", "traffic", "req/s", "× 1 worker", "CPU µs/req"):
        table.add_column(name, justify="right" if name not in ("bundle", "traffic") else "left")
    table.add_column("quota used (min–max)", justify="right")
    table.add_column("wrk / origin cores", justify="right")
    table.add_column("limited by")
    for row in rows:
        match row.outcome:
            case bench.Outcome.MEASURED:
                for column, cell in row.cells.items():
                    colour = "green" if cell.limiter is Limiter.WORKERS else "yellow"
                    errors = f" [red]{cell.errors} errors[/]" if cell.errors else ""
                    table.add_row(
                        row.bundle,
                        str(row.workers),
                        column.label,
                        f"{cell.rps:,.0f}{errors}",
                        bench.fmt_ratio(cell.ratio),
                        f"{cell.cpu_us:.0f}",
                        f"{min(cell.quota_used):.0%}–{max(cell.quota_used):.0%}",
                        f"{cell.wrk_cores:.2f} / {cell.origin_cores:.2f}",
                        f"[{colour}]{cell.limiter.meaning}[/]",
                    )
            case bench.Outcome.SKIPPED | bench.Outcome.FAILED:
                reason = row.reason.splitlines()[0] if row.reason else ""
                table.add_row(
                    row.bundle, str(row.workers), f"[red]{row.outcome.value}: {reason}[/]"
                )
            case _:
                assert_never(row.outcome)
    table.caption = f"{header}; {load}"
    console.print(table)
    for row in rows:
        if row.outcome is bench.Outcome.FAILED and "\n" in row.reason:
            console.print(f"[red]{row.name} failed:[/] {row.reason}", markup=False)


def counts(text: str) -> tuple[int, ...]:
    values = tuple(sorted({int(n) for n in text.split(",")}))
    if not values or values[0] != 1 or values[-1] > 16:
        raise ValueError(text)
    return values


class Interrupted(Exception):
    """SIGTERM arrived: leave every block (removing the cgroups) and exit."""


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Interrupted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument(
        "--quick", action="store_true", help="1 s per measurement, 1 and 2 workers, no warm-up"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cpu-per-worker", type=float, default=0.3, help="CPUs per worker")
    parser.add_argument(
        "--workers", default="1,2,3", help="worker counts to measure, comma-separated, with 1"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every row this many times in turn and report the medians (1-9)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    if not console.is_terminal:
        console.width = max(console.width, 160)

    def fail(message: str, code: int = 2) -> int:
        if args.json:
            print(json.dumps({"error": message}))
        console.print(f"[red]error:[/] {message}")
        return code

    try:
        wanted = (1, 2) if args.quick else counts(args.workers)
    except ValueError:
        return fail("--workers takes counts from 1 to 16 separated by commas, 1 among them")
    settings = Settings(
        duration_s=1 if args.quick else args.duration,
        warmup=not args.quick,
        connections=args.connections,
        cpu_per_worker=args.cpu_per_worker,
        counts=wanted,
        rounds=args.rounds,
    )
    cores = os.cpu_count() or 1
    if not 1 <= settings.duration_s <= 60:
        return fail("--duration must be between 1 and 60 seconds")
    if not 1 <= settings.rounds <= 9:
        return fail("--rounds must be between 1 and 9")
    if not 1 <= settings.connections <= 1000:
        return fail("--connections must be between 1 and 1000")
    if not 0.05 <= settings.cpu_per_worker <= cores:
        return fail(f"--cpu-per-worker must be between 0.05 and {cores} (the cores here)")
    if max(wanted) * settings.cpu_per_worker > cores - 0.5:
        return fail(
            f"{max(wanted)} workers × {settings.cpu_per_worker:g} CPU leave less than 0.5 of "
            f"this machine's {cores} cores to wrk and the origin: use fewer --workers or a "
            "smaller --cpu-per-worker"
        )
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            return fail(f"{tool} is not installed; install it with: apt-get install -y {tool}")
    signal.signal(signal.SIGTERM, on_sigterm)
    load_before = os.getloadavg()[0]
    try:
        groups = CpuGroups(settings.cpu_per_worker)
        with groups:
            rounds = measure(settings, groups, console)
        left = groups.leftovers()
    except CgroupUnavailable as exc:
        return fail(str(exc), EXIT_NO_CGROUP)
    except bench.BenchError as exc:
        return fail(str(exc))
    except (KeyboardInterrupt, Interrupted):
        return fail("interrupted; the cgroups were removed", 130)
    rows = combine(rounds)
    load = (load_before, os.getloadavg()[0])
    header = conditions(settings)
    if args.json:
        document = {
            "conditions": header,
            "duration_s": settings.duration_s,
            "connections": settings.connections,
            "cpu_per_worker": settings.cpu_per_worker,
            "cpus": cores,
            "load_average_1m": {"before": load[0], "after": load[1]},
            "cgroup": str(groups.parent),
            "cgroups_left": left,
            "columns": {c.value: c.label for c in COLUMNS},
            "rounds": settings.rounds,
            "rows": [asdict(r) | {"name": r.name} for r in rows],
            "round_rows": [[asdict(r) | {"name": r.name} for r in one] for one in rounds],
        }
        print(json.dumps(document, indent=2))
    else:
        print_table(console, rows, header, bench.load_text(load))
    if left:
        console.print(f"[red]cgroups left behind:[/] {', '.join(left)}; remove them with rmdir")
        return 1
    return 1 if any(r.outcome is bench.Outcome.FAILED for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
