"""The node's CPU per request, A/B between git revisions: `python bench/node_cost.py REV [REV...]`.

Each revision's `src/` is exported (git archive) and served by a one-worker node with the empty
bundle (or `--bundle example`, or `--workers N`) in front of nginx; wrk -t1 -c32 runs against
each in turn, round after round (every other round in the reverse order), so that every revision
sees the same changing machine load and none is always measured first.
Prints req/s and the CPU time per request of the node's processes (user + system, from /proc;
and user alone, the node's own code, which the load moves less than the kernel's share), per
round and as medians, and the median of each round's difference to the first revision
("paired Δ"). On a shared machine req/s follows the load; CPU per request is the figure to
compare, and still varies by some 20 % between rounds: compare medians of several, or the
paired difference, which the load moves less.

The empty bundle is built and signed by each revision's own code, so that a revision from
before a change to the bundle model still loads it; the managed and example bundles come from
the working tree's code.

`--profile` instead runs the first revision's node once under cProfile (from after a warm-up to
its exit, so that its start does not count) and lists the functions it spent its time in, per
request: calls and µs, counted from the exchanges it created. cProfile sees only interpreted
functions, so the profiled node loads its compiled modules from their Python source
(`bench/interpreted.py`): the calls are the source's, the µs the interpreter's. Calls per
request do not depend on the machine's load; cProfile roughly doubles the cost of each Python
call, so read its µs for where time goes, not how much.

Needs: wrk and nginx (apt-get install -y wrk nginx), a git checkout, and for revisions with a
compiled extension a C compiler and libhyperscan-dev.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for the helpers of bench/proxy.py
import proxy as bench
from failsmall.model.envelope import public_key_pem
from failsmall.transport.natsd import free_port


def export(rev: str, into: Path) -> Path:
    """The `src/` of git revision `rev` (`.` for the working tree), as a directory, with its
    compiled extension built in place when the revision has one (`setup.py`)."""
    if rev == ".":
        return bench.ROOT / "src"
    into.mkdir()
    paths = ["src"]
    listed = subprocess.run(
        ["git", "-C", str(bench.ROOT), "ls-tree", "--name-only", rev, "setup.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if listed.strip():
        paths += ["setup.py", "pyproject.toml", "README.md"]
    archive = subprocess.run(
        ["git", "-C", str(bench.ROOT), "archive", rev, *paths], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    if listed.strip():
        subprocess.run(
            [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
            cwd=into,
            check=True,
            capture_output=True,
        )
    return into / "src"


SIGN_EMPTY = """
import sys
from pathlib import Path
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from failsmall.model import Bundle, Origin, Route, sign_bundle
key = load_pem_private_key(Path(sys.argv[1]).read_bytes(), None)
origins, routes = [Origin(id="web", url=sys.argv[2])], [Route(origin="web")]
bundle = Bundle.model_validate(Bundle(name="empty", origins=origins, routes=routes).model_dump())
Path(sys.argv[3]).write_bytes(sign_bundle(bundle, key).to_bytes())
"""


def empty_bundle(tree: Path, workdir: Path, name: str, origin_url: str) -> tuple[Path, Path]:
    """The empty bundle as revision `tree`'s code builds and signs it, and its trusted key."""
    key = Ed25519PrivateKey.generate()
    key_file, trust, bundle = (workdir / f"{name}{ext}" for ext in (".key", ".pub", ".json"))
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    trust.write_bytes(public_key_pem(key.public_key()))
    subprocess.run(
        [sys.executable, "-c", SIGN_EMPTY, str(key_file), origin_url, str(bundle)],
        check=True,
        env={**os.environ, "PYTHONPATH": str(tree)},
    )
    return bundle, trust


PROFILED_NODE = """
import cProfile, runpy, signal, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from interpreted import SourceFirst
sys.meta_path.insert(0, SourceFirst(Path(sys.argv[3])))
profiler = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
out, sys.argv = sys.argv[1], ["failsmall.node", *sys.argv[4:]]
try:
    runpy.run_module("failsmall.node", run_name="__main__")
finally:
    profiler.disable()
    profiler.dump_stats(out)
"""
"""A node process that profiles from SIGUSR1 (after its start and a warm-up) to its exit, with
its compiled modules loaded from their Python source (`bench/interpreted.py`): cProfile sees
only interpreted functions."""


