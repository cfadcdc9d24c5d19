"""Child processes that never outlive the process that started them, and what to say when one
dies: its exit code and the end of its log.

On Linux each child asks the kernel for SIGTERM when its parent dies (PR_SET_PDEATHSIG), so even
a SIGKILL of the parent leaves no orphan holding ports; a child that starts after its parent
already died terminates itself. Elsewhere the parent's own cleanup (signals, exceptions) is all
there is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that ties the child's life to this process, or None off Linux.

    The kernel signals the child when the thread that started it ends: start children from the
    thread that lives as long as the process (the main thread of the supervisor and of `up`)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:  # runs in the child between fork and exec: no allocation, no locks
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn(argv: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """Start `argv` with stdout and stderr appended to `log`; it dies when this process dies."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env),
            preexec_fn=die_with_parent(),
        )


def log_size(log: Path) -> int:
    """Where what a child writes next will start (0 for a log that does not exist yet)."""
    try:
        return log.stat().st_size
    except FileNotFoundError:
        return 0


def log_tail(log: Path, lines: int = 15, since: int = 0) -> str:
    """The last `lines` lines of a log file written after offset `since`, for a message."""
    try:
        with log.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - 64 * 1024, since))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(cannot read {log}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def death_notice(name: str, code: int, log: Path) -> str:
    """What to tell a person about a child that exited: who, how, and the end of its log."""
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"{name} {how}; the end of {log}:\n{log_tail(log)}"


def busy_ports(ports: Mapping[int, str], host: str = "127.0.0.1") -> list[str]:
    """Which of `ports` (port -> what it is for) something on `host` already listens on.

    A trial bind with SO_REUSEADDR (so a port in TIME_WAIT counts as free, as it does for the
    servers) and without SO_REUSEPORT (so a listener that allows sharing still counts as busy).
    """
    busy = []
    for port, what in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                busy.append(f"{host}:{port} ({what}): {exc.strerror or exc}")
    return busy
