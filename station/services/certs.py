"""Certificates: trust stores, the station's key and CSR, certificate chains, firmware signatures.

Theory of operation
-------------------
Everything here is plain `cryptography` on PEM text; nothing talks to the
network. The charge point keeps three kinds of material under
`<state_dir>/ocpp/certs/` (files 0600, directory 0700):

* ``csms/*.pem``: the central system's root certificates (OCPP InstallCertificate).
  Together with the installer's `backend.ocpp.ca_file` they are the trust
  anchors for the central system's TLS certificate (profiles 2 and 3) and for
  the chain of the station's own certificate (the CPO hierarchy).
* ``manufacturer/*.pem``: the manufacturer's root certificates; a firmware signing
  certificate must be issued directly by one of them (the whitepaper forbids
  intermediates for firmware signing).
* ``station/``: the station's own key and certificate chain. `new_csr` makes a
  new EC P-256 key here (``pending-key.pem``, never sent anywhere) and a
  PKCS#10 CSR (CN = the station's serial, its charge point id; O = the CPO).
  `accept_signed` checks the chain and that it certifies the pending key,
  then moves the pair to ``key.pem``/``cert.pem``; the pair before it is kept
  as ``previous-*`` (the whitepaper recommends keeping it as a fallback).

OCPP names certificates by CertificateHashData (OCSP style, RFC 6960):
the hash of the issuer's DER name, the hash of the issuer's public key bits
and the serial number in hex without leading zeros. For a self-signed root the
issuer is the certificate itself. Hashes are compared case-insensitively.

Chain checks are deliberately simple and strict: every certificate must be
within its validity period and be signed by the next one (`verify_directly_
issued_by` checks issuer name and signature), and the last one must be signed
by (or be) a trust anchor. Trust anchors and chain members that sign must be
CA certificates (basicConstraints cA=true).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from station.services.lazy import lazy

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509 import oid
else:  # `cryptography` costs about 10 MiB of RSS: imported when a certificate is first handled
    x509 = lazy("cryptography.x509")
    hashes = lazy("cryptography.hazmat.primitives.hashes")
    serialization = lazy("cryptography.hazmat.primitives.serialization")
    ec = lazy("cryptography.hazmat.primitives.asymmetric.ec")
    padding = lazy("cryptography.hazmat.primitives.asymmetric.padding")
    rsa = lazy("cryptography.hazmat.primitives.asymmetric.rsa")
    oid = lazy("cryptography.x509.oid")


def _invalid_signature() -> type[Exception]:
    """The exception class itself (an `except` clause needs a real class)."""
    cls: type[Exception] = importlib.import_module("cryptography.exceptions").InvalidSignature
    return cls


# Kinds of root certificate (OCPP 1.6 calls them CentralSystemRootCertificate and
# ManufacturerRootCertificate, 2.0.1 CSMSRootCertificate and ManufacturerRootCertificate).
CSMS_ROOT = "csms"
MANUFACTURER_ROOT = "manufacturer"
_DIRS = {CSMS_ROOT: "csms", MANUFACTURER_ROOT: "manufacturer"}
_HASHES = {"SHA256": hashlib.sha256, "SHA384": hashlib.sha384, "SHA512": hashlib.sha512}
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
STORE_MAX = 8  # per certificate type (CertificateStoreMaxLength reports the total)


class CertificateError(ValueError):
    """A certificate, chain, CSR answer or signature that is not acceptable; the text says why."""


# ---------------------------------------------------------------- parsing

def load_pems(text: str | bytes) -> list[x509.Certificate]:
    """All certificates in a PEM text, in order. Raises CertificateError if there are none or one is bad."""
    data = text.encode() if isinstance(text, str) else text
    blocks = _PEM.findall(data)
    if not blocks:
        raise CertificateError("no PEM certificate found")
    try:
        return [x509.load_pem_x509_certificate(b) for b in blocks]
    except ValueError as exc:
        raise CertificateError(f"not a valid X.509 certificate: {exc}") from None


def load_der(data: bytes) -> x509.Certificate:
    """One DER certificate (e.g. the one a TLS peer showed). Raises ValueError if it is not one."""
    return x509.load_der_x509_certificate(data)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def now_utc() -> datetime:
    return datetime.now(UTC)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def check_period(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateError(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise CertificateError(f"{what} expired on {cert.not_valid_after_utc.isoformat()}")


def _key_ok(cert: x509.Certificate) -> bool:
    """A00.FR.501-503: RSA at least 2048 bits, elliptic curves at least 224 bits."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size >= 2048
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size >= 224
    return True  # Ed25519/Ed448: strong enough


