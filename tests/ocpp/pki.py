"""A small PKI for the OCPP security tests, made with `cryptography` in the test itself.

`Pki(dir)` holds a CPO root CA ("cpo-ca"), another unrelated CA ("rogue-ca"),
a manufacturer root ("mfr-ca") with a firmware signing certificate, server
certificates for 127.0.0.1 and station (client) certificates. Every file is
written as PEM into the directory so the Node central system and the station
can load them.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str, org: str = "Test CPO") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])


def _key(kind: str = "ec"):
    return rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class Ca:
    def __init__(self, cn: str, kind: str = "ec", days: int = 30) -> None:
        self.key = _key(kind)
        now = datetime.now(UTC)
        self.cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=days))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                  key_encipherment=False, data_encipherment=False, key_agreement=False,
                                                  key_cert_sign=True, crl_sign=True, encipher_only=False,
                                                  decipher_only=False), critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))

    @property
    def pem(self) -> str:
        return pem(self.cert)

    def issue(self, public_key, subject: x509.Name, *, server_ip: str | None = None, client: bool = False,
              start: datetime | None = None, days: int = 10) -> x509.Certificate:
        now = datetime.now(UTC)
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject).public_key(public_key)
             .serial_number(x509.random_serial_number())
             .not_valid_before(start or now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False))
        if server_ip:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(server_ip))]), critical=False)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        if client:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        return b.sign(self.key, hashes.SHA256())

    def sign_csr(self, csr_pem: str, days: int = 10) -> x509.Certificate:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        assert csr.is_signature_valid
        return self.issue(csr.public_key(), csr.subject, client=True, days=days)


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cpo = Ca("cpo-ca")
        self.rogue = Ca("rogue-ca")
        self.mfr = Ca("mfr-ca", kind="rsa")
        self.write("cpo-ca.pem", self.cpo.pem)
        self.write("rogue-ca.pem", self.rogue.pem)
        self.write("mfr-ca.pem", self.mfr.pem)
        self.server("server", self.cpo)
        self.server("rogue-server", self.rogue)
        self.station("station", self.cpo, "CP1")
        self.station("rogue-station", self.rogue, "CP1")
        self.signer_key = _key("rsa")
        self.signer = self.mfr.issue(self.signer_key.public_key(), _name("firmware signer", "Test Manufacturer"))
        self.write("signer.pem", pem(self.signer))

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.dir / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def server(self, name: str, ca: Ca) -> None:
        key = _key()
        self.write(f"{name}.key", _pem_key(key))
        self.write(f"{name}.pem", pem(ca.issue(key.public_key(), _name("127.0.0.1"), server_ip="127.0.0.1")))

    def station(self, name: str, ca: Ca, cp_id: str) -> None:
        key = _key()
        self.write(f"{name}.key", _pem_key(key))
        self.write(f"{name}.pem", pem(ca.issue(key.public_key(), _name(cp_id), client=True)))

    def sign_firmware(self, data: bytes) -> str:
        sig = self.signer_key.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                     salt_length=padding.PSS.DIGEST_LENGTH), hashes.SHA256())
        return base64.b64encode(sig).decode()


def ocsp_hash_data(cert: x509.Certificate, issuer: x509.Certificate) -> dict[str, str]:
    """CertificateHashData computed independently of the station, through cryptography's OCSP CertID."""
    from cryptography.x509 import ocsp
    req = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    return {"hashAlgorithm": "SHA256", "issuerNameHash": req.issuer_name_hash.hex(),
            "issuerKeyHash": req.issuer_key_hash.hex(), "serialNumber": format(req.serial_number, "x")}