def profile(
    workdir: Path,
    tree: Path,
    bundle: Path,
    trusted: Path,
    args: argparse.Namespace,
    column: bench.Column,
) -> pstats.Stats:
    """Serve wrk's traffic from one node process under cProfile, started after a warm-up so
    that the node's start is not counted; its statistics."""
    node = bench.node_contender("profile", workdir, bundle, trusted, 1, False)
    out = workdir / "node.prof"
    here = Path(__file__).resolve().parent
    command = [node.command[0], "-c", PROFILED_NODE, str(out), str(here), str(tree)]
    command += node.command[3:]
    env = {**node.env, "PYTHONPATH": str(tree)}
    with bench.process(command, workdir / "profile.log", env=env) as proc:
        for admin in node.admin_ports:
            bench.wait_http(admin, "/readyz", timeout_s=60)
        bench.wait_http(node.port, timeout_s=60)
        bench.run_wrk(node.port, 1, args.connections, column)  # warm-up, not profiled
        bench.drain(proc.pid)
        proc.send_signal(signal.SIGUSR1)
        bench.run_wrk(node.port, args.duration, args.connections, column)
    if not out.exists():
        raise bench.BenchError(f"the node wrote no profile; see {workdir / 'profile.log'}")
    return pstats.Stats(str(out))


def _where(key: tuple[str, int, str]) -> str:
    file, line, name = key
    return f"{Path(file).name}:{line}({name})" if line else name


def _owner(key: tuple[str, int, str]) -> str:
    """Whose code a profiled function is: the node's, the engine's, or C (builtins and
    extension functions, which cProfile lists without a file)."""
    file, line, _ = key
    if not line:
        return "C"
    for package in ("node", "engine"):
        if f"failsmall/{package}/" in file:
            return package
    return "other Python"


