"""A small supervisor: runs N node workers and restarts any that dies.

Each worker is `python -m failsmall.node --config-json ...`, binding the shared port with
SO_REUSEPORT. A worker's life:

    STARTING --(spawned)--> RUNNING --(exits)--> BACKOFF --(delay elapsed)--> STARTING
    RUNNING --(exits with BAD_CONFIG)--> the supervisor stops every worker and exits with it
    any state --(supervisor told to stop)--> STOPPING --(exited)--> (gone)

Workers die with their supervisor (`children.die_with_parent`): a supervisor killed by SIGKILL
(the OOM killer, systemd's last resort) leaves no orphan serving its bundle on the shared port
beside the workers of the next supervisor.

A worker that cannot bind its port (CANNOT_LISTEN) is restarted like any other: the port may
be free again soon (an outgoing connection or a dying process held it). A configuration error
is not retried, since every restart would fail the same way.

The restart delay grows exponentially with full jitter and resets once a worker has stayed
up for `stable_after_s`, so a crash-looping worker neither spins nor restarts in step with
its siblings (or with other nodes).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import Enum, IntEnum, auto
from types import FrameType

from failsmall.backoff import Backoff
from failsmall.children import die_with_parent
from failsmall.node.config import NodeConfig

log = logging.getLogger("failsmall.node.supervisor")


class WorkerExit(IntEnum):
    """What a worker's exit code means to its supervisor."""

    OK = 0
    BAD_CONFIG = 2
    CANNOT_LISTEN = 3


class WorkerState(Enum):
    """Where a supervised worker is; see the module docstring for transitions."""

    STARTING = auto()
    RUNNING = auto()
    BACKOFF = auto()
    STOPPING = auto()


@dataclass
class Worker:
    """One supervised worker process."""

    index: int
    config: NodeConfig
    backoff: Backoff = field(default_factory=lambda: Backoff(base_s=0.5, cap_s=30.0))
    state: WorkerState = WorkerState.STARTING
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    restarts: int = 0


def exit_cause(code: int) -> str:
    """How a worker ended, as people read it (a negative code is the signal that ended it)."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"


def worker_command(config: NodeConfig) -> list[str]:
    return [sys.executable, "-m", "failsmall.node", "--config-json", config.to_json()]


class Supervisor:
    """Keeps `workers` node processes running until told to stop."""

    def __init__(self, config: NodeConfig, workers: int, stable_after_s: float = 30.0) -> None:
        if workers < 1:
            raise ValueError("--workers must be at least 1")
        self.workers = [Worker(i, config.for_worker(i, workers)) for i in range(workers)]
        self.stable_after_s = stable_after_s
        self._stopping = False
        self._exit_code = WorkerExit.OK

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self._stopping = True

    def run(self, poll_s: float = 0.1) -> int:
        """Supervise until SIGTERM/SIGINT; returns the process exit code."""
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        while not self._stopping:
            self.tick(time.monotonic())
            time.sleep(poll_s)
        self.stop_all()
        return int(self._exit_code)

    def tick(self, now: float) -> None:
        for worker in self.workers:
            match worker.state:
                case WorkerState.STARTING:
                    self._spawn(worker, now)
                case WorkerState.RUNNING:
                    self._check(worker, now)
                case WorkerState.BACKOFF:
                    if now >= worker.restart_at:
                        worker.state = WorkerState.STARTING
                        self._spawn(worker, now)
                case WorkerState.STOPPING:
                    pass

    def _spawn(self, worker: Worker, now: float) -> None:
        worker.process = subprocess.Popen(
            worker_command(worker.config), preexec_fn=die_with_parent()
        )
        worker.started_at = now
        worker.state = WorkerState.RUNNING
        log.info("worker %d started (pid %d)", worker.index, worker.process.pid)

    def _check(self, worker: Worker, now: float) -> None:
        process = worker.process
        if process is None:  # a RUNNING worker always has a process; respawn if not
            self._spawn(worker, now)
            return
        code = process.poll()
        if code is None:
            if now - worker.started_at >= self.stable_after_s:
                worker.backoff.reset()
            return
        if code == WorkerExit.BAD_CONFIG:
            log.error(
                "worker %d (pid %d) cannot run with this configuration (its error is above); "
                "not restarting, stopping the node",
                worker.index,
                process.pid,
            )
            self._exit_code = WorkerExit.BAD_CONFIG
            self._stopping = True
            return
        delay = worker.backoff.next_delay()
        worker.restarts += 1
        worker.restart_at = now + delay
        worker.state = WorkerState.BACKOFF
        log.error(
            "worker %d (pid %d) %s; restarting in %.2fs",
            worker.index,
            process.pid,
            exit_cause(code),
            delay,
        )

    def stop_all(self, grace_s: float = 10.0) -> None:
        for worker in self.workers:
            worker.state = WorkerState.STOPPING
            if worker.process is not None and worker.process.poll() is None:
                worker.process.terminate()
        deadline = time.monotonic() + grace_s
        for worker in self.workers:
            if worker.process is None:
                continue
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
