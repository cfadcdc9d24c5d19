"""https origins: the node speaks TLS to them and verifies their certificates."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from failsmall.model import Origin, Route
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    make_bundle,
    running_origin,
    serving,
)


@dataclass
class Authority:
    """A throwaway CA that signs server certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def server_context(self, tmp_path: Path, dns_name: str) -> ssl.SSLContext:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(dns_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = tmp_path / f"{dns_name}.pem", tmp_path / f"{dns_name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert_path, key_path)
        return context


@pytest.fixture
def authority() -> Authority:
    return Authority.create("failsmall test CA")


@pytest.fixture
async def tls_origin(tmp_path: Path, authority: Authority) -> AsyncIterator[OriginServer]:
    async with running_origin(authority.server_context(tmp_path, "origin.test")) as state:
        yield state


async def _node_for(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: Origin
) -> httpx.AsyncClient:
    node = await start_node()
    bundle = make_bundle("http://unused", origins=[origin], routes=[Route(origin=origin.id)])
    await serving(node, watch.publish(keys.sign(bundle)))
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=5)


async def test_requests_reach_an_https_origin_over_verified_tls_and_reuse_it(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    authority: Authority,
    tls_origin: OriginServer,
) -> None:
    origin = Origin(
        id="web",
        url=f"https://127.0.0.1:{tls_origin.port}",
        tls_ca_pem=authority.pem,
        tls_server_name="origin.test",
    )
    async with await _node_for(start_node, watch, keys, origin) as client:
        for _ in range(3):
            got = await client.get("/hello")
            assert got.status_code == 200
            assert got.text == "hello"
    assert tls_origin.requests == 3
    assert len(tls_origin.peers) == 1  # one TLS connection, kept alive


@pytest.mark.parametrize(
    ("trust", "name", "reason"),
    [
        ("other-ca", "origin.test", b"CERTIFICATE_VERIFY_FAILED"),
        ("system", "origin.test", b"CERTIFICATE_VERIFY_FAILED"),
        ("our-ca", "wrong.test", b"CERTIFICATE_VERIFY_FAILED"),
    ],
    ids=["another-ca", "system-trust-store", "wrong-name"],
)
async def test_an_origin_certificate_that_does_not_verify_is_a_502(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    authority: Authority,
    tls_origin: OriginServer,
    trust: str,
    name: str,
    reason: bytes,
) -> None:
    ca_pem = {
        "other-ca": Authority.create("someone else").pem,
        "system": "",
        "our-ca": authority.pem,
    }[trust]
    origin = Origin(
        id="web",
        url=f"https://127.0.0.1:{tls_origin.port}",
        tls_ca_pem=ca_pem,
        tls_server_name=name,
    )
    async with await _node_for(start_node, watch, keys, origin) as client:
        got = await client.get("/hello")
    assert got.status_code == 502
    assert reason in got.content
    assert tls_origin.requests == 0


def test_tls_settings_are_checked_when_the_bundle_is_built(authority: Authority) -> None:
    with pytest.raises(ValidationError, match="need an https:// url"):
        Origin(id="web", url="http://127.0.0.1:8000", tls_ca_pem=authority.pem)
    with pytest.raises(ValidationError, match="no usable PEM certificate"):
        Origin(id="web", url="https://127.0.0.1:8443", tls_ca_pem="not a certificate")
