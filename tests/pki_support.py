"""A small test PKI, made with `cryptography` in the test run itself (no openssl command needed).

`Ca(name)` is a self-signed CA (EC P-256, or RSA) that issues leaf
certificates; `Pki(directory)` writes CAs, server certificates (with their
host names and addresses as subjectAltName) and client certificates into a
directory as PEM files `<name>.pem` / `<name>.key`, so that any TLS peer, in
Python or Node, can load them.

`mcsp_pki(directory)` is the set the MCSP TLS tests use: `ca` signs
`server` (localhost, 127.0.0.1) and `elsewhere` (mcsp.example.org, a
certificate for another host); `other-ca` signs nothing the station should
trust.

One module for every test that needs certificates; tests/backends/ocpp/pki.py builds the
OCPP security set (a CPO CA, a rogue CA, a manufacturer's firmware signer) from it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def name(cn: str, org: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attributes)


def new_key(kind: str = "ec") -> Any:
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ip_address(host))
    except ValueError:
        return x509.DNSName(host)


class Ca:
    """A self-signed certificate authority."""

    def __init__(self, cn: str, kind: str = "ec", days: int = 30, org: str | None = None) -> None:
        self.key = new_key(kind)
        now = datetime.now(UTC)
        usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                              encipher_only=False, decipher_only=False)
        self.cert = (x509.CertificateBuilder().subject_name(name(cn, org)).issuer_name(name(cn, org))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=days))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(usage, critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return cert_pem(self.cert).decode()

    def issue(self, public_key: Any, subject: x509.Name, *, hosts: Iterable[str] = (), client: bool = False,
              start: datetime | None = None, days: int = 10) -> x509.Certificate:
        """A leaf certificate: for a TLS server when `hosts` are given (subjectAltName), for a
        TLS client with `client`."""
        now = datetime.now(UTC)
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject).public_key(public_key)
             .serial_number(x509.random_serial_number())
             .not_valid_before(start or now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False))
        hosts = list(hosts)
        if hosts:
            b = b.add_extension(x509.SubjectAlternativeName([_alt_name(h) for h in hosts]), critical=False)
        purposes = ([ExtendedKeyUsageOID.SERVER_AUTH] if hosts else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        if purposes:
            b = b.add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
        return b.sign(self.key, hashes.SHA256())

    def sign_csr(self, csr_pem: str, days: int = 10) -> x509.Certificate:
        """A client certificate for a certificate signing request (the station's CSR)."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.is_signature_valid
        return self.issue(csr.public_key(), csr.subject, client=True, days=days)


class Pki:
    """CAs and certificates as PEM files in one directory."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cas: dict[str, Ca] = {}

    def path(self, file: str) -> str:
        return str(self.dir / file)

    def __truediv__(self, file: str) -> Path:  # pki / "ca.pem", as with a directory
        return self.dir / file

    def ca(self, ca_name: str, kind: str = "ec") -> Ca:
        ca = self.cas[ca_name] = Ca(ca_name, kind)
        (self.dir / f"{ca_name}.pem").write_bytes(cert_pem(ca.cert))
        return ca

    def leaf(self, leaf_name: str, ca_name: str, *, cn: str | None = None, hosts: Iterable[str] = (),
             client: bool = False) -> Path:
        """`<leaf_name>.pem` and `.key`, signed by the CA `ca_name`; returns the certificate's path."""
        key = new_key()
        cert = self.cas[ca_name].issue(key.public_key(), name(cn or leaf_name), hosts=hosts, client=client)
        (self.dir / f"{leaf_name}.key").write_bytes(key_pem(key))
        (self.dir / f"{leaf_name}.pem").write_bytes(cert_pem(cert))
        return self.dir / f"{leaf_name}.pem"


def mcsp_pki(directory: str | Path) -> Pki:
    """`ca` signs `server` (localhost, 127.0.0.1) and `elsewhere` (another host); `other-ca` signs nothing."""
    pki = Pki(directory)
    pki.ca("ca")
    pki.ca("other-ca")
    pki.leaf("server", "ca", cn="localhost", hosts=["localhost", "127.0.0.1"])
    pki.leaf("elsewhere", "ca", hosts=["mcsp.example.org"])
    return pki
