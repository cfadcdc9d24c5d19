"""Node processes killed with SIGKILL: the LKG stays intact, the node boots, the supervisor
restarts dead workers."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from failsmall.model import verify_envelope
from failsmall.model.envelope import key_id
from failsmall.node.config import NodeConfig
from failsmall.node.lkg import LastKnownGood
from failsmall.node.supervisor import WorkerExit
from failsmall.transport.natsd import free_port
from tests.node.conftest import Keys, WatchDir, make_bundle, node_config
from tests.processes import alive, outliving

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
CRASHING_WORKER = (str(Path(__file__).with_name("crashing_worker.py")),)


def wait_for(check: object, timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()  # type: ignore[operator]
        except httpx.HTTPError as exc:
            last_error = exc
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} ({last_error})")


def config_of(admin: str) -> dict[str, object] | None:
    response = httpx.get(f"http://{admin}/config", timeout=1)
    return response.json() if response.status_code == 200 else None


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def spawn_worker(
    config: NodeConfig,
    processes: list[subprocess.Popen[bytes]],
    entry: tuple[str, ...] = ("-m", "failsmall.node"),
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            *entry,
            "--log-level",
            "WARNING",
            "--config-json",
            config.to_json(),
        ],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(proc)
    return proc


def spawn_supervisor(
    state_dir: Path,
    keys: Keys,
    watch: WatchDir,
    listen: str,
    admin: str,
    processes: list[subprocess.Popen[bytes]],
    *extra: str,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`failsmall node` (the supervisor and its workers) following `watch`."""
    argv = [
        sys.executable,
        "-c",
        "from failsmall.cli.main import app; app()",
        "node",
        "--node-id",
        "sup",
        "--state-dir",
        str(state_dir),
        "--trust",
        str(keys.public_path),
        "--listen",
        listen,
        "--admin",
        admin,
        "--watch-dir",
        str(watch.root),
        *extra,
    ]
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(argv, env=ENV, stdout=out, stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]
    processes.append(proc)
    return proc


