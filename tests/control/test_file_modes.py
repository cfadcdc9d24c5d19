"""Files with secrets are 0600 and public keys 0644, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from failsmall.build import generate_keypair
from failsmall.control.store import ControlStore


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_control_store_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "control.db"
    with umask(0o022):
        store = ControlStore(db)
        store.set_value("probe", "1")  # a write, so that the WAL and shared memory exist
        try:
            files = [db, db.with_name("control.db-wal"), db.with_name("control.db-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}
        finally:
            store.close()


def test_an_existing_readable_store_is_made_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "control.db"
    ControlStore(db).close()
    db.chmod(0o644)
    ControlStore(db).close()
    assert mode(db) == 0o600


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_keygen_writes_the_private_key_0600_and_the_public_key_0644(
    tmp_path: Path, mask: int
) -> None:
    private = tmp_path / "keys" / "signing.key"
    with umask(mask):
        public, _ = generate_keypair(private)
    assert public == tmp_path / "keys" / "signing.pub"
    assert (oct(mode(private)), oct(mode(public))) == ("0o600", "0o644")
