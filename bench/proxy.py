"""Proxy throughput, side by side in one run: `python bench/proxy.py [--duration 5] [--json]`.

Starts an origin (nginx if installed, else a fast asyncio origin) and measures with wrk
(-t1 -c32): the origin direct; nginx as a reverse proxy (1 worker) twice, with the stock
`proxy_pass` (a new origin connection per request) and tuned with upstream keep-alive; a byte
pass-through and a naive aiohttp proxy; and `failsmall node` with an empty bundle, with the
example bundle (managed ruleset), with it and an access log, and with it on 2 workers. Prints
req/s, p50/p99, the CPU time each request cost the proxy (all its processes, user + system) and
each ratio to both nginx configurations.

Needs: wrk (apt-get install -y wrk); nginx is optional (apt-get install -y nginx-light).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from failsmall.build import load_config_dir
from failsmall.model import Bundle, Origin, Route, sign_bundle
from failsmall.model.envelope import public_key_pem
from failsmall.node.config import NodeConfig
from failsmall.transport.natsd import free_port

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "site"
BODY = "hello from the origin\n" * 28
HEADERS = (
    ("Host", "shop.example"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
    ("Accept", "text/html"),
    ("Accept-Language", "en"),
)
DISTINCT = ROOT / "bench" / "distinct.lua"
STOCK = "nginx proxy, stock proxy_pass"
KEEPALIVE = "nginx proxy, upstream keep-alive"
INSTALL_HINT = "install it with: apt-get update && apt-get install -y nginx-light wrk"


class BenchError(Exception):
    """The benchmark cannot run; the message says what is missing."""


@dataclass
class Row:
    """One measured configuration."""

    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: float = 0.0  # the proxy's user + system CPU per request, all its processes
    ratio_stock: float = 0.0
    ratio_keepalive: float = 0.0


def wait_http(port: int, path: str = "/", timeout_s: float = 15.0, want: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    lines = [f"GET {path} HTTP/1.1", *(f"{n}: {v}" for n, v in HEADERS), "Connection: close"]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                head = sock.recv(64)
                if head.startswith(b"HTTP/1.1 %d" % want):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"nothing answered {want} on port {port} within {timeout_s:g}s")


@contextmanager
def process(cmd: list[str], log: Path, **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            cmd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            **kwargs,  # type: ignore[call-overload]
        )
    try:
        yield proc
    except BenchError as exc:
        tail = log.read_text(errors="replace")[-2000:]
        raise BenchError(f"{exc}\n--- {log.name} ---\n{tail}") from exc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    # Fields after the command name, which is in parentheses and may contain spaces.
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def tree_cpu_s(root: int) -> float:
    """User + system CPU seconds used so far by `root` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
            except (OSError, ValueError, IndexError):
                continue  # the process ended while we looked
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) * _TICK_S
    return total


def run_wrk_measuring(
    pid: int, port: int, duration_s: float, connections: int, script: Path | None = None
) -> Row:
    """`run_wrk`, also charging the CPU time of process tree `pid` to each request."""
    before = tree_cpu_s(pid)
    row = run_wrk(port, duration_s, connections, script)
    used = tree_cpu_s(pid) - before
    requests = row.rps * duration_s
    row.cpu_us = used / requests * 1e6 if requests else 0.0
    return row


