"""The append-only, hash-chained audit log.

Each entry stores the hash of the entry before it; its own hash is sha256 over its canonical
JSON (sequence, time, actor, action, reason, details, previous hash). Editing, inserting or
deleting a row breaks the chain at that row, which `verify` reports. SQLite triggers also refuse
UPDATE and DELETE on the table, so changing history takes deliberate tampering with the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from failsmall.control.store import ControlStore

GENESIS = "0" * 64


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the audit log: who did what, when and why."""

    seq: int
    at: float
    actor: str
    action: str
    reason: str
    details: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "reason": self.reason,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class ChainIntact:
    """Every entry hashes correctly and links to the one before."""

    entries: int
    head: str


@dataclass(frozen=True, slots=True)
class ChainBroken:
    """The chain breaks at entry `seq`; `problem` says how."""

    seq: int
    problem: str
    entries: int


ChainVerdict = ChainIntact | ChainBroken


def entry_hash(
    seq: int, at: float, actor: str, action: str, reason: str, details: str, prev_hash: str
) -> str:
    payload = json.dumps(
        [seq, repr(at), actor, action, reason, details, prev_hash], separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()


class AuditLog:
    """Appends to and verifies the audit table of a control store."""

    def __init__(self, store: ControlStore) -> None:
        self._db = store.db
        self._store = store

    def append(
        self, at: float, actor: str, action: str, reason: str, details: dict[str, Any] | None = None
    ) -> AuditRecord:
        """Append one entry in its own transaction."""
        with self._store.transaction():
            return self.append_in_transaction(at, actor, action, reason, details)

    def append_in_transaction(
        self, at: float, actor: str, action: str, reason: str, details: dict[str, Any] | None = None
    ) -> AuditRecord:
        """Append one entry inside the caller's open transaction (`ControlStore.transaction`)."""
        encoded = json.dumps(details or {}, sort_keys=True, separators=(",", ":"))
        row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
        digest = entry_hash(seq, at, actor, action, reason, encoded, prev)
        self._db.execute(
            "INSERT INTO audit VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, actor, action, reason, encoded, prev, digest),
        )
        return AuditRecord(seq, at, actor, action, reason, details or {}, prev, digest)

    def entries(self, limit: int = 100, after: int = 0) -> list[AuditRecord]:
        rows = self._db.execute(
            "SELECT * FROM audit WHERE seq > ? ORDER BY seq DESC LIMIT ?", (after, limit)
        ).fetchall()
        return [
            AuditRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])
            for r in reversed(rows)
        ]

    def verify(self) -> ChainVerdict:
        prev = GENESIS
        count = 0
        expected_seq = 1
        for seq, at, actor, action, reason, details, prev_hash, digest in self._db.execute(
            "SELECT * FROM audit ORDER BY seq"
        ):
            count += 1
            if seq != expected_seq:
                return ChainBroken(expected_seq, f"entry {expected_seq} is missing", count)
            if prev_hash != prev:
                return ChainBroken(seq, "its previous-hash does not match the entry before", count)
            if entry_hash(seq, at, actor, action, reason, details, prev_hash) != digest:
                return ChainBroken(seq, "its content does not match its hash (edited)", count)
            prev = digest
            expected_seq += 1
        return ChainIntact(count, prev)
