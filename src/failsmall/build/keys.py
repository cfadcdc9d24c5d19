"""Signing keys on disk: Ed25519 private keys (PKCS#8 PEM) and public keys for trust."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from failsmall.model.envelope import (
    SignatureError,
    key_id,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
)


class KeyFileError(Exception):
    """A key file that is missing, unreadable or not an Ed25519 key."""


def generate_keypair(private_path: Path) -> tuple[Path, str]:
    """Write a new private key (mode 0600) and its `.pub` beside it (mode 0644), whatever the
    umask. Returns (pub path, key id)."""
    if private_path.exists():
        raise KeyFileError(f"{private_path} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    _write(private_path, private_key_pem(key), 0o600, os.O_EXCL)
    public_path = private_path.with_suffix(".pub")
    _write(public_path, public_key_pem(key.public_key()), 0o644, os.O_TRUNC)
    return public_path, key_id(key.public_key())


def _write(path: Path, data: bytes, mode: int, flags: int) -> None:
    """Write `path` with exactly `mode`: the umask only narrows what `open` creates."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, mode)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fd, mode)
        fh.write(data)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        return load_private_key(path.read_bytes())
    except (OSError, ValueError, SignatureError) as exc:
        raise KeyFileError(f"cannot load signing key {path}: {exc}") from exc


def read_public_keys(paths: list[Path]) -> dict[str, Ed25519PublicKey]:
    """Trusted public keys by key id. A private key file is accepted and its public half used."""
    trusted: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key {path}: {exc}") from exc
        try:
            public = (
                load_private_key(raw).public_key()
                if b"PRIVATE KEY" in raw
                else load_public_key(raw)
            )
        except (ValueError, SignatureError) as exc:
            raise KeyFileError(f"{path} is not an Ed25519 key: {exc}") from exc
        trusted[key_id(public)] = public
    return trusted