def nginx_conf(workdir: Path, name: str, port: int, location: str, extra_http: str = "") -> Path:
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    {extra_http}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{ {location} }}
    }}
}}
"""
    )
    return conf


def run_wrk(port: int, duration_s: float, connections: int, script: Path | None = None) -> Row:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration_s:g}s",
            "--latency",
            *(["-s", str(script)] if script is not None else []),
            *(arg for n, v in HEADERS for arg in ("-H", f"{n}: {v}")),
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    for match in re.finditer(r"(Non-2xx or 3xx responses|Socket errors):\s*(.*)", out):
        errors += sum(int(n) for n in re.findall(r"\d+", match.group(2)))
    return Row("", rps, _latency(out, "50%"), _latency(out, "99%"), errors)


def _latency(out: str, pct: str) -> float:
    match = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if match is None:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def bundle_files(workdir: Path, origin_url: str) -> tuple[Path, Path, Path]:
    """Signed envelopes for an empty bundle and the example bundle, and the trusted key."""
    key = Ed25519PrivateKey.generate()
    trust = workdir / "bench.pub"
    trust.write_bytes(public_key_pem(key.public_key()))
    origins = [Origin(id="web", url=origin_url)]
    empty = Bundle(name="empty", origins=origins, routes=[Route(origin="web")])
    example = load_config_dir(EXAMPLE).model_copy(
        update={
            "origins": [Origin(id="web", url=origin_url), Origin(id="api", url=origin_url)],
        }
    )
    example = Bundle.model_validate(example.model_dump())
    paths = []
    for name, bundle in (("empty", empty), ("example", example)):
        path = workdir / f"{name}.bundle.json"
        path.write_bytes(sign_bundle(bundle, key).to_bytes())
        paths.append(path)
    return paths[0], paths[1], trust


def admin_ports(workers: int) -> list[int]:
    """`workers` consecutive free ports (worker i serves its admin API on the first + i)."""
    for _ in range(100):
        first = free_port()
        try:
            for offset in range(1, workers):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        return [first + i for i in range(workers)]
    raise BenchError(f"no {workers} consecutive free ports for the admin listeners")


def node_command(
    workdir: Path,
    name: str,
    bundle: Path,
    trust: Path,
    port: int,
    admin_port: int,
    workers: int,
    access_log: str = "",
) -> list[str]:
    config = NodeConfig(
        node_id=f"bench-{name}",
        state_dir=workdir / f"state-{name}",
        trust=[trust],
        listen=f"127.0.0.1:{port}",
        admin=f"127.0.0.1:{admin_port}",
        bundle_file=bundle,
        report_interval_s=5.0,
        access_log=access_log,
    )
    if workers == 1:
        return [
            sys.executable,
            "-m",
            "failsmall.node",
            "--log-level",
            "WARNING",
            "--config-json",
            config.for_worker(0, 1).to_json(),
        ]
    return [
        sys.executable,
        "-c",
        "from failsmall.cli.main import app; app()",
        "node",
        "--node-id",
        config.node_id,
        "--state-dir",
        str(config.state_dir),
        "--trust",
        str(trust),
        "--listen",
        config.listen,
        "--admin",
        config.admin,
        "--bundle",
        str(bundle),
        "--workers",
        str(workers),
        "--report-interval",
        "5",
    ]


def measure(duration_s: float, connections: int, console: Console) -> list[Row]:
    if shutil.which("wrk") is None:
        raise BenchError(f"wrk is not installed; {INSTALL_HINT}")
    have_nginx = shutil.which("nginx") is not None
    if not have_nginx:
        console.print(f"[yellow]nginx not found, using the asyncio origin; {INSTALL_HINT}[/]")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="failsmall-bench-") as tmp:
        workdir = Path(tmp)
        origin_port = free_port()
        origin_url = f"http://127.0.0.1:{origin_port}"
        if have_nginx:
            conf = nginx_conf(
                workdir,
                "origin",
                origin_port,
                f'default_type text/plain; return 200 "{BODY.encode("unicode_escape").decode()}";',
            )
            origin_cmd = ["nginx", "-c", str(conf), "-p", str(conf.parent)]
        else:
            origin_cmd = [sys.executable, str(ROOT / "bench" / "fast_origin.py"), str(origin_port)]
        empty, example, trust = bundle_files(workdir, origin_url)
        # (name, command, port, admin ports to wait for, also measure distinct requests)
        plan: list[tuple[str, list[str], int, list[int], bool]] = []
        if have_nginx:
            stock_port = free_port()
            stock_conf = nginx_conf(
                workdir, "proxy-stock", stock_port, f"proxy_pass http://127.0.0.1:{origin_port};"
            )
            plan.append(
                (
                    STOCK,
                    ["nginx", "-c", str(stock_conf), "-p", str(stock_conf.parent)],
                    stock_port,
                    [],
                    False,
                )
            )
            nginx_port = free_port()
            proxy_conf = nginx_conf(
                workdir,
                "proxy",
                nginx_port,
                'proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";',
                f"upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}",
            )
            plan.append(
                (
                    KEEPALIVE,
                    ["nginx", "-c", str(proxy_conf), "-p", str(proxy_conf.parent)],
                    nginx_port,
                    [],
                    False,
                )
            )
        raw_port = free_port()
        plan.append(
            (
                "byte pass-through (no HTTP)",
                [
                    sys.executable,
                    str(ROOT / "bench" / "passthrough.py"),
                    str(raw_port),
                    str(origin_port),
                ],
                raw_port,
                [],
                False,
            )
        )
        aio_port = free_port()
        plan.append(
            (
                "aiohttp proxy (naive)",
                [
                    sys.executable,
                    str(ROOT / "bench" / "aiohttp_proxy.py"),
                    str(aio_port),
                    origin_url,
                ],
                aio_port,
                [],
                False,
            )
        )
        for name, bundle, workers, access_log in (
            ("failsmall, empty bundle", empty, 1, ""),
            ("failsmall, example bundle", example, 1, ""),
            ("failsmall, example bundle, access log", example, 1, str(workdir / "access.log")),
            ("failsmall, example bundle, 2 workers", example, 2, ""),
        ):
            port = free_port()
            admins = admin_ports(workers)
            plan.append(
                (
                    name,
                    node_command(
                        workdir,
                        re.sub(r"\W+", "-", name.split(",", 1)[1].strip()) + f"-{workers}",
                        bundle,
                        trust,
                        port,
                        admins[0],
                        workers,
                        access_log,
                    ),
                    port,
                    admins,
                    workers == 1 and bundle is example and not access_log,
                )
            )
        with (
            process(origin_cmd, workdir / "origin.log") as origin,
            Progress(console=console, transient=True) as progress,
        ):
            wait_http(origin_port)
            task = progress.add_task("measuring", total=len(plan) + 1)
            progress.update(task, description="origin direct")
            row = run_wrk_measuring(origin.pid, origin_port, duration_s, connections)
            row.name = "origin direct" + (" (nginx)" if have_nginx else " (asyncio)")
            rows.append(row)
            progress.advance(task)
            for name, cmd, port, ready, distinct in plan:
                progress.update(task, description=name)
                log = workdir / (re.sub(r"\W+", "-", name) + ".log")
                env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
                with process(cmd, log, env=env) as proxy:
                    for admin in ready:  # every worker serves its bundle
                        wait_http(admin, "/readyz", timeout_s=30)
                    wait_http(port, timeout_s=30)
                    run_wrk(port, min(1.0, duration_s), connections)  # warm-up
                    row = run_wrk_measuring(proxy.pid, port, duration_s, connections)
                    row.name = name
                    rows.append(row)
                    if distinct:
                        row = run_wrk_measuring(proxy.pid, port, duration_s, connections, DISTINCT)
                        row.name = f"{name}, distinct requests"
                        rows.append(row)
                progress.advance(task)
    stock = next((r for r in rows if r.name == STOCK), rows[0])
    keepalive = next((r for r in rows if r.name == KEEPALIVE), rows[0])
    for row in rows:
        row.ratio_stock = row.rps / stock.rps if stock.rps else 0.0
        row.ratio_keepalive = row.rps / keepalive.rps if keepalive.rps else 0.0
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    if not console.is_terminal:
        console.width = max(console.width, 132)
    if not 1 <= args.duration <= 60:
        console.print("[red]--duration must be between 1 and 60 seconds[/]")
        return 2
    try:
        rows = measure(args.duration, args.connections, console)
    except BenchError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    table = Table(title=f"reverse proxy, wrk -t1 -c{args.connections} -d{args.duration:g}s")
    columns = (
        "configuration",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU µs/req",
        "x stock",
        "x keep-alive",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for r in rows:
        table.add_row(
            r.name,
            f"{r.rps:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            f"{r.cpu_us:.1f}",
            f"{r.ratio_stock:.2f}",
            f"{r.ratio_keepalive:.2f}",
        )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
