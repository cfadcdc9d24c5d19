"""Signed bundle envelopes: canonical encoding, content digest and Ed25519 signatures.

The digest is sha256 over the canonical JSON encoding of the bundle (sorted keys, no
whitespace, UTF-8); the signature is Ed25519 over the digest string. A node trusts an envelope
only if its signature verifies under a trusted key, the digest matches the content, and the
content validates as a `Bundle`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from failsmall.model.bundle import Bundle

ENVELOPE_FORMAT = "failsmall-bundle/1"


class BundleError(Exception):
    """A bundle envelope that must not be served. The message says what is wrong."""


class EnvelopeFormatError(BundleError):
    """The envelope is not well-formed JSON of the expected shape."""


class DigestMismatchError(BundleError):
    """The content does not hash to the digest the envelope claims."""


class SignatureError(BundleError):
    """The signature is missing, made by an untrusted key, or does not verify."""


class BundleValidationError(BundleError):
    """The content is signed and intact but is not a valid bundle."""


def canonical_json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def bundle_digest(bundle: Bundle) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(bundle_data(bundle))).hexdigest()


def bundle_data(bundle: Bundle) -> dict[str, Any]:
    return bundle.model_dump(mode="json")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SignedBundle:
    """A verified bundle with its digest and the id of the key that signed it."""

    bundle: Bundle
    digest: str
    key_id: str
    signature: str

    def to_bytes(self) -> bytes:
        envelope = {
            "format": ENVELOPE_FORMAT,
            "digest": self.digest,
            "key_id": self.key_id,
            "signature": self.signature,
            "bundle": bundle_data(self.bundle),
        }
        return json.dumps(envelope, sort_keys=True, indent=1, ensure_ascii=False).encode()


def sign_bundle(bundle: Bundle, private_key: Ed25519PrivateKey) -> SignedBundle:
    digest = bundle_digest(bundle)
    signature = base64.b64encode(private_key.sign(digest.encode())).decode()
    return SignedBundle(bundle, digest, key_id(private_key.public_key()), signature)


def verify_envelope(raw: bytes, trusted: dict[str, Ed25519PublicKey]) -> SignedBundle:
    """Parse and verify an envelope: format, trusted signature, digest, then validation."""
    envelope = _parse(raw)
    signer = envelope["key_id"]
    public_key = trusted.get(signer)
    if public_key is None:
        raise SignatureError(f"bundle is signed by key {signer!r}, which is not trusted here")
    try:
        signature = base64.b64decode(envelope["signature"], validate=True)
        public_key.verify(signature, envelope["digest"].encode())
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise SignatureError("bundle signature does not verify") from exc
    return _content(envelope)


def read_envelope_unverified_signature(raw: bytes) -> SignedBundle:
    """Parse an envelope and check digest and validation, but not the signature.

    For offline tools (`inspect`, `verify`) run on a bundle before its key is at hand; nodes
    and the control plane always use `verify_envelope`.
    """
    return _content(_parse(raw))


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        envelope = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeFormatError(f"bundle is not valid JSON: {exc}") from exc
    if not isinstance(envelope, dict) or envelope.get("format") != ENVELOPE_FORMAT:
        raise EnvelopeFormatError(f"not a {ENVELOPE_FORMAT} envelope")
    fields = {"digest": str, "key_id": str, "signature": str, "bundle": dict}
    for name, kind in fields.items():
        if not isinstance(envelope.get(name), kind):
            raise EnvelopeFormatError(
                f"envelope field {name!r} is missing or not a {kind.__name__}"
            )
    return envelope


def _content(envelope: dict[str, Any]) -> SignedBundle:
    actual = "sha256:" + hashlib.sha256(canonical_json(envelope["bundle"])).hexdigest()
    if actual != envelope["digest"]:
        raise DigestMismatchError(
            f"bundle content hashes to {actual}, but the envelope says {envelope['digest']}"
        )
    try:
        bundle = Bundle.model_validate(envelope["bundle"])
    except ValidationError as exc:
        raise BundleValidationError(f"bundle does not validate: {exc}") from exc
    if canonical_json(_as_given(bundle_data(bundle), envelope["bundle"])) != canonical_json(
        envelope["bundle"]
    ):
        raise DigestMismatchError(
            "bundle content is not in canonical form (a value reads back differently); "
            "rebuild it with `failsmall build`"
        )
    return SignedBundle(bundle, envelope["digest"], envelope["key_id"], envelope["signature"])


def _as_given(parsed: Any, given: Any) -> Any:
    """`parsed` (a validated bundle, dumped) without the fields `given` leaves out.

    Every value the signer wrote must read back exactly as written, or the node would serve
    something other than what was signed. A field left out takes its default: so a bundle
    signed before a field existed keeps verifying on a node that knows the field (a node's
    last-known-good survives an upgrade of the node).
    """
    if isinstance(parsed, dict) and isinstance(given, dict):
        return {k: _as_given(v, given[k]) for k, v in parsed.items() if k in given}
    if isinstance(parsed, list) and isinstance(given, list) and len(parsed) == len(given):
        return [_as_given(p, g) for p, g in zip(parsed, given, strict=True)]
    return parsed


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError("the signing key is not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError("the trusted key is not an Ed25519 public key")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
