"""The crash-loop guard: a bundle the process dies with, soon after applying it, is poisoned.

Before applying digest X the agent writes `applying.json` = {"digest": X, "at": T} (fsynced);
once X has served for `window_s` the marker is removed. On start:

    no marker                       -> Clean
    marker younger than window_s    -> Poisoned(X): X joins poisoned.json, never applied again
    marker older than window_s      -> Clean (the process outlived the window; it died later)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from failsmall.node.statefiles import StateDirError, read_json, remove, write_json

DEFAULT_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class Clean:
    """No crash after a recent apply."""


@dataclass(frozen=True, slots=True)
class Poisoned:
    """The process died within the window after starting to apply `digest`."""

    digest: str
    died_after_s: float


BootCheck = Clean | Poisoned


class CrashGuard:
    """The apply marker and the persisted set of poisoned digests."""

    def __init__(self, state_dir: Path, window_s: float = DEFAULT_WINDOW_S) -> None:
        self.marker_path = state_dir / "applying.json"
        self.poisoned_path = state_dir / "poisoned.json"
        self.window_s = window_s
        self.poisoned: set[str] = self._load_poisoned()

    def begin(self, digest: str, now: float) -> None:
        write_json(self.marker_path, {"digest": digest, "at": now})

    def settle(self) -> None:
        remove(self.marker_path)

    def check_on_boot(self, now: float) -> BootCheck:
        try:
            marker = read_json(self.marker_path)
        except FileNotFoundError:
            return Clean()
        except StateDirError:
            remove(self.marker_path)
            return Clean()
        remove(self.marker_path)
        if not isinstance(marker, dict) or not isinstance(marker.get("digest"), str):
            return Clean()
        age = now - float(marker.get("at", 0.0))
        if age >= self.window_s:
            return Clean()
        digest = marker["digest"]
        self.poison(digest)
        return Poisoned(digest, max(age, 0.0))

    def poison(self, digest: str) -> None:
        self.poisoned.add(digest)
        write_json(self.poisoned_path, sorted(self.poisoned))

    def is_poisoned(self, digest: str) -> bool:
        return digest in self.poisoned

    def _load_poisoned(self) -> set[str]:
        try:
            data = read_json(self.poisoned_path)
        except FileNotFoundError:
            return set()
        if not isinstance(data, list):
            raise StateDirError(f"{self.poisoned_path} must hold a JSON list of digests")
        return {str(d) for d in data}
