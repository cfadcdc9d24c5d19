"""The control plane's SQLite store (stdlib sqlite3, WAL).

Tables: `bundles` (signed envelopes by digest), `fleet` (small named values: the last good
bundle, the rollout book), `desired` (the bundle each node should serve, written in the same
transaction as the rollout step that decided it), `assignments` (the channel pointers the
transport holds, so the reconciler knows which desired moves are still to make and the HTTP
transport resumes with the same revisions), `rollouts` + `rollout_events` (each rollout with
its serialised machine), `nodes` (registry and last reports), `tokens` (hashed) and `audit`
(append-only, hash-chained; see `audit.py`). Killswitch state lives in the bundles themselves
(their overrides), so the store and the fleet cannot disagree about it.

All calls are short synchronous transactions made from the event loop's thread. WAL with
`synchronous=NORMAL`: a crash of the process loses nothing committed; a power cut may lose
the last commits but never corrupts the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from failsmall.transport.base import Assignment

SCHEMA = """
CREATE TABLE IF NOT EXISTS bundles (
    digest TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    envelope BLOB NOT NULL,
    change_class TEXT NOT NULL,
    pushed_by TEXT NOT NULL,
    pushed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS fleet (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS desired (
    node_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    node_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    from_digest TEXT NOT NULL,
    to_digest TEXT NOT NULL,
    policy TEXT NOT NULL,
    change_class TEXT NOT NULL,
    state TEXT NOT NULL,
    machine TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout_id TEXT NOT NULL REFERENCES rollouts(id),
    at REAL NOT NULL,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    address TEXT NOT NULL DEFAULT '',
    digest TEXT NOT NULL DEFAULT '',
    lkg_digest TEXT NOT NULL DEFAULT '',
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    live INTEGER NOT NULL DEFAULT 1,
    last_health TEXT NOT NULL DEFAULT '{}',
    last_apply TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY,
    token_id TEXT NOT NULL UNIQUE,
    principal TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class StoreError(Exception):
    """The store file cannot be opened or is not a failsmall control store."""


@dataclass(frozen=True, slots=True)
class StoredBundle:
    """A bundle as the control plane keeps it."""

    digest: str
    name: str
    envelope: bytes
    change_class: str
    pushed_by: str
    pushed_at: float


@dataclass(frozen=True, slots=True)
class StoredRollout:
    """One rollout row: its identity and its serialised machine."""

    id: str
    from_digest: str
    to_digest: str
    policy: str
    change_class: str
    state: str
    machine: dict[str, Any]
    created_by: str
    created_at: float
    updated_at: float


class ControlStore:
    """The SQLite file behind one control plane."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._after_commit: list[Callable[[], None]] = []
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _owner_only(path)
            self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            had_desired = self._has_table("desired")
            self.db.executescript(SCHEMA)
            if not had_desired:
                # A store from before desired state: what the pointers say is what was decided.
                self.db.execute(
                    "INSERT OR IGNORE INTO desired SELECT node_id, digest FROM assignments"
                )
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the control store {path}: {exc}") from exc

    def _has_table(self, name: str) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.db.execute(query, (name,)).fetchone() is not None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all. Callbacks
        registered inside with `after_commit` run once it has committed."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self._after_commit.clear()
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the open transaction commits (dropped if it rolls back)."""
        if not self.db.in_transaction:
            raise RuntimeError("after_commit needs an open transaction (ControlStore.transaction)")
        self._after_commit.append(callback)

    # -- fleet values -----------------------------------------------------------------------

    def get_value(self, key: str, default: str = "") -> str:
        row = self.db.execute("SELECT value FROM fleet WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else default

    def set_value(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO fleet(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- bundles ------------------------------------------------------------------------------

    def put_bundle(self, bundle: StoredBundle) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO bundles VALUES(?, ?, ?, ?, ?, ?)",
            (
                bundle.digest,
                bundle.name,
                bundle.envelope,
                bundle.change_class,
                bundle.pushed_by,
                bundle.pushed_at,
            ),
        )

    def bundle(self, digest: str) -> StoredBundle | None:
        row = self.db.execute("SELECT * FROM bundles WHERE digest = ?", (digest,)).fetchone()
        return StoredBundle(*row) if row else None

    def bundles(self) -> list[StoredBundle]:
        rows = self.db.execute("SELECT * FROM bundles ORDER BY pushed_at").fetchall()
        return [StoredBundle(*row) for row in rows]

    # -- desired state ------------------------------------------------------------------------

    def set_desired(self, node_ids: tuple[str, ...] | list[str], digest: str) -> None:
        """Record that every node in `node_ids` should serve `digest` (one statement, so
        inside a transaction a move of many nodes is one stored step)."""
        self.db.executemany(
            "INSERT INTO desired VALUES(?, ?) ON CONFLICT(node_id) DO UPDATE SET "
            "digest = excluded.digest",
            [(node_id, digest) for node_id in node_ids],
        )

    def desired(self) -> dict[str, str]:
        """The bundle digest each node should serve."""
        rows = self.db.execute("SELECT node_id, digest FROM desired").fetchall()
        return {str(n): str(d) for n, d in rows}

    # -- channel pointers --------------------------------------------------------------------

    def save_assignment(self, node_id: str, assignment: Assignment) -> None:
        self.db.execute(
            "INSERT INTO assignments VALUES(?, ?, ?) ON CONFLICT(node_id) DO UPDATE SET "
            "digest = excluded.digest, revision = excluded.revision",
            (node_id, assignment.digest, assignment.revision),
        )

    def assignments(self) -> dict[str, Assignment]:
        rows = self.db.execute("SELECT node_id, digest, revision FROM assignments").fetchall()
        return {str(n): Assignment(str(d), int(r)) for n, d, r in rows}

    # -- rollouts -----------------------------------------------------------------------------

    def save_rollout(self, rollout: StoredRollout) -> None:
        self.db.execute(
            "INSERT INTO rollouts VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
            "SET state = excluded.state, machine = excluded.machine, "
            "updated_at = excluded.updated_at",
            (
                rollout.id,
                rollout.from_digest,
                rollout.to_digest,
                rollout.policy,
                rollout.change_class,
                rollout.state,
                json.dumps(rollout.machine),
                rollout.created_by,
                rollout.created_at,
                rollout.updated_at,
            ),
        )

    def add_rollout_event(self, rollout_id: str, at: float, event: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO rollout_events(rollout_id, at, event) VALUES(?, ?, ?)",
            (rollout_id, at, json.dumps(event)),
        )

    def rollout(self, rollout_id: str) -> StoredRollout | None:
        row = self.db.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        return _rollout(row) if row else None

    def rollouts(self, limit: int = 50) -> list[StoredRollout]:
        rows = self.db.execute(
            "SELECT * FROM rollouts ORDER BY created_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_rollout(row) for row in rows]

    def rollout_events(self, rollout_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT event FROM rollout_events WHERE rollout_id = ? ORDER BY seq", (rollout_id,)
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    # -- node registry ------------------------------------------------------------------------

    def upsert_node(
        self,
        node_id: str,
        at: float,
        *,
        address: str = "",
        digest: str | None = None,
        lkg_digest: str | None = None,
        health: dict[str, Any] | None = None,
        apply: dict[str, Any] | None = None,
    ) -> None:
        """Record that `node_id` was heard from at `at`, with whatever its report said."""
        self.db.execute(
            "INSERT INTO nodes(node_id, address, first_seen, last_seen, live) "
            "VALUES(?, ?, ?, ?, 1) ON CONFLICT(node_id) DO UPDATE SET "
            "last_seen = excluded.last_seen, live = 1",
            (node_id, address, at, at),
        )
        updates: dict[str, Any] = {}
        if address:
            updates["address"] = address
        if digest is not None:
            updates["digest"] = digest
        if lkg_digest is not None:
            updates["lkg_digest"] = lkg_digest
        if health is not None:
            updates["last_health"] = json.dumps(health)
        if apply is not None:
            updates["last_apply"] = json.dumps(apply)
        if updates:
            assignments = ", ".join(f"{column} = ?" for column in updates)
            self.db.execute(
                f"UPDATE nodes SET {assignments} WHERE node_id = ?", (*updates.values(), node_id)
            )

    def mark_dead(self, node_id: str) -> None:
        self.db.execute("UPDATE nodes SET live = 0 WHERE node_id = ?", (node_id,))

    def nodes(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT node_id, address, digest, lkg_digest, first_seen, last_seen, live, "
            "last_health, last_apply FROM nodes ORDER BY node_id"
        ).fetchall()
        return [
            {
                "node_id": r[0],
                "address": r[1],
                "digest": r[2],
                "lkg_digest": r[3],
                "first_seen": r[4],
                "last_seen": r[5],
                "live": bool(r[6]),
                "last_health": json.loads(r[7]),
                "last_apply": json.loads(r[8]),
            }
            for r in rows
        ]


def _owner_only(path: Path) -> None:
    """Create the store file mode 0600 (it holds token hashes and the audit log) and take group
    and other access away from an existing one and its WAL and shared-memory files. SQLite
    creates `-wal` and `-shm` with the database file's mode, so they follow."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(path.name + suffix), 0o600)


def _rollout(row: tuple[Any, ...]) -> StoredRollout:
    values = list(row)
    values[6] = json.loads(values[6])
    return StoredRollout(*values)
