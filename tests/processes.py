"""Processes as /proc shows them, for tests that check what outlives what (Linux)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def _state_and_parent(stat: str) -> tuple[str, int]:
    # The fields after the command name, which is in parentheses and may contain spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether process `pid` runs (an exited child not reaped yet, a zombie, does not)."""
    try:
        state, _ = _state_and_parent(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    """The running processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = _state_and_parent((entry / "stat").read_text())
            except OSError:
                continue  # it ended while we looked
            if parent == pid and state != "Z":
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> set[int]:
    """The running processes `pid` started, and those they started, and so on."""
    found: set[int] = set()
    parents = [pid]
    while parents:
        children = [child for parent in parents for child in children_of(parent)]
        found.update(children)
        parents = children
    return found


def outliving(pids: Iterable[int], within_s: float) -> set[int]:
    """Which of `pids` still run `within_s` seconds from now (none, as soon as none runs);
    those are then killed (SIGKILL), so that no process a failing test checked outlives it."""
    pids = set(pids)
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = {pid for pid in pids if alive(pid)}
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left
