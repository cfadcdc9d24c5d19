"""The last-known-good store: the bundles a node has served successfully, newest two kept.

Layout under the state directory:

    bundles/<hex>.json   signed envelopes, content-addressed
    lkg.json             {"current": digest, "previous": digest}  (either may be "")

A bundle file is written before the pointer names it, so the pointer never names a missing or
half-written bundle. Envelopes are verified again on boot; a damaged one is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from failsmall.node.statefiles import (
    StateDirError,
    ensure_dir,
    read_json,
    remove,
    write_atomic,
    write_json,
)


@dataclass(frozen=True, slots=True)
class LkgPointer:
    """The current and previous last-known-good digests ("" when there is none)."""

    current: str = ""
    previous: str = ""


def bundle_file_name(digest: str) -> str:
    return digest.removeprefix("sha256:") + ".json"


class LastKnownGood:
    """Persists bundles that were applied successfully, for booting without the control plane."""

    def __init__(self, state_dir: Path) -> None:
        self.root = ensure_dir(state_dir)
        self.bundles = ensure_dir(state_dir / "bundles")
        self.pointer_path = state_dir / "lkg.json"

    def pointer(self) -> LkgPointer:
        try:
            data = read_json(self.pointer_path)
        except FileNotFoundError:
            return LkgPointer()
        except StateDirError:
            return LkgPointer()
        if not isinstance(data, dict):
            return LkgPointer()
        return LkgPointer(str(data.get("current", "")), str(data.get("previous", "")))

    def save(self, digest: str, envelope: bytes) -> LkgPointer:
        """Make `digest` the current LKG; the old current becomes the previous one."""
        write_atomic(self.bundles / bundle_file_name(digest), envelope)
        old = self.pointer()
        if old.current == digest:
            return old
        new = LkgPointer(digest, old.current or old.previous)
        self._write_pointer(new)
        self._prune(new)
        return new

    def demote(self, digest: str) -> LkgPointer:
        """Drop `digest` from the pointer (it was poisoned); the previous one moves up."""
        old = self.pointer()
        if digest not in (old.current, old.previous):
            return old
        remaining = [d for d in (old.current, old.previous) if d and d != digest]
        new = LkgPointer(*[*remaining, "", ""][:2])
        self._write_pointer(new)
        return new

    def load(self, digest: str) -> bytes:
        """The stored envelope for `digest`. Raises FileNotFoundError."""
        return (self.bundles / bundle_file_name(digest)).read_bytes()

    def _write_pointer(self, pointer: LkgPointer) -> None:
        write_json(self.pointer_path, {"current": pointer.current, "previous": pointer.previous})

    def _prune(self, keep: LkgPointer) -> None:
        wanted = {bundle_file_name(d) for d in (keep.current, keep.previous) if d}
        for path in self.bundles.glob("*.json"):
            if path.name not in wanted:
                remove(path)
