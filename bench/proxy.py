"""Proxy throughput, side by side in one run: `python bench/proxy.py [--duration 5 | --quick]`.

Starts an origin (nginx if installed, else a fast asyncio origin) and measures with wrk
(-t1 -c32) four kinds of traffic: a browser GET the same each time; browser GETs with a
distinct path id, query and session cookie each (`bench/distinct.lua`); a JSON POST of about
8 KiB, the same body each time; and about 8 KiB JSON bodies built anew for each request
(`bench/json_body.lua`). Rows: the origin direct; nginx as a reverse proxy (1 worker) with the
stock `proxy_pass` (a new origin connection per request) and tuned with upstream keep-alive;
a naive aiohttp proxy; a uvloop forwarder that frames requests and responses and does nothing
else (`bench/uvloop_forwarder.py`: what any proxy whose data path runs in Python on uvloop
pays, the floor under the node); `failsmall node` with an empty bundle, with the managed
ruleset as shipped, with the example site; nginx (keep-alive upstream) + ModSecurity v3 + OWASP
CRS at paranoia level 1 in blocking mode, from Debian's packages; and `failsmall node
--workers 2` with the managed ruleset. A WAF row is measured only after an attack in the query
and one in a JSON body were both answered 403 through it.

Every ratio is paired: each cell of every other row is measured right after keep-alive nginx
(kept running for the whole run) is measured with the same column's traffic, and the cell's
ratio is its req/s over that nginx figure. One 5 s measurement moves by 10-20% with the
machine's load, which comes and goes in phases of minutes, and the rows of a round are measured
minutes apart: a ratio between figures seconds apart is not moved by a slow phase, a ratio
between figures minutes apart is. Ratios between two other rows (ModSecurity, stock nginx,
`--workers 2` ÷ 1) are the quotients of their paired ratios. The keep-alive nginx row shows the
median of its measurements. `--rounds N` measures every row N times in turn and reports each
figure's (and paired ratio's) median.

Prints req/s, p50/p99, the CPU time each request cost the proxy (all its processes, user +
system), the ratios to both nginx configurations, and the issue's targets next to the
measured ratios; `--json` prints one JSON document, `--markdown` the tables for
docs/benchmarks.md. Exit status: 0 when every row was measured or skipped (a missing nginx or
ModSecurity package skips its rows, saying how to install it), 1 when a row failed, 2 when
the bench cannot run at all (wrk missing, bad arguments).

Needs: wrk; optional: nginx, libnginx-mod-http-modsecurity, modsecurity-crs
(apt-get install -y wrk nginx libnginx-mod-http-modsecurity modsecurity-crs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import assert_never

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from failsmall.build import load_config_dir
from failsmall.children import spawn
from failsmall.managed.measure import managed_bundle
from failsmall.model import Bundle, Origin, Route, sign_bundle
from failsmall.model.envelope import public_key_pem
from failsmall.model.traffic import Limits
from failsmall.node.config import NodeConfig
from failsmall.transport.natsd import free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
#: The JSON order of the JSON columns, each "@" its token (`bench/json_body.lua`).
ORDER = BENCH / "json_order.txt"
EXAMPLE = ROOT / "examples" / "site"
BODY = "hello from the origin\n" * 28
HEADERS = (
    ("Host", "shop.example"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
    ("Accept", "text/html"),
    ("Accept-Language", "en"),
)
WRK_TIMEOUT = "30s"  # nginx + ModSecurity answers ~8 KiB JSON bodies in seconds under -c32

ORIGIN = "origin direct"
STOCK = "nginx, stock proxy_pass"
KEEPALIVE = "nginx, upstream keep-alive"
NAIVE = "naive aiohttp proxy"
FORWARDER = "uvloop forwarder, framing only"
EMPTY = "failsmall node, empty bundle"
MANAGED = "failsmall node, managed ruleset as shipped"
EXAMPLE_SITE = "failsmall node, example site"
MODSEC = "nginx + ModSecurity v3 + OWASP CRS PL1"
WORKERS2 = "failsmall node --workers 2, managed ruleset"

NGINX_HINT = "install it with: apt-get install -y nginx"
MODSEC_PACKAGES = "libnginx-mod-http-modsecurity modsecurity-crs"
MODSEC_HINT = f"install them with: apt-get install -y {MODSEC_PACKAGES}"
MODSEC_MODULE = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so")
MODSEC_CONF = Path("/etc/nginx/modsecurity.conf")  # Debian's recommended ModSecurity settings
UNICODE_MAPPING = Path("/etc/nginx/unicode.mapping")
CRS_SETUP = Path("/etc/modsecurity/crs/crs-setup.conf")
CRS_RULES = Path("/usr/share/modsecurity-crs/rules")
CRS_EXCLUSIONS = (
    Path("/etc/modsecurity/crs/REQUEST-900-EXCLUSION-RULES-BEFORE-CRS.conf"),
    Path("/etc/modsecurity/crs/RESPONSE-999-EXCLUSION-RULES-AFTER-CRS.conf"),
)


class BenchError(Exception):
    """The benchmark, or one row of it, cannot run; the message says what went wrong."""


class Column(StrEnum):
    """The traffic each row is measured with."""

    GET = "get"
    GET_DISTINCT = "get_distinct"
    JSON = "json"
    JSON_DISTINCT = "json_distinct"

    @property
    def label(self) -> str:
        match self:
            case Column.GET:
                return "browser GET, same each time"
            case Column.GET_DISTINCT:
                return "browser GET, distinct query and cookies"
            case Column.JSON:
                return "JSON POST ~8 KiB, same body"
            case Column.JSON_DISTINCT:
                return "JSON POST ~8 KiB, distinct bodies"
            case _:
                assert_never(self)

    def wrk_script(self) -> tuple[list[str], list[str]]:
        """wrk's options for this column's Lua script, and the arguments after the URL."""
        match self:
            case Column.GET:
                return [], []
            case Column.GET_DISTINCT:
                return ["-s", str(BENCH / "distinct.lua")], []
            case Column.JSON:
                return ["-s", str(BENCH / "json_body.lua")], ["--", "same", str(ORDER)]
            case Column.JSON_DISTINCT:
                return ["-s", str(BENCH / "json_body.lua")], ["--", "distinct", str(ORDER)]
            case _:
                assert_never(self)


class Outcome(StrEnum):
    """What became of one row."""

    MEASURED = "measured"
    SKIPPED = "skipped"  # an optional tool is not installed; `reason` says how to install it
    FAILED = "failed"  # it did not start, did not block an attack, or wrk failed; see `reason`


@dataclass
class Cell:
    """One row measured with one column's traffic."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx responses and socket errors (connect, read, write, timeout)
    cpu_us: float = 0.0  # the proxy's user + system CPU per request, all its processes
    user_us: float = 0.0  # its user CPU alone: the proxy's own code, less moved by the load
    reference_rps: float | None = None
    """Keep-alive nginx's req/s measured just before this cell with the same traffic."""
    ratio_keepalive: float | None = None
    """rps ÷ reference_rps (with rounds: the median of the rounds' paired ratios)."""
    ratio_stock: float | None = None


