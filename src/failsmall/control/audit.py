"""The append-only, hash-chained audit log, anchored outside the database.

Each entry stores the hash of the entry before it; its own hash is sha256 over its canonical
JSON (sequence, time, actor, action, reason, details, previous hash). Editing, inserting or
deleting a row breaks the chain at that row. SQLite triggers also refuse UPDATE and DELETE on
the table, so changing history takes deliberate tampering with the file.

A chain alone cannot show that someone with the file rewrote a row and recomputed every later
hash, or deleted the last entries. So after every transaction that appended entries, a signed
*checkpoint* of the head (sequence number and hash, Ed25519 with the control plane's key) is
appended to a checkpoint file beside the database (`CheckpointFile`, one JSON line each, opened
append-only). `verify` checks the chain, then the chain against the checkpoints: an entry whose
hash differs from its checkpoint was rewritten; a checkpoint beyond the last entry means
entries were deleted; a missing checkpoint file is reported as such (the log cannot be
anchored), never as intact. Forging a checkpoint needs the control plane's private key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from failsmall.control.store import ControlStore
from failsmall.model.envelope import key_id

log = logging.getLogger(__name__)

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
    """Every entry hashes correctly, links to the one before and matches its signed checkpoint;
    `unanchored` entries were appended after the latest checkpoint."""

    entries: int
    head: str
    anchored: int
    unanchored: int


@dataclass(frozen=True, slots=True)
class ChainBroken:
    """The log was tampered with at entry `seq`; `problem` says how."""

    seq: int
    problem: str
    entries: int


@dataclass(frozen=True, slots=True)
class AnchorMissing:
    """The chain is consistent, but there is no checkpoint file to check it against, so a
    rewritten or shortened history cannot be told from a true one."""

    entries: int
    problem: str


ChainVerdict = ChainIntact | ChainBroken | AnchorMissing

CHECKPOINT_CONTEXT = b"failsmall audit checkpoint v1\n"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The audit log's head at entry `seq`, signed by the key `key_id`."""

    seq: int
    hash: str
    key_id: str
    signature: str

    @staticmethod
    def payload(seq: int, head: str) -> bytes:
        return CHECKPOINT_CONTEXT + f"{seq}\n{head}".encode()

    @classmethod
    def sign(cls, seq: int, head: str, key: Ed25519PrivateKey) -> Checkpoint:
        signature = key.sign(cls.payload(seq, head)).hex()
        return cls(seq, head, key_id(key.public_key()), signature)

    def signed_by(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(bytes.fromhex(self.signature), self.payload(self.seq, self.hash))
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_line(self) -> bytes:
        data = {"seq": self.seq, "hash": self.hash, "key_id": self.key_id, "sig": self.signature}
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> Checkpoint:
        """Raises ValueError on a line that is not a checkpoint."""
        try:
            data = json.loads(line)
            return cls(int(data["seq"]), str(data["hash"]), str(data["key_id"]), str(data["sig"]))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a checkpoint: {line[:120]!r}") from exc


class CheckpointMissingError(Exception):
    """The checkpoint file does not exist."""


class CheckpointFile:
    """Signed checkpoints, one JSON line each, only ever appended (O_APPEND, mode 0600).
    Put it on storage the database's writer cannot rewrite (`chattr +a`, a log shipper)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, checkpoint: Checkpoint) -> None:
        """Append one checkpoint and flush it to disk. Raises OSError."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, checkpoint.to_line())
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[Checkpoint]:
        """Every checkpoint in file order. Raises CheckpointMissingError, ValueError (a line
        that is not a checkpoint) or OSError."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError as exc:
            raise CheckpointMissingError(f"no checkpoint file at {self.path}") from exc
        return [Checkpoint.from_line(line) for line in raw.split(b"\n") if line.strip()]


def entry_hash(
    seq: int, at: float, actor: str, action: str, reason: str, details: str, prev_hash: str
) -> str:
    payload = json.dumps(
        [seq, repr(at), actor, action, reason, details, prev_hash], separators=(",", ":")
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def read_entries(store: ControlStore, limit: int = 100, after: int = 0) -> list[AuditRecord]:
    """The last `limit` entries after `after`, oldest first; reading needs no key."""
    rows = store.db.execute(
        "SELECT * FROM audit WHERE seq > ? ORDER BY seq DESC LIMIT ?", (after, limit)
    ).fetchall()
    return [
        AuditRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])
        for r in reversed(rows)
    ]


class AuditLog:
    """Appends to and verifies the audit table of a control store, with a signed checkpoint
    of the head written after every transaction that appended to it."""

    def __init__(
        self, store: ControlStore, key: Ed25519PrivateKey, checkpoints: CheckpointFile
    ) -> None:
        self._db = store.db
        self._store = store
        self._key = key
        self.checkpoints = checkpoints

    def append(
        self, at: float, actor: str, action: str, reason: str, details: dict[str, Any] | None = None
    ) -> AuditRecord:
        """Append one entry in its own transaction."""
        with self._store.transaction():
            return self.append_in_transaction(at, actor, action, reason, details)

    def append_in_transaction(
        self, at: float, actor: str, action: str, reason: str, details: dict[str, Any] | None = None
    ) -> AuditRecord:
        """Append one entry inside the caller's open transaction (`ControlStore.transaction`);
        its checkpoint is written once that transaction commits."""
        encoded = json.dumps(details or {}, sort_keys=True, separators=(",", ":"))
        row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (int(row[0]) + 1, str(row[1])) if row else (1, GENESIS)
        digest = entry_hash(seq, at, actor, action, reason, encoded, prev)
        self._db.execute(
            "INSERT INTO audit VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, at, actor, action, reason, encoded, prev, digest),
        )
        self._store.after_commit(lambda: self._anchor(seq, digest))
        return AuditRecord(seq, at, actor, action, reason, details or {}, prev, digest)

    def entries(self, limit: int = 100, after: int = 0) -> list[AuditRecord]:
        return read_entries(self._store, limit, after)

    def _anchor(self, seq: int, head: str) -> None:
        try:
            self.checkpoints.append(Checkpoint.sign(seq, head, self._key))
        except OSError as exc:
            log.error(
                "audit entry %d is stored but its checkpoint could not be written to %s (%s); "
                "`audit verify` counts it as unanchored until the next checkpoint",
                seq,
                self.checkpoints.path,
                exc,
            )

    def verify(self) -> ChainVerdict:
        """Check the chain, then the chain against the signed checkpoints."""
        hashes: list[str] = []
        prev = GENESIS
        for seq, at, actor, action, reason, details, prev_hash, digest in self._db.execute(
            "SELECT * FROM audit ORDER BY seq"
        ):
            count = len(hashes) + 1
            if seq != count:
                return ChainBroken(count, f"entry {count} is missing", count)
            if prev_hash != prev:
                return ChainBroken(seq, "its previous-hash does not match the entry before", count)
            if entry_hash(seq, at, actor, action, reason, details, prev_hash) != digest:
                return ChainBroken(seq, "its content does not match its hash (edited)", count)
            hashes.append(digest)
            prev = digest
        return self._against_checkpoints(hashes)

    def _against_checkpoints(self, hashes: list[str]) -> ChainVerdict:
        entries = len(hashes)
        try:
            checkpoints = self.checkpoints.read()
        except CheckpointMissingError:
            if not entries:
                return ChainIntact(0, GENESIS, 0, 0)
            return AnchorMissing(
                entries,
                f"the checkpoint file {self.checkpoints.path} is missing, so these {entries} "
                "entries cannot be checked against signed checkpoints; if it was deleted, "
                "history may have been rewritten: compare with a copy of the file",
            )
        except (ValueError, OSError) as exc:
            return ChainBroken(0, f"the checkpoint file cannot be read: {exc}", entries)
        public = self._key.public_key()
        anchored = 0
        for checkpoint in checkpoints:
            if not checkpoint.signed_by(public):
                return ChainBroken(
                    checkpoint.seq,
                    f"a checkpoint for entry {checkpoint.seq} is not signed by this control "
                    "plane's key (forged checkpoint)",
                    entries,
                )
            if checkpoint.seq > entries:
                return ChainBroken(
                    entries + 1,
                    f"the log ends at entry {entries}, but entry {checkpoint.seq} was "
                    "checkpointed: entries were deleted",
                    entries,
                )
            if checkpoint.seq >= 1 and hashes[checkpoint.seq - 1] != checkpoint.hash:
                return ChainBroken(
                    checkpoint.seq,
                    "its hash differs from its signed checkpoint: history was rewritten",
                    entries,
                )
            anchored = max(anchored, checkpoint.seq)
        head = hashes[-1] if hashes else GENESIS
        return ChainIntact(entries, head, anchored, entries - anchored)
