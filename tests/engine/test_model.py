"""The configuration model rejects bad input with messages that say what is wrong."""

from __future__ import annotations

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
from failsmall.model.envelope import key_id
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