@dataclass
class Row:
    """One configuration: measured in every column, skipped, or failed with a reason."""

    name: str
    outcome: Outcome
    reason: str = ""
    cells: dict[Column, Cell] = field(default_factory=dict)


@dataclass(frozen=True)
class Contender:
    """A proxy to start and measure: its command, its port, and how to know it is ready."""

    name: str
    command: list[str]
    port: int
    admin_ports: tuple[int, ...] = ()  # each serves /readyz once its worker has the bundle
    waf: bool = False  # must answer attacks 403 before it is measured
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Unavailable:
    """A row whose tool is not installed."""

    name: str
    reason: str


@dataclass(frozen=True)
class Goal:
    """A target from the performance issue: `row` ÷ `baseline` ≥ `minimum` in `columns`."""

    label: str
    row: str
    baseline: str
    minimum: float
    columns: tuple[Column, ...]


GOALS = (
    Goal("empty bundle ≥ 0.8× keep-alive nginx", EMPTY, KEEPALIVE, 0.8, tuple(Column)),
    Goal(
        "managed, distinct GETs ≥ 0.5× keep-alive nginx",
        MANAGED,
        KEEPALIVE,
        0.5,
        (Column.GET_DISTINCT,),
    ),
    Goal(
        "managed, distinct ~8 KiB JSON ≥ 0.25× keep-alive nginx",
        MANAGED,
        KEEPALIVE,
        0.25,
        (Column.JSON_DISTINCT,),
    ),
    Goal("managed ≥ 30× nginx + ModSecurity + CRS PL1", MANAGED, MODSEC, 30.0, tuple(Column)),
)


class Verdict(StrEnum):
    MET = "met"
    NOT_MET = "not met"
    UNMEASURED = "unmeasured"  # the row or its baseline was skipped or failed


@dataclass(frozen=True)
class GoalResult:
    label: str
    column: Column
    ratio: float | None
    minimum: float
    verdict: Verdict


# --- processes -------------------------------------------------------------------------------


def http_status(port: int, request: bytes, timeout_s: float = 10.0) -> int:
    """Send one raw request to 127.0.0.1:`port` and return the response's status code."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise BenchError(f"port {port} closed the connection without a response")
            head += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if match is None:
        raise BenchError(f"port {port} answered something that is not HTTP: {head[:60]!r}")
    return int(match.group(1))


def raw_request(method: str, target: str, body: bytes = b"", content_type: str = "") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in HEADERS)]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


ATTACKS = (
    ("an XSS in the query", raw_request("GET", "/search?q=%3Cscript%3Ealert(1)%3C/script%3E")),
    (
        "an SQL injection in a JSON body",
        raw_request(
            "POST",
            "/checkout",
            b'{"coupon": "x\' UNION SELECT password FROM users--"}',
            "application/json",
        ),
    ),
)


def check_blocks_attacks(port: int) -> None:
    """Raise unless every attack in ATTACKS is answered 403: a WAF that is off is not measured."""
    for what, request in ATTACKS:
        status = http_status(port, request)
        if status != 403:
            raise BenchError(
                f"{what} was answered {status}, not 403: the WAF is not inspecting, so the row "
                "is not measured"
            )


def wait_http(
    port: int,
    path: str = "/",
    timeout_s: float = 15.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until `port` answers GET `path` with 200; give up early if `proc` has exited."""
    deadline = time.monotonic() + timeout_s
    last = "no connection"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"it exited with status {proc.returncode} before serving")
        try:
            status = http_status(port, raw_request("GET", path), timeout_s=1)
        except (OSError, BenchError) as exc:
            last = str(exc)
        else:
            if status == 200:
                return
            last = f"status {status}"
        time.sleep(0.1)
    raise BenchError(f"nothing answered 200 on port {port}{path} within {timeout_s:g}s ({last})")


