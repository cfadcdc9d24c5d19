"""Every `bench/*.py` script runs from a clean checkout in its shortest mode, with sane output.

Each script runs as a user runs it (`python bench/NAME.py ...` from the repository root, the
README's install and nothing else). A script whose external tool is absent (wrk, the blazehttp
corpus) is skipped with the reason; the proxy bench itself skips its nginx and ModSecurity rows
when those packages are absent, and this test checks that it says how to install them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.processes import descendants, outliving

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
BLAZEHTTP = Path(os.environ.get("FAILSMALL_BLAZEHTTP", "/tmp/blazehttp/testcases"))
CRS_CORPUS = REPO.parent / "shared" / "corpora" / "crs-regression"
MODSEC = "nginx + ModSecurity v3 + OWASP CRS PL1"
KEEPALIVE = "nginx, upstream keep-alive"


def bench(*args: str, timeout_s: float = 360) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, "COLUMNS": "160"},
        )
    except subprocess.TimeoutExpired as exc:  # what it printed says where it stopped
        printed = [
            o.decode(errors="replace") if isinstance(o, bytes) else o or ""
            for o in (exc.stdout, exc.stderr)
        ]
        pytest.fail(
            f"{' '.join(args)} did not finish in {timeout_s:g} s; it printed:\n"
            + "\n".join(printed)
        )


def skip_without_wrk_and_nginx() -> None:
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: apt-get install -y wrk nginx")


def json_out(done: subprocess.CompletedProcess[str], *codes: int) -> Any:
    assert done.returncode in codes, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_proxy_quick() -> None:
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed: apt-get install -y wrk")
    report = json_out(bench("bench/proxy.py", "--quick", "--rounds", "2", "--json"), 0)
    rows = {row["name"]: row for row in report["rows"]}
    assert len(rows) == 10
    # every row measured in each round, the rows the medians of the rounds' cells
    assert [[row["name"] for row in measured] for measured in report["rounds"]] == [list(rows)] * 2
    keepalive = [r for measured in report["rounds"] for r in measured if r["name"] == KEEPALIVE]
    for row in keepalive:  # each round's ratios are its own
        assert all(c["ratio_keepalive"] == 1.0 for c in row["cells"].values()), row
    if shutil.which("nginx") is not None:  # every cell paired with keep-alive nginx beside it
        for measured in report["rounds"]:
            for row in (r for r in measured if r["outcome"] == "measured"):
                for cell in row["cells"].values():
                    assert cell["reference_rps"] > 0, (row["name"], cell)
                    paired = cell["rps"] / cell["reference_rps"]
                    assert cell["ratio_keepalive"] == pytest.approx(paired), (row["name"], cell)
    for name, row in rows.items():
        match row["outcome"]:
            case "measured":
                assert set(row["cells"]) == set(report["columns"])
                slow_waf = name == MODSEC  # answers ~8 KiB JSON in seconds: maybe none in 1 s
                for column, cell in row["cells"].items():
                    assert cell["rps"] > 0 or (slow_waf and column.startswith("json")), (name, cell)
                    # A WAF that blocked the bench's benign traffic would be measured on 403s.
                    assert cell["errors"] == 0, (name, column, cell)
            case "skipped":
                assert "apt-get install" in row["reason"], row
                assert "nginx" in name or "ModSecurity" in name, row
            case other:
                pytest.fail(f"{name}: {other}: {row['reason']}")
    have_modsec = Path("/usr/lib/nginx/modules/ngx_http_modsecurity_module.so").exists()
    if shutil.which("nginx") is not None and have_modsec:
        assert rows[MODSEC]["outcome"] == "measured"
    assert {t["verdict"] for t in report["targets"]} <= {"met", "not met", "unmeasured"}
    assert report["load_average_1m"]["before"] >= 0


def test_proxy_rejects_bad_arguments() -> None:
    done = bench("bench/proxy.py", "--duration", "0", "--json")
    assert done.returncode == 2
    assert "between 1 and 60" in json.loads(done.stdout)["error"]
    done = bench("bench/proxy.py", "--rounds", "0", "--json")
    assert done.returncode == 2
    assert "--rounds must be between 1 and 9" in json.loads(done.stdout)["error"]


def test_engine() -> None:
    rows = json_out(bench("bench/engine.py", "--iterations", "20", "--json"), 0)
    assert rows and all(row["p50_us"] > 0 for row in rows)


def test_json_scan() -> None:
    rows = json_out(bench("bench/json_scan.py", "--bodies", "20", "--json"), 0)
    assert [row["body"] for row in rows] == [
        "8 KiB cart, same",
        "8 KiB cart, new values",
        "1 MiB import, same",
        "1 MiB import, new values",
    ]
    assert all(row[f"{part}_us"] > 0 for row in rows for part in ("text", "fields", "both"))


def test_expr() -> None:
    report = json_out(bench("bench/expr.py", "--iterations", "200", "--json"), 0)
    assert report


def test_features() -> None:
    done = bench("bench/features.py", "--rows", "2000", "--source", "sqlite")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "held-out quality" in done.stdout
    assert "completed on 2 nodes" in done.stdout


def test_propagation() -> None:
    done = bench("bench/propagation.py", "--nodes", "3", "--rounds", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nats" in done.stdout.lower()


def test_waf_corpus() -> None:
    # Exit 1 means a quality target is missed: a finding, reported in the JSON.
    report = json_out(
        bench("bench/waf_corpus.py", "--paranoia", "1", "--corpus", str(CRS_CORPUS), "--json"),
        0,
        1,
    )
    assert report


def test_waf_tail() -> None:
    if not BLAZEHTTP.is_dir():
        pytest.skip(f"blazehttp corpus not at {BLAZEHTTP}: set FAILSMALL_BLAZEHTTP=DIR")
    report = json_out(bench("bench/waf_tail.py", "--blazehttp", str(BLAZEHTTP), "--json"), 0, 1)
    assert report


def test_waf_tail_refuses_a_directory_without_the_corpus_s_cases(tmp_path: Path) -> None:
    # the repository's parent of `testcases`, say: no case to time is a refusal, not a pass
    (tmp_path / "testcases" / "00").mkdir(parents=True)
    (tmp_path / "testcases" / "00" / "a.white").write_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for script, names in (("bench/waf_tail.py", ()), ("bench/waf_slowest.py", ("a.white",))):
        done = bench(script, "--blazehttp", str(tmp_path), "--json", *names)
        assert done.returncode == 2, (script, done.stdout, done.stderr)
        error = json.loads(done.stdout)["error"]
        assert "holds no .white or .black case under a directory 00-7f" in error, error


def test_verdicts() -> None:
    if not BLAZEHTTP.is_dir():
        pytest.skip(f"blazehttp test cases not found at {BLAZEHTTP}: set FAILSMALL_BLAZEHTTP")
    first = json_out(
        bench("bench/verdicts.py", "--blazehttp", str(BLAZEHTTP), "--limit", "50", "--json"), 0
    )
    again = json_out(
        bench("bench/verdicts.py", "--blazehttp", str(BLAZEHTTP), "--limit", "50", "--json"), 0
    )
    assert first["requests"] == 50 and first["lines"] > 3 * 2 * 50
    assert first == again  # a verdict depends on the request and the bundle only
    absent = bench("bench/verdicts.py", "--blazehttp", str(REPO / "no-such-dir"), "--json")
    assert absent.returncode == 2 and "blazehttp" in json.loads(absent.stdout)["error"]


def test_node_cost() -> None:
    skip_without_wrk_and_nginx()
    done = bench("bench/node_cost.py", ".", "HEAD", "--rounds", "1", "--duration", "1")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    rounds = [line for line in done.stdout.splitlines() if line.startswith("round 0")]
    assert len(rounds) == 2, done.stdout
    assert all(line.endswith(", 0 errors") for line in rounds), done.stdout


def test_a_killed_bench_leaves_no_origin_or_node_running() -> None:
    skip_without_wrk_and_nginx()
    started = subprocess.Popen(
        [sys.executable, "bench/node_cost.py", ".", "--rounds", "1", "--duration", "30"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        children: set[int] = set()
        # the nginx origin, the node's supervisor and its worker (and nginx's worker)
        while len(children) < 4 and time.monotonic() < deadline and started.poll() is None:
            time.sleep(0.2)
            children = descendants(started.pid)
        assert len(children) >= 4, f"the bench started {len(children)} processes"
    finally:
        started.kill()  # as a timeout or the OOM killer would: nothing of the bench runs after
        started.wait()
    left = outliving(children, 20)
    assert not left, f"still running after the bench was killed: {sorted(left)}"


def test_node_cost_profile_sees_the_node_source_the_install_compiles() -> None:
    skip_without_wrk_and_nginx()
    done = bench("bench/node_cost.py", ".", "--profile", "--duration", "1", "--top", "60")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    # The exchange and the connection are compiled: cProfile lists them only from source.
    assert "exchange.py" in done.stdout and "proxy.py" in done.stdout, done.stdout
    assert "calls per request" in done.stdout, done.stdout


def cgroup_v1_cpu() -> Path | None:
    """Where the cgroup v1 cpu controller is mounted writable, or None."""
    for line in Path("/proc/self/mounts").read_text().splitlines():
        _, mount, kind, options, *_ = line.split()
        if kind == "cgroup" and "cpu" in options.split(",") and "rw" in options.split(","):
            return Path(mount)
    return None


def test_workers_quick() -> None:
    skip_without_wrk_and_nginx()
    if os.geteuid() != 0 or cgroup_v1_cpu() is None:
        pytest.skip("bench/workers.py needs root and a writable cgroup v1 cpu controller")
    report = json_out(bench("bench/workers.py", "--quick", "--rounds", "2", "--json"), 0)
    assert report["rounds"] == 2 and len(report["round_rows"]) == 2
    for index, row in enumerate(report["rows"]):  # each figure the median of its two rounds
        for column, cell in row["cells"].items():
            measured = [one[index]["cells"][column]["rps"] for one in report["round_rows"]]
            assert cell["rps"] == pytest.approx(sum(measured) / 2), (row["name"], column)
    rows = {(row["bundle"], row["workers"]): row for row in report["rows"]}
    assert set(rows) == {("empty", 1), ("empty", 2), ("managed", 1), ("managed", 2)}
    for (_, workers), row in rows.items():
        assert row["outcome"] == "measured", row
        assert set(row["cells"]) == set(report["columns"]) == {"get", "get_distinct"}
        for cell in row["cells"].values():
            assert cell["rps"] > 0 and cell["cpu_us"] > 0, (row["name"], cell)
            assert cell["errors"] == 0, (row["name"], cell)
            assert len(cell["quota_used"]) == workers, (row["name"], cell)
            assert cell["limiter"] in {"workers", "wrk", "origin", "unsaturated"}
            assert cell["ratio"] == 1.0 if workers == 1 else cell["ratio"] > 0
    assert report["cgroups_left"] == []
    assert not Path(report["cgroup"]).exists()


def test_workers_without_cgroups_says_what_it_needs() -> None:
    skip_without_wrk_and_nginx()
    command = [sys.executable, "bench/workers.py", "--quick", "--json"]
    if os.geteuid() == 0:  # the same run as an unprivileged user
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to run the bench as an unprivileged user")
        probe = subprocess.run(
            [*nobody, sys.executable, "bench/workers.py", "--help"],
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
        if probe.returncode != 0:
            pytest.skip(f"an unprivileged user cannot run this checkout's interpreter in {REPO}")
        command = [*nobody, *command]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, f"{done.stdout}\n{done.stderr}"
    assert "root" in json.loads(done.stdout)["error"]


def test_workers_rejects_bad_arguments() -> None:
    done = bench("bench/workers.py", "--workers", "2,3", "--json")
    assert done.returncode == 2
    assert "1 among them" in json.loads(done.stdout)["error"]
    done = bench("bench/workers.py", "--rounds", "0", "--json")
    assert done.returncode == 2
    assert "--rounds" in json.loads(done.stdout)["error"]
    cores = str(os.cpu_count())
    done = bench("bench/workers.py", "--workers", "1,2", "--cpu-per-worker", cores, "--json")
    assert done.returncode == 2
    assert "wrk and the origin" in json.loads(done.stdout)["error"]


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_workers_removes_its_cgroups_when_interrupted(signum: signal.Signals) -> None:
    skip_without_wrk_and_nginx()
    mount = cgroup_v1_cpu()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("bench/workers.py needs root and a writable cgroup v1 cpu controller")
    run = subprocess.Popen(
        [sys.executable, "bench/workers.py", "--quick", "--json"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test run started in the background (where the shell ignores
        # SIGINT for it) would otherwise pass the ignored Ctrl-C on to the bench
        preexec_fn=_interruptible,
    )
    group = mount / f"failsmall-bench-workers-{run.pid}"
    try:
        for _ in range(600):  # until its first worker is in a group of its own
            if (group / "worker-0").is_dir() or run.poll() is not None:
                break
            time.sleep(0.1)
        assert (group / "worker-0").is_dir(), "the bench never placed a worker"
        run.send_signal(signum)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, f"{out}\n{err}"
    assert "interrupted" in json.loads(out)["error"]
    assert not group.exists()
