"""The PKI of the OCPP security tests, built on tests/pki_support.py (`cryptography`, in the test itself).

`Pki(dir)` holds a CPO root CA ("cpo-ca"), another unrelated CA ("rogue-ca"),
a manufacturer root ("mfr-ca") with a firmware signing certificate, server
certificates for 127.0.0.1 and station (client) certificates. Every file is
written as PEM into the directory so the Node central system and the station
can load them.
"""

from __future__ import annotations

import base64
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from pki_support import Ca, cert_pem, key_pem, name, new_key

ORG = "Test CPO"


def _name(cn: str, org: str = ORG) -> x509.Name:
    return name(cn, org)


def pem(cert: x509.Certificate) -> str:
    return cert_pem(cert).decode()


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cpo = Ca("cpo-ca", org=ORG)
        self.rogue = Ca("rogue-ca", org=ORG)
        self.mfr = Ca("mfr-ca", kind="rsa", org=ORG)
        self.write("cpo-ca.pem", self.cpo.pem)
        self.write("rogue-ca.pem", self.rogue.pem)
        self.write("mfr-ca.pem", self.mfr.pem)
        self.server("server", self.cpo)
        self.server("rogue-server", self.rogue)
        self.station("station", self.cpo, "CP1")
        self.station("rogue-station", self.rogue, "CP1")
        self.signer_key = new_key("rsa")
        self.signer = self.mfr.issue(self.signer_key.public_key(), _name("firmware signer", "Test Manufacturer"))
        self.write("signer.pem", pem(self.signer))

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.dir / name
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return path

    def path(self, name: str) -> str:
        return str(self.dir / name)

    def server(self, file: str, ca: Ca) -> None:
        key = new_key()
        self.write(f"{file}.key", key_pem(key))
        self.write(f"{file}.pem", pem(ca.issue(key.public_key(), _name("127.0.0.1"), hosts=["127.0.0.1"])))

    def station(self, file: str, ca: Ca, cp_id: str) -> None:
        key = new_key()
        self.write(f"{file}.key", key_pem(key))
        self.write(f"{file}.pem", pem(ca.issue(key.public_key(), _name(cp_id), client=True)))

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