@contextmanager
def process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` for the duration of the block; a BenchError inside gets the log's tail. The
    process dies with the bench (`failsmall.children.spawn`), even when the bench is killed, so
    no origin or proxy is left serving, and loading the machine, after it."""
    proc = spawn(cmd, log, {**os.environ, **(env or {})})
    try:
        yield proc
    except BenchError as exc:
        tail = log.read_text(errors="replace")[-1500:]
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
    return sum(tree_cpu_split_s(root))


def tree_cpu_split_s(root: int) -> tuple[float, float]:
    """User and system CPU seconds used so far by `root` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(int(_stat_fields(int(entry.name))[1]), []).append(
                    int(entry.name)
                )
            except (OSError, ValueError, IndexError):
                continue  # the process ended while we looked
    user, system, todo = 0.0, 0.0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue  # the process ended while we looked
        user += int(fields[11]) * _TICK_S
        system += int(fields[12]) * _TICK_S
    return user, system


# --- wrk -------------------------------------------------------------------------------------


def run_wrk(port: int, duration_s: int, connections: int, column: Column) -> Cell:
    options, script_args = column.wrk_script()
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        *options,
        *(arg for n, v in HEADERS for arg in ("-H", f"{n}: {v}")),
        f"http://127.0.0.1:{port}/",
        *script_args,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {duration_s + 60}s") from exc
    rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if done.returncode != 0 or rps is None:
        raise BenchError(f"wrk failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    errors = 0
    for match in re.finditer(r"(Non-2xx or 3xx responses|Socket errors):\s*(.*)", done.stdout):
        errors += sum(int(n) for n in re.findall(r"\d+", match.group(2)))
    return Cell(
        float(rps.group(1)), _latency(done.stdout, "50%"), _latency(done.stdout, "99%"), errors
    )


def _latency(out: str, pct: str) -> float:
    match = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if match is None:
        return 0.0
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def drain(pid: int, timeout_s: float = 60.0) -> None:
    """Wait until process tree `pid` is idle: requests queued by an earlier wrk run are done.

    A proxy slower than the offered load (nginx + ModSecurity on JSON bodies) still works
    through the requests wrk left behind when it stopped; without this the next measurement
    would be charged with them. Idle: under 10 ms of CPU in 200 ms.
    """
    deadline = time.monotonic() + timeout_s
    used = tree_cpu_s(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = tree_cpu_s(pid)
        if now - used < 0.01:
            return
        used = now
    raise BenchError(f"still busy {timeout_s:g}s after wrk stopped")


def measure_cell(pid: int, port: int, duration_s: int, connections: int, column: Column) -> Cell:
    """`run_wrk` on an idle proxy, also charging the CPU time of process tree `pid` to each
    request."""
    drain(pid)
    user_before, system_before = tree_cpu_split_s(pid)
    cell = run_wrk(port, duration_s, connections, column)
    user, system = tree_cpu_split_s(pid)
    requests = cell.rps * duration_s
    if requests:
        cell.user_us = (user - user_before) / requests * 1e6
        cell.cpu_us = cell.user_us + (system - system_before) / requests * 1e6
    return cell


# --- configurations --------------------------------------------------------------------------


def nginx_conf(
    workdir: Path, name: str, port: int, location: str, http: str = "", main: str = ""
) -> list[str]:
    """An nginx command line running a 1-worker config of its own under `workdir`/`name`."""
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
{main}
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
    {http}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{ {location} }}
    }}
}}
"""
    )
    return ["nginx", "-c", str(conf), "-p", str(prefix)]


KEEPALIVE_LOCATION = (
    'proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection "";'
)


def keepalive_upstream(origin_port: int) -> str:
    return f"upstream origin {{ server 127.0.0.1:{origin_port}; keepalive 64; }}"


def modsecurity_missing() -> str:
    """Why the ModSecurity row cannot run here, or "" when it can."""
    missing = [
        str(p)
        for p in (MODSEC_MODULE, MODSEC_CONF, UNICODE_MAPPING, CRS_SETUP, CRS_RULES)
        if not p.exists()
    ]
    if missing:
        return f"{', '.join(missing)} not found; {MODSEC_HINT}"
    return ""


def modsecurity_rules(workdir: Path) -> Path:
    """ModSecurity + CRS configured as Debian's README.Debian says, in `workdir`.

    Debian's /etc/nginx/modsecurity.conf with `SecRuleEngine On` (blocking) instead of
    `DetectionOnly`, request body inspection on (as shipped), then the CRS: crs-setup.conf
    (anomaly scoring, inbound threshold 5), paranoia level 1, and the rules with `Include`
    for `IncludeOptional` as the README asks. Only the log and temporary paths move to
    `workdir`, and the status engine is off (no network from the bench).
    """
    prefix = workdir / "modsecurity"
    prefix.mkdir(parents=True, exist_ok=True)
    settings = MODSEC_CONF.read_text()
    for pattern, replacement in (
        (r"^SecRuleEngine .*$", "SecRuleEngine On"),
        (r"^SecRequestBodyAccess .*$", "SecRequestBodyAccess On"),
        (r"^SecAuditLog .*$", f"SecAuditLog {prefix}/audit.log"),
        (r"^SecTmpDir .*$", f"SecTmpDir {prefix}/"),
        (r"^SecDataDir .*$", f"SecDataDir {prefix}/"),
        (r"^SecUnicodeMapFile \S+", f"SecUnicodeMapFile {UNICODE_MAPPING}"),
        (r"^SecStatusEngine .*$", "SecStatusEngine Off"),
    ):
        settings, count = re.subn(pattern, replacement, settings, flags=re.M)
        if count != 1 and pattern != r"^SecStatusEngine .*$":
            raise BenchError(f"{MODSEC_CONF} has no single `{pattern}` line to configure")
    (prefix / "modsecurity.conf").write_text(settings)
    rules = prefix / "rules.conf"
    rules.write_text(
        "\n".join(
            [
                f"Include {prefix}/modsecurity.conf",
                f"Include {CRS_SETUP}",
                'SecAction "id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=1"',
                *(f"Include {p}" for p in CRS_EXCLUSIONS[:1] if p.exists()),
                f"Include {CRS_RULES}/*.conf",
                *(f"Include {p}" for p in CRS_EXCLUSIONS[1:] if p.exists()),
                "",
            ]
        )
    )
    return rules


def bundle_files(workdir: Path, origin_url: str) -> tuple[dict[str, Path], Path]:
    """Signed envelopes for the empty, managed and example bundles, and the trusted key."""
    key = Ed25519PrivateKey.generate()
    trust = workdir / "bench.pub"
    trust.write_bytes(public_key_pem(key.public_key()))
    origins = [Origin(id="web", url=origin_url)]
    routes = [Route(origin="web")]
    managed = managed_bundle(1).model_copy(
        update={"name": "managed", "origins": origins, "routes": routes, "limits": Limits()}
    )
    example = load_config_dir(EXAMPLE).model_copy(
        update={"origins": [Origin(id="web", url=origin_url), Origin(id="api", url=origin_url)]}
    )
    paths = {}
    for name, bundle in (
        ("empty", Bundle(name="empty", origins=origins, routes=routes)),
        ("managed", managed),
        ("example", example),
    ):
        path = workdir / f"{name}.bundle.json"
        signed = sign_bundle(Bundle.model_validate(bundle.model_dump()), key)
        path.write_bytes(signed.to_bytes())
        paths[name] = path
    return paths, trust


def admin_ports(workers: int) -> tuple[int, ...]:
    """`workers` consecutive free ports (worker i serves its admin API on the first + i)."""
    for _ in range(100):
        first = free_port()
        try:
            for offset in range(1, workers):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", first + offset))
        except OSError:
            continue
        return tuple(first + i for i in range(workers))
    raise BenchError(f"no {workers} consecutive free ports for the admin listeners")


def node_contender(
    name: str, workdir: Path, bundle: Path, trust: Path, workers: int, waf: bool
) -> Contender:
    port = free_port()
    admins = admin_ports(workers)
    slug = re.sub(r"\W+", "-", name).strip("-")
    config = NodeConfig(
        node_id=f"bench-{slug}",
        state_dir=workdir / f"state-{slug}",
        trust=[trust],
        listen=f"127.0.0.1:{port}",
        admin=f"127.0.0.1:{admins[0]}",
        bundle_file=bundle,
        report_interval_s=5.0,
    )
    if workers == 1:
        cmd = [
            sys.executable,
            "-m",
            "failsmall.node",
            "--log-level",
            "WARNING",
            "--config-json",
            config.for_worker(0, 1).to_json(),
        ]
    else:
        cmd = [
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
    return Contender(name, cmd, port, admins, waf, {"PYTHONPATH": str(ROOT / "src")})


def plan(workdir: Path, origin_port: int, have_nginx: bool) -> list[Contender | Unavailable]:
    """Every row after the origin, in the order they are measured."""
    origin_url = f"http://127.0.0.1:{origin_port}"
    bundles, trust = bundle_files(workdir, origin_url)
    rows: list[Contender | Unavailable] = []
    if have_nginx:
        port = free_port()
        location = f"proxy_pass http://127.0.0.1:{origin_port};"
        rows.append(Contender(STOCK, nginx_conf(workdir, "stock", port, location), port))
        port = free_port()
        cmd = nginx_conf(
            workdir, "keepalive", port, KEEPALIVE_LOCATION, keepalive_upstream(origin_port)
        )
        rows.append(Contender(KEEPALIVE, cmd, port))
    else:
        rows += [Unavailable(STOCK, f"nginx not found; {NGINX_HINT}")]
        rows += [Unavailable(KEEPALIVE, f"nginx not found; {NGINX_HINT}")]
    port = free_port()
    cmd = [sys.executable, str(BENCH / "aiohttp_proxy.py"), str(port), origin_url]
    rows.append(Contender(NAIVE, cmd, port))
    port = free_port()
    cmd = [sys.executable, str(BENCH / "uvloop_forwarder.py"), str(port), origin_url]
    rows.append(Contender(FORWARDER, cmd, port))
    rows.append(node_contender(EMPTY, workdir, bundles["empty"], trust, 1, waf=False))
    rows.append(node_contender(MANAGED, workdir, bundles["managed"], trust, 1, waf=True))
    rows.append(node_contender(EXAMPLE_SITE, workdir, bundles["example"], trust, 1, waf=True))
    if have_nginx:
        missing = modsecurity_missing()
    else:
        missing = f"nginx not found; {NGINX_HINT} {MODSEC_PACKAGES}"
    if missing:
        rows.append(Unavailable(MODSEC, missing))
    else:
        port = free_port()
        cmd = nginx_conf(
            workdir,
            "modsecurity",
            port,
            KEEPALIVE_LOCATION,
            keepalive_upstream(origin_port)
            + f"\n    modsecurity on;\n    modsecurity_rules_file {modsecurity_rules(workdir)};",
            f"load_module {MODSEC_MODULE};",
        )
        rows.append(Contender(MODSEC, cmd, port, waf=True))
    rows.append(node_contender(WORKERS2, workdir, bundles["managed"], trust, 2, waf=True))
    return rows


# --- the run ---------------------------------------------------------------------------------

Step = Callable[[str], None]


class BaselineError(Exception):
    """Keep-alive nginx, which every ratio is paired with, stopped serving: no row of the run
    can be compared any more."""


class Reference:
    """Keep-alive nginx, running for the whole run and measured just before every cell of every
    other row, with that cell's traffic. Its row in a round is the median of those
    measurements."""

    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, duration_s: int, connections: int
    ) -> None:
        self.proc = proc
        self.port = port
        self.duration_s = duration_s
        self.connections = connections
        self.cells: dict[Column, list[Cell]] = {c: [] for c in Column}

    def measure(self, column: Column) -> Cell:
        if self.proc.poll() is not None:
            raise BaselineError(f"{KEEPALIVE} exited with status {self.proc.returncode}")
        try:
            cell = measure_cell(self.proc.pid, self.port, self.duration_s, self.connections, column)
        except BenchError as exc:
            raise BaselineError(f"{KEEPALIVE} could not be measured: {exc}") from exc
        self.cells[column].append(cell)
        return cell

    def take_row(self) -> Row:
        """This round's row (each cell the median of its measurements), starting anew."""
        cells = {c: median_cell(self.cells[c]) for c in Column}
        for cell in cells.values():
            cell.reference_rps, cell.ratio_keepalive = cell.rps, 1.0
        self.cells = {c: [] for c in Column}
        return Row(KEEPALIVE, Outcome.MEASURED, cells=cells)


def paired(cell: Cell, reference: Cell | None) -> Cell:
    """`cell` with its ratio to the `reference` measured just before it (none without one)."""
    if reference is not None and reference.rps:
        cell.reference_rps = reference.rps
        cell.ratio_keepalive = cell.rps / reference.rps
    return cell


def measure_paired(
    pid: int,
    port: int,
    reference: Reference | None,
    duration_s: int,
    warmup: bool,
    connections: int,
    column: Column,
) -> Cell:
    """The reference, then (after a 1 s warm-up when `warmup`) process `pid` on `port`."""
    before = reference.measure(column) if reference is not None else None
    if warmup:
        drain(pid)
        run_wrk(port, 1, connections, column)
    return paired(measure_cell(pid, port, duration_s, connections, column), before)


def measure_contender(
    contender: Contender,
    workdir: Path,
    reference: Reference | None,
    duration_s: int,
    warmup: bool,
    connections: int,
    step: Step,
) -> Row:
    log = workdir / (re.sub(r"\W+", "-", contender.name).strip("-") + ".log")
    row = Row(contender.name, Outcome.MEASURED)
    with process(contender.command, log, contender.env) as proxy:
        for admin in contender.admin_ports:  # every worker serves its bundle
            wait_http(admin, "/readyz", timeout_s=60, proc=proxy)
        wait_http(contender.port, timeout_s=60, proc=proxy)
        if contender.waf:
            check_blocks_attacks(contender.port)
        for column in Column:
            step(f"{contender.name}: {column.label}")
            row.cells[column] = measure_paired(
                proxy.pid, contender.port, reference, duration_s, warmup, connections, column
            )
        if proxy.poll() is not None:
            raise BenchError(f"it exited with status {proxy.returncode} while measured")
    return row


def measure_round(
    title: str,
    origin_name: str,
    origin: tuple[int, int],
    contenders: Sequence[Contender | Unavailable],
    workdir: Path,
    reference: Reference | None,
    duration_s: int,
    warmup: bool,
    connections: int,
    step: Step,
    settle: Callable[[list[Row]], None],
) -> list[Row]:
    """One round (`title` before each step's name): the origin alone (`origin`: its pid and
    port), then every planned row in turn, each cell paired with a measurement of `reference`,
    whose row is built from those; `settle` told of the rows after each."""

    def titled(what: str) -> None:
        step(title + what)

    origin_pid, origin_port = origin
    row = Row(origin_name, Outcome.MEASURED)
    for column in Column:
        titled(f"{row.name}: {column.label}")
        row.cells[column] = measure_paired(
            origin_pid, origin_port, reference, duration_s, False, connections, column
        )
    rows = [row]
    for planned in contenders:
        match planned:
            case Unavailable(name, reason):
                rows.append(Row(name, Outcome.SKIPPED, reason))
            case Contender(name=name) if reference is not None and name == KEEPALIVE:
                rows.append(Row(KEEPALIVE, Outcome.MEASURED))  # filled in at the round's end
            case Contender():
                try:
                    row = measure_contender(
                        planned, workdir, reference, duration_s, warmup, connections, titled
                    )
                except (BenchError, OSError, subprocess.SubprocessError) as exc:
                    row = Row(planned.name, Outcome.FAILED, str(exc))
                rows.append(row)
                settle(rows)
            case _:
                assert_never(planned)
    if reference is not None:
        rows = [reference.take_row() if r.name == KEEPALIVE else r for r in rows]
    return rows


def measure(
    duration_s: int, warmup: bool, connections: int, console: Console, rounds: int = 1
) -> tuple[list[list[Row]], bool]:
    """Every row, in one run of `rounds` rounds, each measuring every row in turn against the
    one origin, every cell paired with keep-alive nginx (when nginx is installed). Returns
    each round's rows and whether nginx is the origin."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed; install it with: apt-get install -y wrk")
    have_nginx = shutil.which("nginx") is not None
    measured_rounds: list[list[Row]] = []
    with tempfile.TemporaryDirectory(prefix="failsmall-bench-") as tmp, ExitStack() as running:
        workdir = Path(tmp)
        origin_port = free_port()
        if have_nginx:
            origin_cmd = nginx_conf(
                workdir,
                "origin",
                origin_port,
                f'default_type text/plain; return 200 "{BODY.encode("unicode_escape").decode()}";',
            )
        else:
            console.print(
                f"[yellow]nginx not found, the origin is bench/fast_origin.py; {NGINX_HINT}"
            )
            origin_cmd = [sys.executable, str(BENCH / "fast_origin.py"), str(origin_port)]
        contenders = plan(workdir, origin_port, have_nginx)
        origin = running.enter_context(process(origin_cmd, workdir / "origin.log"))
        wait_http(origin_port, proc=origin)
        reference: Reference | None = None
        for planned in contenders:
            if isinstance(planned, Contender) and planned.name == KEEPALIVE:
                log = workdir / "keepalive-reference.log"
                proc = running.enter_context(process(planned.command, log))
                wait_http(planned.port, proc=proc)
                reference = Reference(proc, planned.port, duration_s, connections)
        progress = running.enter_context(Progress(console=console, transient=True))
        measured = sum(isinstance(c, Contender) and c.name != KEEPALIVE for c in contenders)
        measured += 1  # the origin
        task = progress.add_task("starting", total=rounds * measured * len(Column))

        def step(what: str) -> None:
            progress.update(task, description=what)
            progress.advance(task)

        def settle(rows: list[Row]) -> None:
            """The bar at the cells of every row so far (a failed row ends early)."""
            done = len(measured_rounds) * measured + sum(
                r.outcome is Outcome.FAILED or bool(r.cells) for r in rows
            )
            progress.update(task, completed=done * len(Column))

        for number in range(1, rounds + 1):
            measured_rounds.append(
                measure_round(
                    f"round {number}/{rounds}: " if rounds > 1 else "",
                    ORIGIN + (" (nginx)" if have_nginx else " (asyncio)"),
                    (origin.pid, origin_port),
                    contenders,
                    workdir,
                    reference,
                    duration_s,
                    warmup,
                    connections,
                    step,
                    settle,
                )
            )
    return measured_rounds, have_nginx


# --- reading ---------------------------------------------------------------------------------


def combine(rounds: Sequence[Sequence[Row]]) -> list[Row]:
    """One row per configuration from the rounds of a run (each measuring the same rows in the
    same order), with the ratios to both nginx rows: each figure of a cell the median of its
    rounds, its errors their sum. A row failed in any round is failed, with that round's
    reason."""
    rows: list[Row] = []
    for same in zip(*rounds, strict=True):
        first = same[0]
        failed = next((r for r in same if r.outcome is Outcome.FAILED), None)
        if failed is not None:
            rows.append(Row(first.name, Outcome.FAILED, failed.reason))
        elif first.outcome is Outcome.SKIPPED:
            rows.append(Row(first.name, Outcome.SKIPPED, first.reason))
        else:
            rows.append(
                Row(
                    first.name,
                    Outcome.MEASURED,
                    cells={c: median_cell([r.cells[c] for r in same]) for c in Column},
                )
            )
    add_ratios(rows)
    return rows


def medians(cells: Sequence[object], names: Sequence[str]) -> dict[str, float]:
    """The median of each figure `names` of `cells` (one column of one row, round after round),
    by name: what a bench's cell of medians is built from."""
    return {name: statistics.median(getattr(c, name) for c in cells) for name in names}


def median_cell(cells: Sequence[Cell]) -> Cell:
    """The median of each figure of `cells` (one column of one row, round after round), its
    paired figures' too when every cell has them, and the errors of all."""
    figures = medians(cells, ("rps", "p50_ms", "p99_ms", "cpu_us", "user_us"))
    cell = Cell(**figures, errors=sum(c.errors for c in cells))
    if all(c.ratio_keepalive is not None for c in cells):
        cell.ratio_keepalive = statistics.median(c.ratio_keepalive or 0.0 for c in cells)
        cell.reference_rps = statistics.median(c.reference_rps or 0.0 for c in cells)
    return cell


def find(rows: Sequence[Row], name: str) -> Row | None:
    return next((r for r in rows if r.name == name and r.outcome is Outcome.MEASURED), None)


def ratio(rows: Sequence[Row], name: str, baseline: str, column: Column) -> float | None:
    """`name`'s req/s ÷ `baseline`'s in `column`: the quotient of their ratios to keep-alive
    nginx, each paired with a measurement of it just before (of their req/s when unpaired)."""
    row, base = find(rows, name), find(rows, baseline)
    if row is None or base is None:
        return None
    mine, theirs = row.cells[column], base.cells[column]
    if mine.ratio_keepalive is not None and theirs.ratio_keepalive is not None:
        return mine.ratio_keepalive / theirs.ratio_keepalive if theirs.ratio_keepalive else None
    return mine.rps / theirs.rps if theirs.rps else None


def add_ratios(rows: list[Row]) -> None:
    """Each cell's ratio to stock nginx (its ratio to keep-alive nginx is paired already)."""
    for row in rows:
        for column, cell in row.cells.items():
            cell.ratio_stock = ratio(rows, row.name, STOCK, column)


def goal_results(rows: Sequence[Row]) -> list[GoalResult]:
    results = []
    for goal in GOALS:
        for column in goal.columns:
            value = ratio(rows, goal.row, goal.baseline, column)
            if value is None:
                verdict = Verdict.UNMEASURED
            else:
                verdict = Verdict.MET if value >= goal.minimum else Verdict.NOT_MET
            results.append(GoalResult(goal.label, column, value, goal.minimum, verdict))
    return results


def conditions(duration_s: int, connections: int, have_nginx: bool, rounds: int = 1) -> str:
    cores = os.cpu_count() or 0
    origin = "nginx (1 worker)" if have_nginx else "bench/fast_origin.py"
    medians = (
        f"; every figure the median of {rounds} rounds, each measuring every row in turn"
        if rounds > 1
        else ""
    )
    paired = (
        "; each cell's ratio to keep-alive nginx is to keep-alive nginx measured just before it "
        "with the same traffic"
        if have_nginx
        else ""
    )
    return (
        f"wrk -t1 -c{connections} -d{duration_s}s{medians}{paired}; origin: {origin}. wrk, "
        "the origin "
        f"and the proxy all share this machine's {cores} cores (no pinning): `--workers 2` "
        "competes with wrk and the origin for them"
    )


def load_text(load: tuple[float, ...]) -> str:
    return "1-minute load average before/after: " + " / ".join(f"{x:.2f}" for x in load)


def cpu_ratio(rows: Sequence[Row], name: str, baseline: str, column: Column) -> float | None:
    """CPU per request of `baseline` ÷ that of `name`: how many of `name`'s requests fit in the
    CPU time one of `baseline`'s takes. Steadier than req/s on a loaded machine."""
    row, base = find(rows, name), find(rows, baseline)
    if row is None or base is None or not row.cells[column].cpu_us:
        return None
    return base.cells[column].cpu_us / row.cells[column].cpu_us


def fmt_ratio(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_table(
    console: Console, rows: Sequence[Row], header: str, load: tuple[float, ...]
) -> None:
    table = Table(title="reverse proxy: req/s (× keep-alive nginx / × stock nginx)")
    table.add_column("configuration")
    for column in Column:
        table.add_column(column.label, justify="right")
    for row in rows:
        match row.outcome:
            case Outcome.MEASURED:
                cells = []
                for column in Column:
                    cell = row.cells[column]
                    errors = f"\n[red]{cell.errors} errors[/]" if cell.errors else ""
                    cells.append(
                        f"{cell.rps:,.0f} ({fmt_ratio(cell.ratio_keepalive)} / "
                        f"{fmt_ratio(cell.ratio_stock)})\n"
                        f"[dim]p99 {cell.p99_ms:.1f} ms · {cell.cpu_us:.0f} µs CPU[/]{errors}"
                    )
                table.add_row(row.name, *cells)
            case Outcome.SKIPPED | Outcome.FAILED:
                colour = "yellow" if row.outcome is Outcome.SKIPPED else "red"
                reason = row.reason.splitlines()[0] if row.reason else ""
                table.add_row(row.name, f"[{colour}]{row.outcome.value}: {reason}[/]")
            case _:
                assert_never(row.outcome)
    table.caption = f"{header}; {load_text(load)}"
    console.print(table)
    for row in rows:
        if row.outcome is Outcome.FAILED and "\n" in row.reason:
            console.print(f"[red]{row.name} failed:[/] {row.reason}", markup=False)
    goals = Table(title="targets (ratios measured in this run)")
    for name in ("target", "column", "measured", "verdict"):
        goals.add_column(name, justify="right" if name == "measured" else "left")
    for result in goal_results(rows):
        colour = {"met": "green", "not met": "red", "unmeasured": "yellow"}[result.verdict]
        goals.add_row(
            result.label,
            result.column.label,
            fmt_ratio(result.ratio),
            f"[{colour}]{result.verdict.value}[/]",
        )
    console.print(goals)
    workers = [ratio(rows, WORKERS2, MANAGED, c) for c in Column]
    console.print(
        "--workers 2 ÷ 1 worker (managed): "
        + ", ".join(f"{c.label} {fmt_ratio(w)}" for c, w in zip(Column, workers, strict=True))
    )
    modsec = [ratio(rows, MANAGED, MODSEC, c) for c in Column]
    console.print(
        "managed ÷ nginx + ModSecurity + CRS: "
        + ", ".join(f"{c.label} {fmt_ratio(m, 1)}" for c, m in zip(Column, modsec, strict=True))
    )


def markdown(rows: Sequence[Row], header: str, load: tuple[float, ...]) -> str:
    def k(rps: float) -> str:
        return f"{rps / 1000:.1f}k" if rps >= 1000 else f"{rps:.0f}"

    lines = [
        f"{header}; {load_text(load)}.",
        "Cells: req/s (× keep-alive nginx / × stock nginx).",
        "",
        "| proxy | " + " | ".join(c.label for c in Column) + " |",
        "|---|" + "---:|" * len(Column),
    ]
    for row in rows:
        if row.outcome is Outcome.MEASURED:
            cells = [
                f"{k(c.rps)} ({fmt_ratio(c.ratio_keepalive)} / {fmt_ratio(c.ratio_stock)})"
                + (f", {c.errors} errors" if c.errors else "")
                for c in (row.cells[col] for col in Column)
            ]
        else:
            cells = [row.outcome.value] + [""] * (len(Column) - 1)
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    modsec = [fmt_ratio(ratio(rows, MANAGED, MODSEC, c), 1) for c in Column]
    lines.append("| managed ÷ ModSecurity + CRS | " + " | ".join(modsec) + " |")
    workers = [fmt_ratio(ratio(rows, WORKERS2, MANAGED, c)) for c in Column]
    lines.append("| `--workers 2` ÷ 1 worker | " + " | ".join(workers) + " |")
    lines += [
        "",
        "CPU µs per request (the proxy's processes, user + system):",
        "",
        "| proxy | " + " | ".join(c.label for c in Column) + " |",
        "|---|" + "---:|" * len(Column),
    ]
    for row in rows:
        if row.outcome is Outcome.MEASURED:
            cpu = [f"{row.cells[c].cpu_us:,.0f}" for c in Column]
            lines.append(f"| {row.name} | " + " | ".join(cpu) + " |")
    by_cpu = [fmt_ratio(cpu_ratio(rows, MANAGED, MODSEC, c), 1) for c in Column]
    lines.append("| ModSecurity + CRS ÷ managed | " + " | ".join(by_cpu) + " |")
    lines += ["", "| target | column | measured | |", "|---|---|---:|---|"]
    for result in goal_results(rows):
        lines.append(
            f"| {result.label} | {result.column.label} | {fmt_ratio(result.ratio)} | "
            f"{result.verdict.value} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    parser.add_argument(
        "--quick", action="store_true", help="1 s per measurement, no warm-up (a smoke run)"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure every row this many times in turn and report the medians (1-9)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON document")
    output.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args()
    console = Console(stderr=args.json or args.markdown)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    duration_s = 1 if args.quick else args.duration

    def fail(message: str) -> int:
        if args.json:
            print(json.dumps({"error": message}))
        console.print(f"[red]error:[/] {message}")
        return 2

    if not 1 <= duration_s <= 60:
        return fail("--duration must be between 1 and 60 seconds")
    if not 1 <= args.connections <= 1000:
        return fail("--connections must be between 1 and 1000")
    if not 1 <= args.rounds <= 9:
        return fail("--rounds must be between 1 and 9")
    load_before = os.getloadavg()[0]
    try:
        rounds, have_nginx = measure(
            duration_s, not args.quick, args.connections, console, args.rounds
        )
    except (BenchError, BaselineError) as exc:
        return fail(str(exc))
    rows = combine(rounds)
    for measured in rounds:  # each round's rows with their own ratios, for --json
        add_ratios(measured)
    load = (load_before, os.getloadavg()[0])
    header = conditions(duration_s, args.connections, have_nginx, args.rounds)
    if args.json:
        document = {
            "conditions": header,
            "duration_s": duration_s,
            "connections": args.connections,
            "cpus": os.cpu_count(),
            "load_average_1m": {"before": load[0], "after": load[1]},
            "columns": {c.value: c.label for c in Column},
            "rows": [asdict(r) for r in rows],
            "rounds": [[asdict(r) for r in measured] for measured in rounds],
            "targets": [asdict(g) for g in goal_results(rows)],
        }
        print(json.dumps(document, indent=2))
    elif args.markdown:
        print_table(console, rows, header, load)
        print(markdown(rows, header, load))
    else:
        print_table(console, rows, header, load)
    return 1 if any(r.outcome is Outcome.FAILED for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