def test_kill_9_during_apply_leaves_lkg_intact_and_the_node_boots(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    rng = random.Random(4)
    admin = f"127.0.0.1:{free_port()}"
    config = node_config(
        tmp_path,
        keys,
        watch,
        node_id="crashy",
        listen=f"127.0.0.1:{free_port()}",
        admin=admin,
        crash_window_s=0.3,
        report_interval_s=5,
    ).for_worker(0, 1)
    first = keys.sign(make_bundle(origin_process, name="first"))
    watch.publish(first)
    trusted = {key_id(keys.private.public_key()): keys.private.public_key()}
    known = {first.digest}
    proc = spawn_worker(config, processes)
    wait_for(lambda: (config_of(admin) or {}).get("serving") == first.digest, 20, "first bundle")
    for round_ in range(5):
        candidate = keys.sign(make_bundle(origin_process, name=f"round-{round_}"))
        known.add(candidate.digest)
        watch.publish(candidate)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()
        proc.wait()
        # Whatever instant the kill hit, the LKG pointer names whole, verifiable bundles.
        lkg = LastKnownGood(config.state_dir)
        pointer = lkg.pointer()
        assert pointer.current in known
        for digest in (pointer.current, pointer.previous):
            if digest:
                assert verify_envelope(lkg.load(digest), trusted).digest == digest
        time.sleep(0.35)  # past the crash window, so the next boot is not a crash loop
        proc = spawn_worker(config, processes)
        served = wait_for(lambda: (config_of(admin) or {}).get("serving"), 20, "a bundle")
        assert served in known
        got = httpx.get(f"http://{config.listen}/hello", timeout=5)
        assert got.status_code == 200


def two_workers(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> tuple[subprocess.Popen[bytes], str, list[str], list[int], str]:
    """`failsmall node --workers 2` serving a bundle: the supervisor, the shared listen address,
    the workers' admin addresses and pids, and the bundle's digest."""
    signed = keys.sign(make_bundle(origin_process))
    watch.publish(signed)
    listen = f"127.0.0.1:{free_port()}"
    admin_port = free_port()
    while True:
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", admin_port + 1))
            break
        except OSError:
            admin_port = free_port()
    supervisor = spawn_supervisor(
        tmp_path / "state",
        keys,
        watch,
        listen,
        f"127.0.0.1:{admin_port}",
        processes,
        "--workers",
        "2",
        "--crash-window",
        "0.2",
        log=tmp_path / "node.log",
    )
    admins = [f"127.0.0.1:{admin_port}", f"127.0.0.1:{admin_port + 1}"]
    pids = []
    for admin in admins:
        cfg = wait_for(
            lambda a=admin: (c := config_of(a)) and c.get("serving") == signed.digest and c,
            30,
            f"worker at {admin}",
        )
        pids.append(int(cfg["pid"]))  # type: ignore[index]
    return supervisor, listen, admins, pids, signed.digest


def test_workers_do_not_outlive_a_supervisor_killed_by_sigkill(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    # The OOM killer, `kill -9`, or systemd's last resort: an orphaned worker would go on
    # serving its bundle on the shared port beside the workers of the next supervisor.
    supervisor, listen, _, pids, _ = two_workers(tmp_path, keys, watch, origin_process, processes)
    assert httpx.get(f"http://{listen}/hello", timeout=5).status_code == 200
    supervisor.kill()
    supervisor.wait(10)
    left = outliving(pids, 20)
    assert not left, f"workers {sorted(left)} still ran 20 s after their supervisor was killed"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{listen}/hello", timeout=5)


def test_supervisor_restarts_killed_workers_sharing_one_port(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    supervisor, listen, admins, pids, digest = two_workers(
        tmp_path, keys, watch, origin_process, processes
    )
    assert {c["node_id"] for c in (config_of(a) for a in admins) if c} == {"sup-w0", "sup-w1"}
    for _ in range(10):
        assert httpx.get(f"http://{listen}/hello", timeout=5).status_code == 200
    time.sleep(0.3)
    os.kill(pids[0], signal.SIGKILL)
    # Requests keep being answered by the surviving worker, and the restarted one binds the
    # shared port only once it serves its last-known-good bundle: no request meets a 503.
    statuses: list[int | str] = []

    def restarted_on_its_bundle() -> dict[str, object] | None:
        try:
            statuses.append(httpx.get(f"http://{listen}/hello", timeout=5).status_code)
        except httpx.HTTPError as exc:
            statuses.append(repr(exc))
        config = config_of(admins[0])  # refused while the worker is down
        if config and config.get("pid") != pids[0] and config.get("serving") == digest:
            return config
        return None

    wait_for(restarted_on_its_bundle, 30, "the killed worker to serve its bundle again")
    for _ in range(20):
        statuses.append(httpx.get(f"http://{listen}/hello", timeout=5).status_code)
    assert set(statuses) == {200}
    assert f"worker 0 (pid {pids[0]}) was killed by SIGKILL" in (tmp_path / "node.log").read_text()
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(15) == 0
    assert not any(alive(pid) for pid in pids[1:])


def started_on(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
    entry: tuple[str, ...] = ("-m", "failsmall.node"),
) -> tuple[NodeConfig, str, subprocess.Popen[bytes]]:
    """A worker serving a first good bundle, with a crash window longer than the test."""
    admin = f"127.0.0.1:{free_port()}"
    config = node_config(
        tmp_path,
        keys,
        watch,
        node_id="loopy",
        listen=f"127.0.0.1:{free_port()}",
        admin=admin,
        crash_window_s=60.0,
        report_interval_s=0.3,
    ).for_worker(0, 1)
    good = keys.sign(make_bundle(origin_process, name="good"))
    watch.publish(good)
    proc = spawn_worker(config, processes, entry)
    wait_for(lambda: (config_of(admin) or {}).get("serving") == good.digest, 20, "good bundle")
    return config, good.digest, proc


def poisoned_reports(watch: WatchDir) -> list[dict[str, object]]:
    return [r for r in watch.apply_reports() if r["result"] == "poisoned"]


def test_kill_9_twice_after_an_apply_does_not_quarantine_the_bundle_a_third_time_does(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    config, good, proc = started_on(tmp_path, keys, watch, origin_process, processes)
    admin = config.admin
    newer = keys.sign(make_bundle(origin_process, name="newer"))
    watch.publish(newer)
    wait_for(lambda: (config_of(admin) or {}).get("serving") == newer.digest, 20, "newer bundle")
    for _ in range(2):  # killed from outside, within the crash window of the apply
        proc.kill()
        assert proc.wait() == -signal.SIGKILL
        proc = spawn_worker(config, processes)
        served = wait_for(lambda: (c := config_of(admin)) and c.get("serving") and c, 20, "boot")
        assert served["serving"] == newer.digest  # type: ignore[index]
        assert served["poisoned"] == []  # type: ignore[index]
    assert httpx.get(f"http://{config.listen}/hello", timeout=5).status_code == 200
    assert not poisoned_reports(watch)
    # Three deaths in a row with no recorded cause, each soon after applying it: quarantined
    # (what a bundle that exhausts memory and meets the OOM killer looks like).
    proc.kill()
    proc.wait()
    spawn_worker(config, processes)
    served = wait_for(lambda: (c := config_of(admin)) and c.get("serving") and c, 20, "boot")
    assert served["serving"] == good  # type: ignore[index]
    assert served["poisoned"] == [newer.digest]  # type: ignore[index]
    reports = wait_for(lambda: poisoned_reports(watch), 10, "a POISONED report")
    assert "died 3 times" in str(reports[0]["error"])  # type: ignore[index]


def test_a_bundle_that_crashes_the_worker_is_quarantined_and_reported(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    config, good, proc = started_on(
        tmp_path, keys, watch, origin_process, processes, CRASHING_WORKER
    )
    admin = config.admin
    bad = keys.sign(make_bundle(origin_process, name="segfault-on-requests"))
    watch.publish(bad)
    wait_for(lambda: (config_of(admin) or {}).get("serving") == bad.digest, 20, "the bad bundle")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{config.listen}/hello", timeout=5)
    assert proc.wait(10) == -signal.SIGSEGV
    spawn_worker(config, processes, CRASHING_WORKER)  # as the supervisor restarts it
    served = wait_for(lambda: (c := config_of(admin)) and c.get("serving") and c, 20, "boot")
    assert served["serving"] == good  # type: ignore[index]
    assert served["poisoned"] == [bad.digest]  # type: ignore[index]
    quarantined = served["quarantined"]  # type: ignore[index]
    assert "Segmentation fault" in quarantined[0]["cause"]
    assert httpx.get(f"http://{config.listen}/hello", timeout=5).status_code == 200
    reports = wait_for(lambda: poisoned_reports(watch), 10, "a POISONED report")
    assert reports[0]["digest"] == bad.digest
    assert "Segmentation fault" in str(reports[0]["error"])
    health = wait_for(
        lambda: [r for r in watch.health_reports() if r.get("quarantined")], 10, "health"
    )
    latest = health[-1]  # type: ignore[index]
    assert latest["digest"] == good and latest["poisoned"] == [bad.digest]
    assert "Segmentation fault" in latest["quarantined"][0]["cause"]


def test_a_worker_that_cannot_bind_says_why_and_serves_once_the_port_is_free(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    signed = keys.sign(make_bundle(origin_process))
    watch.publish(signed)
    listen_port = free_port()
    log = tmp_path / "node.log"
    holder = socket.socket()
    holder.bind(("127.0.0.1", listen_port))
    holder.listen()
    with holder:
        supervisor = spawn_supervisor(
            tmp_path / "state",
            keys,
            watch,
            f"127.0.0.1:{listen_port}",
            f"127.0.0.1:{free_port()}",
            processes,
            log=log,
        )
        message = f"cannot listen on 127.0.0.1:{listen_port} for the proxy: Address already in use"
        wait_for(lambda: message in log.read_text(), 30, "the worker to report the held port")
        assert supervisor.poll() is None  # the supervisor retries: the port may free up
    # The port is free now: the next restart binds it and serves the bundle.
    wait_for(
        lambda: httpx.get(f"http://127.0.0.1:{listen_port}/hello", timeout=2).status_code == 200,
        40,
        "the restarted worker to serve on the freed port",
    )
    assert "Traceback" not in log.read_text()
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(15) == 0


def test_a_worker_that_cannot_use_its_state_dir_stops_the_node_without_restarts(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    log = tmp_path / "node.log"
    supervisor = spawn_supervisor(
        not_a_dir / "state",
        keys,
        watch,
        f"127.0.0.1:{free_port()}",
        f"127.0.0.1:{free_port()}",
        processes,
        log=log,
    )
    assert supervisor.wait(30) == WorkerExit.BAD_CONFIG
    text = log.read_text()
    assert text.count("cannot create state directory") == 1
    assert "not restarting" in text
    assert "Traceback" not in text


def test_a_worker_that_aborts_after_an_apply_quarantines_that_bundle(
    tmp_path: Path,
    keys: Keys,
    watch: WatchDir,
    origin_process: str,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    config, good, proc = started_on(tmp_path, keys, watch, origin_process, processes)
    newer = keys.sign(make_bundle(origin_process, name="newer"))
    watch.publish(newer)
    wait_for(lambda: (config_of(config.admin) or {}).get("serving") == newer.digest, 20, "newer")
    proc.send_signal(signal.SIGABRT)  # what abort() in a native extension raises
    assert proc.wait(10) == -signal.SIGABRT
    spawn_worker(config, processes)
    served = wait_for(lambda: (c := config_of(config.admin)) and c.get("serving") and c, 20, "boot")
    assert served["serving"] == good  # type: ignore[index]
    assert "Aborted" in served["quarantined"][0]["cause"]  # type: ignore[index]