def print_profile(console: Console, stats: pstats.Stats, top: int, title: str) -> bool:
    """The functions with the most own time, per request (requests: exchanges created), each
    with the caller that calls it most; then the calls per request by whose code they are.
    False, saying so, when the profile holds no request."""
    table: dict[tuple[str, int, str], tuple[int, int, float, float, dict[object, tuple[int, ...]]]]
    table = stats.stats  # type: ignore[attr-defined]
    requests = sum(
        row[0]
        for (file, _, name), row in table.items()
        if name == "__init__" and file.endswith("node/exchange.py")
    )
    if not requests:
        console.print("[red]the profile holds no request: did wrk reach the node?[/]")
        return False
    calls = sum(row[1] for row in table.values())
    out = Table(
        title=f"node under cProfile, {title}: {requests:,} requests, "
        f"{calls / requests:.0f} calls per request"
    )
    headings = ("function", "called most from", "calls/request", "own µs/request", "total µs")
    for name in headings:
        out.add_column(name, justify="right" if "request" in name or "µs" in name else "left")
    rows = sorted(table.items(), key=lambda item: item[1][2], reverse=True)[:top]
    for key, (_, ncalls, own, total, callers) in rows:
        caller = max(callers.items(), key=lambda item: item[1][1], default=None)
        out.add_row(
            _where(key),
            _where(caller[0]) if caller is not None else "",  # type: ignore[arg-type]
            f"{ncalls / requests:.2f}",
            f"{own / requests * 1e6:.2f}",
            f"{total / requests * 1e6:.2f}",
        )
    console.print(out)
    owners: dict[str, tuple[float, float]] = {}
    for key, (_, ncalls, own, _, _) in table.items():
        count, seconds = owners.get(_owner(key), (0.0, 0.0))
        owners[_owner(key)] = (count + ncalls, seconds + own)
    summary = Table(title="calls per request by whose code they are (C: builtins, extensions)")
    for name in ("code", "calls/request", "own µs/request"):
        summary.add_column(name, justify="left" if name == "code" else "right")
    for owner, (count, seconds) in sorted(owners.items(), key=lambda item: -item[1][0]):
        summary.add_row(owner, f"{count / requests:.1f}", f"{seconds / requests * 1e6:.1f}")
    console.print(summary)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revs", nargs="+", help="git revisions ('.' is the working tree)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=5, help="seconds per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bundle", choices=["empty", "managed", "example"], default="empty")
    parser.add_argument(
        "--traffic",
        choices=[c.value for c in bench.Column],
        default=bench.Column.GET.value,
        help="the proxy bench's columns: get, get_distinct, json, json_distinct",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the first revision's node under cProfile instead of comparing revisions",
    )
    parser.add_argument("--top", type=int, default=40, help="functions listed by --profile")
    args = parser.parse_args()
    console = Console()
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        console.print(
            f"[red]{', '.join(missing)} not found; install: apt-get install -y wrk nginx[/]"
        )
        return 2
    results: dict[str, list[bench.Cell]] = {rev: [] for rev in args.revs}
    with tempfile.TemporaryDirectory(prefix="failsmall-node-cost-") as tmp:
        workdir = Path(tmp)
        trees = {rev: export(rev, workdir / f"tree-{i}") for i, rev in enumerate(args.revs)}
        origin_port = free_port()
        body = bench.BODY.encode("unicode_escape").decode()
        origin_cmd = bench.nginx_conf(
            workdir, "origin", origin_port, f'default_type text/plain; return 200 "{body}";'
        )
        origin_url = f"http://127.0.0.1:{origin_port}"
        bundles, trust = bench.bundle_files(workdir, origin_url)
        signed = {
            rev: empty_bundle(tree, workdir, f"empty-{i}", origin_url)
            if args.bundle == "empty"
            else (bundles[args.bundle], trust)
            for i, (rev, tree) in enumerate(trees.items())
        }
        column = bench.Column(args.traffic)
        with bench.process(origin_cmd, workdir / "origin.log"):
            bench.wait_http(origin_port)
            if args.profile:
                rev = args.revs[0]
                stats = profile(workdir, trees[rev], *signed[rev], args, column)
                title = f"{rev}, {args.bundle} bundle"
                return 0 if print_profile(console, stats, args.top, title) else 1
            for round_ in range(args.rounds):
                # every other round in the reverse order, so that no revision is always
                # measured first: two runs with the older tree first, then second, each put
                # the revision measured second 10-15 µs behind
                order = list(enumerate(args.revs))
                for i, rev in order if round_ % 2 == 0 else reversed(order):
                    bundle, trusted = signed[rev]
                    node = bench.node_contender(
                        f"r{round_}-{i}", workdir, bundle, trusted, args.workers, False
                    )
                    env = {**node.env, "PYTHONPATH": str(trees[rev])}
                    log = workdir / f"r{round_}-{i}.log"
                    with bench.process(node.command, log, env=env) as proc:
                        for admin in node.admin_ports:
                            bench.wait_http(admin, "/readyz", timeout_s=60)
                        bench.wait_http(node.port, timeout_s=60)
                        bench.run_wrk(node.port, 1, args.connections, column)  # warm-up
                        cell = bench.measure_cell(
                            proc.pid, node.port, args.duration, args.connections, column
                        )
                    results[rev].append(cell)
                    console.print(
                        f"round {round_} {rev}: {cell.rps:,.0f} req/s, "
                        f"{cell.cpu_us:.1f} µs CPU per request ({cell.user_us:.1f} user), "
                        f"{cell.errors} errors"
                    )
    table = Table(
        title=f"node, {args.bundle} bundle, {args.workers} worker(s), "
        f"{column.label}, wrk -t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds"
    )
    headings = (
        "revision",
        "median req/s",
        "median µs CPU/request",
        "range µs",
        "paired Δ µs",
        "median µs user",
        "paired Δ user",
    )
    for heading in headings:
        table.add_column(heading, justify="left" if heading == "revision" else "right")
    first = results[args.revs[0]]
    for rev, rows in results.items():
        cpu = [r.cpu_us for r in rows]
        user = [r.user_us for r in rows]
        # Each round's difference to the first revision measured in the same round: the
        # machine's load moves both, so their difference varies less than either.
        paired = statistics.median(b.cpu_us - a.cpu_us for a, b in zip(first, rows, strict=True))
        paired_user = statistics.median(
            b.user_us - a.user_us for a, b in zip(first, rows, strict=True)
        )
        table.add_row(
            rev,
            f"{statistics.median(r.rps for r in rows):,.0f}",
            f"{statistics.median(cpu):.1f}",
            f"{min(cpu):.0f}–{max(cpu):.0f}",
            "" if rev == args.revs[0] else f"{paired:+.1f}",
            f"{statistics.median(user):.1f}",
            "" if rev == args.revs[0] else f"{paired_user:+.1f}",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
