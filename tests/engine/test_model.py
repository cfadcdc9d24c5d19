"""The configuration model rejects bad input with messages that say what is wrong."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from failsmall.model import (
    Bundle,
    DigestMismatchError,
    EnvelopeFormatError,
    SignatureError,
    sign_bundle,
    verify_envelope,
)
from failsmall.model.envelope import ENVELOPE_FORMAT, bundle_data, canonical_json, key_id
from tests.engine.factory import bundle, waf_bundle


def test_unknown_field_is_an_error() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        Bundle.model_validate({"limitz": {}})


def test_duplicate_rule_ids_dangling_execute_and_cycle_all_reported() -> None:
    with pytest.raises(ValidationError) as info:
        waf_bundle(
            [
                {"id": "r1", "action": {"type": "log"}},
                {"id": "r1", "action": {"type": "execute", "ruleset": "nowhere"}},
                {"id": "r2", "action": {"type": "execute", "ruleset": "a"}},
            ],
            {"id": "a", "rules": [{"id": "r3", "action": {"type": "execute", "ruleset": "b"}}]},
            {"id": "b", "rules": [{"id": "r4", "action": {"type": "execute", "ruleset": "a"}}]},
        )
    text = str(info.value)
    assert "duplicate rule id 'r1'" in text
    assert "unknown ruleset 'nowhere'" in text
    assert "execute cycle: a -> b -> a" in text


def test_feature_file_over_bundle_capacity_is_invalid() -> None:
    features = [
        {"name": f"f{i}", "kind": "header_present", "param": "x", "weight": 1} for i in range(201)
    ]
    with pytest.raises(ValidationError, match="201 features but the capacity is 200"):
        bundle(bot={"feature_file": {"features": features}})


def test_body_buffer_bounds() -> None:
    bundle(limits={"waf_body_buffer": 1024 * 1024})
    with pytest.raises(ValidationError):
        bundle(limits={"waf_body_buffer": 17 * 1024 * 1024})


def test_signed_envelope_round_trip_and_tampering() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_bundle(bundle(name="a"), key)
    trusted = {key_id(key.public_key()): key.public_key()}
    assert verify_envelope(signed.to_bytes(), trusted).digest == signed.digest

    tampered = signed.to_bytes().replace(b'"name": "a"', b'"name": "b"')
    with pytest.raises(DigestMismatchError):
        verify_envelope(tampered, trusted)
    other = Ed25519PrivateKey.generate()
    with pytest.raises(SignatureError, match="not trusted"):
        verify_envelope(signed.to_bytes(), {key_id(other.public_key()): other.public_key()})
    with pytest.raises(EnvelopeFormatError):
        verify_envelope(signed.to_bytes()[:100], trusted)
    forged = (
        sign_bundle(bundle(name="b"), other)
        .to_bytes()
        .replace(key_id(other.public_key()).encode(), key_id(key.public_key()).encode())
    )
    with pytest.raises(SignatureError, match="does not verify"):
        verify_envelope(forged, trusted)


def _signed_raw(data: dict[str, object], key: Ed25519PrivateKey) -> bytes:
    """An envelope over exactly `data`, as a signer of another version might have written."""
    digest = "sha256:" + hashlib.sha256(canonical_json(data)).hexdigest()
    signature = base64.b64encode(key.sign(digest.encode())).decode()
    envelope = {
        "format": ENVELOPE_FORMAT,
        "digest": digest,
        "key_id": key_id(key.public_key()),
        "signature": signature,
        "bundle": data,
    }
    return json.dumps(envelope).encode()


def test_a_bundle_signed_before_a_field_existed_still_verifies() -> None:
    """A node's last-known-good survives an upgrade that adds fields with defaults."""
    key = Ed25519PrivateKey.generate()
    trusted = {key_id(key.public_key()): key.public_key()}
    data = bundle_data(bundle(name="old", limits={"max_headers": 50}))
    del data["limits"]["max_connections"]
    for origin in data["origins"]:
        del origin["replicas"], origin["tls_ca_pem"], origin["tls_server_name"]
    raw = _signed_raw(data, key)
    signed = verify_envelope(raw, trusted)
    assert signed.digest == json.loads(raw)["digest"]
    assert signed.bundle.limits.max_headers == 50
    assert signed.bundle.limits.max_connections == 10_000


def test_a_value_that_reads_back_differently_is_not_canonical() -> None:
    key = Ed25519PrivateKey.generate()
    trusted = {key_id(key.public_key()): key.public_key()}
    data = bundle_data(bundle(name="coerced"))
    data["limits"]["max_headers"] = 100.0  # valid as an int, but not what a node serves
    with pytest.raises(DigestMismatchError, match="not in canonical form"):
        verify_envelope(_signed_raw(data, key), trusted)
