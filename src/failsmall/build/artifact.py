"""Bundle files: compile a config directory into a signed bundle, and read one back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from failsmall.build.loader import load_config_dir
from failsmall.engine import Engine, EngineBuildError
from failsmall.model.bundle import Bundle
from failsmall.model.envelope import (
    BundleError,
    SignedBundle,
    read_envelope_unverified_signature,
    sign_bundle,
    verify_envelope,
)


class BuildError(Exception):
    """A bundle that the engine refuses to compile; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def compile_check(bundle: Bundle) -> Engine:
    """Build the production engine from the bundle: CEL, signatures, capacities."""
    try:
        return Engine.build(bundle, bundle.requires)
    except EngineBuildError as exc:
        raise BuildError(exc.problems) from exc


def build_bundle(config_dir: Path, key: Ed25519PrivateKey) -> SignedBundle:
    """Load, validate, compile and sign. Raises ConfigError or BuildError with every problem."""
    bundle = load_config_dir(config_dir)
    compile_check(bundle)
    return sign_bundle(bundle, key)


def write_bundle_file(signed: SignedBundle, path: Path) -> None:
    """Write atomically: a reader never sees half a bundle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(signed.to_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_bundle_file(path: Path, trusted: dict[str, Ed25519PublicKey]) -> SignedBundle:
    """Read and verify a bundle file; with no trusted keys, the signature is not checked."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc}") from exc
    if trusted:
        return verify_envelope(raw, trusted)
    return read_envelope_unverified_signature(raw)