def subject_cn(cert: x509.Certificate | x509.CertificateSigningRequest) -> str | None:
    names = cert.subject.get_attributes_for_oid(oid.NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


# ---------------------------------------------------------------- hash data

def _key_bits(cert: x509.Certificate) -> bytes:
    """The contents of the subjectPublicKey BIT STRING (what OCSP's issuerKeyHash hashes)."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def hash_data(cert: x509.Certificate, algorithm: str = "SHA256",
              issuer: x509.Certificate | None = None) -> dict[str, str]:
    """CertificateHashDataType of `cert`; `issuer` defaults to the certificate itself (a root)."""
    fn = _HASHES[algorithm]
    issuer = issuer or cert
    return {"hashAlgorithm": algorithm,
            "issuerNameHash": fn(cert.issuer.public_bytes()).hexdigest(),
            "issuerKeyHash": fn(_key_bits(issuer)).hexdigest(),
            "serialNumber": format(cert.serial_number, "x")}


def same_hash_data(a: dict, b: dict) -> bool:
    return (a.get("hashAlgorithm") == b.get("hashAlgorithm")
            and str(a.get("issuerNameHash", "")).lower() == str(b.get("issuerNameHash", "")).lower()
            and str(a.get("issuerKeyHash", "")).lower() == str(b.get("issuerKeyHash", "")).lower()
            and str(a.get("serialNumber", "")).lower().lstrip("0") == str(b.get("serialNumber", "")).lower().lstrip("0"))


# ---------------------------------------------------------------- chains and signatures

def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, _invalid_signature()):
        return False


def verify_chain(chain: list[x509.Certificate], anchors: Iterable[x509.Certificate], now: datetime,
                 what: str = "certificate") -> x509.Certificate:
    """Check a leaf-first chain against trust anchors; returns the anchor it ends in."""
    anchors = list(anchors)
    if not anchors:
        raise CertificateError(f"no trust anchor installed to verify the {what}")
    for i, cert in enumerate(chain):
        check_period(cert, now, what if i == 0 else f"chain certificate {i}")
        if not _key_ok(cert):
            raise CertificateError(f"{what if i == 0 else f'chain certificate {i}'} has a key that is too weak")
        if i + 1 < len(chain):
            if not is_ca(chain[i + 1]) or not _issued_by(cert, chain[i + 1]):
                raise CertificateError(f"chain certificate {i + 1} did not issue certificate {i}")
    last = chain[-1]
    for anchor in anchors:
        if last == anchor or (is_ca(anchor) and _issued_by(last, anchor)):
            check_period(anchor, now, "the trust anchor")
            return anchor
    raise CertificateError(f"the {what} does not chain to an installed root certificate")


def verify_signature(cert: x509.Certificate, data: bytes, signature: bytes) -> None:
    """L01.FR.04: RSA-PSS with SHA-256 (any salt length) or ECDSA with SHA-256 over the whole file."""
    key = cert.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                    salt_length=padding.PSS.AUTO), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise CertificateError(f"unsupported signing key type {type(key).__name__}")
    except _invalid_signature():
        raise CertificateError("the firmware signature does not match the file") from None


def decode_signature(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (ValueError, TypeError):
        raise CertificateError("the signature is not base64") from None


# ---------------------------------------------------------------- files

def _write_private(path: Path, data: bytes) -> None:
    """Write a file only the station's user can read, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class CertStore:
    """Installed root certificates and the station's own key and certificate."""

    def __init__(self, directory: Path, config_ca_file: str | None = None) -> None:
        self.dir = Path(directory)
        self.config_ca_file = config_ca_file

    # -- roots ------------------------------------------------------------------------
    def _kind_dir(self, kind: str) -> Path:
        return self.dir / _DIRS[kind]

    def installed(self, kind: str) -> list[x509.Certificate]:
        """Roots installed through OCPP (not the installer's ca_file), oldest file first."""
        d = self._kind_dir(kind)
        if not d.is_dir():
            return []
        out = []
        for path in sorted(d.glob("*.pem"), key=lambda p: p.stat().st_mtime):
            try:
                out.extend(load_pems(path.read_bytes()))
            except (OSError, CertificateError):
                continue
        return out

    def configured_roots(self) -> list[x509.Certificate]:
        if not self.config_ca_file:
            return []
        try:
            return load_pems(Path(self.config_ca_file).read_bytes())
        except (OSError, CertificateError):
            return []

    def csms_anchors(self) -> list[x509.Certificate]:
        """Trust anchors for the central system: the installer's ca_file and the installed roots."""
        return self.configured_roots() + self.installed(CSMS_ROOT)

    def install(self, kind: str, text: str, now: datetime) -> str:
        """InstallCertificate: "Accepted", "Rejected" (invalid, or the store is full) or "Failed"."""
        certs = load_pems(text)  # CertificateError -> Rejected by the caller
        if len(certs) != 1:
            raise CertificateError("exactly one certificate expected")
        cert = certs[0]
        check_period(cert, now, "the certificate")
        if not is_ca(cert):
            raise CertificateError("not a CA certificate (basicConstraints cA is not true)")
        if not _key_ok(cert):
            raise CertificateError("the certificate's key is too weak")
        existing = self.installed(kind)
        if cert in existing:
            return "Accepted"
        if len(existing) >= STORE_MAX:
            return "Rejected"
        name = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()[:32] + ".pem"
        try:
            _write_private(self._kind_dir(kind) / name, pem(cert).encode())
        except OSError:
            return "Failed"
        return "Accepted"

    def _issuer_of(self, cert: x509.Certificate, pool: list[x509.Certificate]) -> x509.Certificate:
        if cert.issuer == cert.subject:
            return cert
        for other in pool:
            if other.subject == cert.issuer and _issued_by(cert, other):
                return other
        return cert  # issuer unknown here: its own key is the best we can name

    def ids(self, kind: str, algorithm: str = "SHA256") -> list[dict[str, str]]:
        pool = (self.configured_roots() if kind == CSMS_ROOT else []) + self.installed(kind)
        return [hash_data(c, algorithm, self._issuer_of(c, pool)) for c in pool]

    def find(self, wanted: dict) -> tuple[str, x509.Certificate, Path | None] | None:
        """(kind, certificate, file or None for the installer's ca_file) matching CertificateHashData."""
        algorithm = wanted.get("hashAlgorithm", "SHA256")
        if algorithm not in _HASHES:
            return None
        for kind in (CSMS_ROOT, MANUFACTURER_ROOT):
            pool = (self.configured_roots() if kind == CSMS_ROOT else []) + self.installed(kind)
            for cert in self.configured_roots() if kind == CSMS_ROOT else []:
                if same_hash_data(hash_data(cert, algorithm, self._issuer_of(cert, pool)), wanted):
                    return kind, cert, None
            d = self._kind_dir(kind)
            for path in sorted(d.glob("*.pem")) if d.is_dir() else []:
                try:
                    cert = load_pems(path.read_bytes())[0]
                except (OSError, CertificateError):
                    continue
                if same_hash_data(hash_data(cert, algorithm, self._issuer_of(cert, pool)), wanted):
                    return kind, cert, path
        return None

    # -- the station's own key and certificate ------------------------------------------
    @property
    def station_dir(self) -> Path:
        return self.dir / "station"

    def new_csr(self, common_name: str, organization: str) -> str:
        """A02.FR.02/03/13: a fresh key pair and a PEM CSR (CN = serial, O = CpoName)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(oid.NameOID.COMMON_NAME, common_name[:64]),
                             x509.NameAttribute(oid.NameOID.ORGANIZATION_NAME, organization[:64])])
        csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_extension(x509.KeyUsage(digital_signature=True, key_agreement=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .sign(key, hashes.SHA256()))
        _write_private(self.station_dir / "pending-key.pem",
                       key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    def accept_signed(self, chain_text: str, now: datetime, max_size: int) -> x509.Certificate:
        """CertificateSigned: check and install; raises CertificateError (-> Rejected)."""
        if len(chain_text) > max_size:
            raise CertificateError(f"certificate chain longer than {max_size} characters")
        pending = self.station_dir / "pending-key.pem"
        if not pending.is_file():
            raise CertificateError("no certificate signing request is pending")
        key = serialization.load_pem_private_key(pending.read_bytes(), password=None)
        chain = load_pems(chain_text)
        leaf = chain[0]
        if leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
                key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise CertificateError("the certificate is not for the key of the pending request")
        # The new certificate may start in the future (A02.FR.08: switch once it is valid):
        # check the period at the later of now and its start.
        when = max(now, leaf.not_valid_before_utc)
        verify_chain(chain, self.csms_anchors(), when, "station certificate")
        d = self.station_dir
        for name in ("key.pem", "cert.pem"):
            if (d / name).is_file():
                os.replace(d / name, d / f"previous-{name}")
        _write_private(d / "cert.pem", "".join(pem(c) for c in chain).encode())
        os.replace(pending, d / "key.pem")
        return leaf

    def station_credentials(self, now: datetime) -> tuple[Path, Path] | None:
        """(cert, key) files of the newest installed station certificate valid now, if any."""
        d = self.station_dir
        for prefix in ("", "previous-"):
            cert, key = d / f"{prefix}cert.pem", d / f"{prefix}key.pem"
            if not (cert.is_file() and key.is_file()):
                continue
            try:
                leaf = load_pems(cert.read_bytes())[0]
                check_period(leaf, now, "station certificate")
            except (OSError, CertificateError):
                continue
            return cert, key
        return None
