"""The crash-loop guard: a bundle is quarantined on evidence that it brings the process down.

Before applying digest X the agent writes `applying.json` = {"digest": X, "at": T, "deaths": n}
(fsynced); once X has served for `window_s` the marker is removed. While it runs, the process
writes what kills it from inside to `fault.log`: a fatal signal it raised itself (SIGSEGV,
SIGABRT, SIGBUS, SIGFPE, SIGILL, through `faulthandler`) or an exception that ended it. A
SIGKILL (from an operator, a deploy tool or the OOM killer) or a power loss leaves no trace.
On start:

    no marker, or a marker older than window_s  -> Clean (the death, if any, did not follow an
                                                   apply; a fault is logged, nothing blamed)
    young marker and a fault in fault.log       -> Poisoned(X, cause)
    young marker, no fault, deaths + 1 < 3      -> Survived(X, deaths + 1): served again; the
                                                   count is carried into X's next marker
    young marker, no fault, deaths + 1 = 3      -> Poisoned(X, "died 3 times ...")

A poisoned digest joins `poisoned.json` with its cause and is never applied again.
An exception while building a bundle's engine is caught in the process and quarantines the
bundle at once (`quarantine`), with no death needed.
"""

from __future__ import annotations

import faulthandler
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from failsmall.node.statefiles import StateDirError, read_json, remove, write_json
from failsmall.transport.base import Quarantine

DEFAULT_WINDOW_S = 10.0
DEATHS_TO_QUARANTINE = 3
"""Deaths with no recorded cause, each within the window after applying one bundle, that
quarantine it (the pattern of a bundle that exhausts memory and meets the OOM killer)."""


@dataclass(frozen=True, slots=True)
class Clean:
    """No death after a recent apply. `previous_fault` is what the previous life recorded
    dying of, if it died later (blamed on no bundle)."""

    previous_fault: str = ""


@dataclass(frozen=True, slots=True)
class Survived:
    """The process died `deaths` time(s) within the window after applying `digest`, with no
    recorded cause (killed from outside): not evidence enough to blame the bundle."""

    digest: str
    deaths: int


@dataclass(frozen=True, slots=True)
class Poisoned:
    """The process died within the window after applying `digest`, of `cause`."""

    digest: str
    cause: str


BootCheck = Clean | Survived | Poisoned


class CrashGuard:
    """The apply marker, the fault record and the persisted quarantine."""

    def __init__(self, state_dir: Path, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.marker_path = state_dir / "applying.json"
        self.poisoned_path = state_dir / "poisoned.json"
        self.fault_path = state_dir / "fault.log"
        self.window_s = window_s
        self.quarantined: dict[str, Quarantine] = self._load_quarantine()
        self._carried = ("", 0)  # (digest, deaths) survived at boot, for its next marker
        self._fault_file: IO[str] | None = None
        self._previous_fault = self._take_previous_fault()

    @property
    def poisoned(self) -> set[str]:
        return set(self.quarantined)

    def begin(self, digest: str, now: float) -> None:
        carried_digest, deaths = self._carried
        write_json(
            self.marker_path,
            {"digest": digest, "at": now, "deaths": deaths if digest == carried_digest else 0},
        )

    def settle(self) -> None:
        self._carried = ("", 0)
        remove(self.marker_path)

    def check_on_boot(self, now: float) -> BootCheck:
        """Judge the previous life of this process from its marker and fault record."""
        fault, self._previous_fault = self._previous_fault, ""
        try:
            marker: Any = read_json(self.marker_path)
        except FileNotFoundError:
            marker = None
        except StateDirError:
            marker = None
        remove(self.marker_path)
        if not isinstance(marker, dict) or not isinstance(marker.get("digest"), str):
            return Clean(fault)
        digest: str = marker["digest"]
        age = now - _number(marker.get("at"))
        if age >= self.window_s:
            return Clean(fault)
        age = max(age, 0.0)
        if fault:
            cause = f"the node died {age:.1f}s after applying it: {fault}"
            self.quarantine(digest, cause, now)
            return Poisoned(digest, cause)
        deaths = int(_number(marker.get("deaths"))) + 1
        if deaths >= DEATHS_TO_QUARANTINE:
            cause = (
                f"the node died {deaths} times, each within {self.window_s:g}s of applying it, "
                "with no recorded cause (killed from outside or out of memory)"
            )
            self.quarantine(digest, cause, now)
            return Poisoned(digest, cause)
        self._carried = (digest, deaths)
        return Survived(digest, deaths)

    def quarantine(self, digest: str, cause: str, now: float) -> None:
        self.quarantined[digest] = Quarantine(digest, cause, now)
        write_json(
            self.poisoned_path,
            [q.to_dict() for q in sorted(self.quarantined.values(), key=lambda q: q.digest)],
        )

    def is_poisoned(self, digest: str) -> bool:
        return digest in self.quarantined

    # -- the fault record --------------------------------------------------------------------

    def record_faults(self) -> None:
        """From now on, write a fatal signal this process raises to the fault record. One per
        process (faulthandler is process-wide): the worker entry point calls it."""
        self._fault_file = self.fault_path.open("w", encoding="utf-8")
        faulthandler.enable(self._fault_file, all_threads=True)

    def record_exception(self, exc: BaseException) -> None:
        """Write an exception that is ending the process to the fault record."""
        text = "".join(traceback.format_exception(exc))
        with self.fault_path.open("a", encoding="utf-8") as out:
            out.write(f"exception: {type(exc).__name__}: {exc}\n{text}")

    def _take_previous_fault(self) -> str:
        """The first line of what the previous life recorded dying of; "" when nothing."""
        try:
            text = self.fault_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        remove(self.fault_path)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[0] if lines else ""

    def _load_quarantine(self) -> dict[str, Quarantine]:
        try:
            data = read_json(self.poisoned_path)
        except FileNotFoundError:
            return {}
        if not isinstance(data, list):
            raise StateDirError(f"{self.poisoned_path} must hold a JSON list")
        out: dict[str, Quarantine] = {}
        for entry in data:
            if isinstance(entry, str):  # written before causes were kept
                out[entry] = Quarantine(entry, "", 0.0)
            elif isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                quarantine = Quarantine.from_dict(entry)
                out[quarantine.digest] = quarantine
            else:
                raise StateDirError(f"{self.poisoned_path} holds an entry that is not a digest")
        return out


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
