"""Security profiles, credentials, security events and log: OCPP 1.6 security whitepaper (edition 2) and
OCPP 2.0.1 block A, which the whitepaper was taken from.

Theory of operation
-------------------
Both versions share this state: the profile, the password (1.6
AuthorizationKey, 2.0.1 SecurityCtrlr.BasicAuthPassword), the CPO name (1.6
CpoName, 2.0.1 SecurityCtrlr.OrganizationName), the trust stores and the
queue of security events. Events are recorded under the whitepaper's names;
a 2.0.1 connection sends them under the 2.0.1 names (ocpp201/names.py). The
1.6 configuration keys of the whitepaper are served here too (`change`,
`report`); 2.0.1 reaches the same state through `set_password`,
`set_cpo_name` and `raise_profile`.

**Profiles.** 0 none; 1 HTTP Basic (user = charge point id, password =
AuthorizationKey) over ws://; 2 TLS 1.2+ with the central system verified
against the CPO trust anchors (the installer's `ca_file` plus the roots
installed by InstallCertificate) and Basic, over wss://; 3 TLS with the
station's certificate as client certificate, no Basic. `connection()` turns
the active profile into (url, headers, ssl context) for websockets.

**Who may change what.** The installer's config (`security_profile`,
`authorization_key`) is the local method and may set anything, lower
included (A00.FR.005). Through OCPP the profile can only be raised
(ChangeConfiguration SecurityProfile; a value lower than or equal to the
current one is Rejected, A05.FR.01), and only when the new profile's
prerequisites are present (A05.FR.02-04): an AuthorizationKey for 1 and 2, a
valid CentralSystemRootCertificate (or `ca_file`) for 2 and 3, a station
certificate for 3. What OCPP set is kept in the store ("ocpp.security")
together with the config values it was set over; when the installer changes
the config, the config wins again.

**Raising, and falling back.** An accepted raise disconnects and reconnects
with the new profile (A05.FR.06/07). The raise is on probation until a
BootNotification is Accepted under it. If FALLBACK_AFTER connection attempts
in a row fail while on probation, the station falls back to the previous
profile and key (A05.FR.08 "SHOULD fallback to its previous security profile
settings"), logs it and reports ReconfigurationOfSecurityParameters. Once a
connection under the new profile was accepted the previous settings are
forgotten: from then on only the local config can go back (A05.FR.09).

**AuthorizationKey** is write-only: GetConfiguration lists the key without a
value, no log line or security-log entry ever holds it (A01.FR.12), and it is
persisted (store) so a restart keeps it. A change reconnects under profile 1
and 2 (A01 step 3). The Basic password is the key itself, except that a key of
32 to 40 hexadecimal digits is the hex form of a 16-20 byte binary password
(A00.FR.205, as the OCA test tool reads it).

**Security events** (whitepaper §8) go to the security log (a rolling file,
A04.FR.04) and to a durable queue in the store (station.services.security_log); after every accepted
BootNotification the queue is delivered in order as SecurityEventNotification
(A04.FR.02 "queued with a guaranteed delivery"). An event leaves the queue only
when the central system confirmed it, or when it answers NotImplemented /
NotSupported (it does not have the security extension: the event stays in the
security log). The queue is bounded (QUEUE_MAX): when full, the oldest
non-critical event is dropped first; consecutive identical events (a wrong
password retried with backoff) are queued once.

**Failures to connect** are classified (`classify`): credentials refused
(HTTP 401/403), central system certificate invalid, TLS version too low,
station certificate refused, or unreachable. Each kind is logged once at
ERROR with what to check; repeats of the same failure go to DEBUG, and the
link keeps retrying with its exponential backoff.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
import string
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station.services.lazy import lazy
from station.services.security_log import QUEUE_MAX, SecurityEvents, SecurityLog

if TYPE_CHECKING:
    from station.services import certs as certstore
else:  # certificates (and `cryptography`) only when a certificate is handled or TLS is set up
    certstore = lazy("station.services.certs")

log = logging.getLogger(__name__)

STORE_KEY = "ocpp.security"
QUEUE_KEY = "ocpp.security_events"
FALLBACK_AFTER = 5  # failed connection attempts in a row under a raised profile before falling back
CHAIN_MAX = 10000  # CertificateSignedMaxChainSize

# Whitepaper §8: event -> critical. The spelling is the whitepaper's (edition 2 and 3).
EVENTS: dict[str, bool] = {
    "FirmwareUpdated": True,
    "FailedToAuthenticationAtCentralSystem": False,
    "CentralSystemFailedToAuthentication": False,
    "SettingSystemTime": True,
    "StartupOfTheDevice": True,
    "ResetOrReboot": True,
    "SecurityLogWasCleared": True,
    "ReconfigurationOfSecurityParameters": False,
    "MemoryExhaustion": True,
    "InvalidMessages": False,
    "AttemptedReplayAttacks": False,
    "TamperDetectionActivated": True,
    "InvalidFirmwareSignature": False,
    "InvalidFirmwareSigningCertificate": False,
    "InvalidCentralSystemCertificate": False,
    "InvalidChargePointCertificate": False,
    "InvalidTLSVersion": False,
    "InvalidTLSCipherSuite": False,
}

# Configuration keys of the whitepaper (§7), served here rather than by confkeys.
KEY_NAMES = ("AdditionalRootCertificateCheck", "AuthorizationKey", "CertificateSignedMaxChainSize",
             "CertificateStoreMaxLength", "CpoName", "SecurityProfile", "SupportedFileTransferProtocols")
_LOWER = {k.lower(): k for k in KEY_NAMES}
_PRINTABLE = set(string.printable) - set("\t\n\r\x0b\x0c")


def basic_password(key: str) -> bytes:
    """The HTTP Basic password for an AuthorizationKey (hex form of 16-20 bytes, or the text itself)."""
    text = key.strip()
    if 32 <= len(text) <= 40 and len(text) % 2 == 0 and all(c in string.hexdigits for c in text):
        return bytes.fromhex(text)
    return key.encode("utf-8")


def valid_key(key: str | None) -> bool:
    if not key:
        return False
    return 16 <= len(key) <= 40 and all(c in _PRINTABLE for c in key)


def _sha(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text else None


# ---------------------------------------------------------------- classification of link failures

@dataclass(frozen=True)
class Failure:
    kind: str  # auth | server_cert | tls_version | client_cert | unreachable
    text: str
    event: str | None

    @property
    def security(self) -> bool:
        return self.kind != "unreachable"


def classify(exc: BaseException, profile: int) -> Failure:
    """What a failed connection attempt means, for the log line and the security event."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        kind = "client_cert" if profile == 3 else "auth"  # profile 3 sends no password: the certificate was refused
        return Failure(kind, f"HTTP {status}", "FailedToAuthenticationAtCentralSystem")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Failure("server_cert", exc.verify_message or str(exc), "InvalidCentralSystemCertificate")
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or str(exc)).upper()
        if "PROTOCOL_VERSION" in reason or "UNSUPPORTED_PROTOCOL" in reason:
            return Failure("tls_version", reason, "InvalidTLSVersion")
        if profile == 3 and any(w in reason for w in ("CERTIFICATE", "UNKNOWN_CA", "HANDSHAKE_FAILURE")):
            return Failure("client_cert", reason, "FailedToAuthenticationAtCentralSystem")
        return Failure("unreachable", reason, None)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, ssl.SSLError):
        return classify(cause, profile)
    return Failure("unreachable", f"{type(exc).__name__}: {exc}"[:300], None)


# ---------------------------------------------------------------- the security state

class Security:
    """Active profile and credentials, the whitepaper's configuration keys, events and trust stores."""

    KEY_NAMES = KEY_NAMES

    def __init__(self, config: Any, store: Any, charge_point_id: str, work_dir: Path,
                 stamp: Callable[[], str]) -> None:
        o = config.backend.ocpp
        self.o = o
        self.store = store
        self.charge_point_id = charge_point_id
        self.stamp = stamp
        self.work_dir = Path(work_dir)
        self.log = SecurityLog(Path(work_dir) / "security.log")
        self.events = SecurityEvents(store, self.log, stamp, store_key=QUEUE_KEY,
                                     critical={name for name, critical in EVENTS.items() if critical})
        self.reconnect_requested = False
        self._last_failure: tuple[str, str] | None = None
        saved = dict(store.get_json(STORE_KEY, {}) or {})
        state: dict[str, Any] = {"config_profile": o.security_profile, "config_key": _sha(o.authorization_key),
                                 "profile": o.security_profile, "key": None, "previous": None, "probation": False,
                                 "failures": 0, "cpo_name": saved.get("cpo_name", "")}
        if saved.get("config_profile") == o.security_profile and "profile" in saved:
            for k in ("profile", "previous", "probation", "failures"):
                state[k] = saved.get(k, state[k])
        if saved.get("config_key") == _sha(o.authorization_key):
            state["key"] = saved.get("key")
        self._state = state
        self._save()

    @cached_property
    def certs(self) -> certstore.CertStore:
        """Trust stores and the station's key (station.services.certs), opened at first use."""
        return certstore.CertStore(self.work_dir / "certs", self.o.ca_file)

    # -- state -------------------------------------------------------------------------
    def _save(self) -> None:
        self.store.put_json(STORE_KEY, self._state)

    @property
    def profile(self) -> int:
        return int(self._state["profile"])

    @property
    def authorization_key(self) -> str | None:
        return self._state.get("key") or self.o.authorization_key

    @property
    def cpo_name(self) -> str:
        return self._state.get("cpo_name") or ""

    @property
    def on_probation(self) -> bool:
        return bool(self._state.get("probation"))

    # -- events ------------------------------------------------------------------------
    def event(self, kind: str, tech_info: str | None = None) -> None:
        """Record a security event: security log and the durable delivery queue."""
        self.events.record(kind, tech_info)

    # -- configuration keys --------------------------------------------------------------
    @staticmethod
    def canonical(name: str) -> str | None:
        return name if name in KEY_NAMES else _LOWER.get(name.lower())

    def report(self, name: str) -> dict[str, Any]:
        readonly = name not in ("AuthorizationKey", "CpoName", "SecurityProfile")
        entry: dict[str, Any] = {"key": name, "readonly": readonly}
        values = {"AdditionalRootCertificateCheck": "false", "CertificateSignedMaxChainSize": str(CHAIN_MAX),
                  "CertificateStoreMaxLength": str(2 * certstore.STORE_MAX), "CpoName": self.cpo_name,
                  "SecurityProfile": str(self.profile), "SupportedFileTransferProtocols": "FTP,HTTP,HTTPS"}
        if name in values:  # AuthorizationKey is write-only: listed, never with its value
            entry["value"] = values[name]
        return entry

    def change(self, name: str, value: str) -> str:
        """ChangeConfiguration of a whitepaper key: Accepted / Rejected (never logs the value of a secret)."""
        if name == "AuthorizationKey":
            return "Accepted" if self.set_password(value, "AuthorizationKey") else "Rejected"
        if name == "CpoName":
            return "Accepted" if self.set_cpo_name(value) else "Rejected"
        if name == "SecurityProfile":
            return self.raise_profile(value)
        return "Rejected"  # read-only

    def set_password(self, value: str, name: str = "BasicAuthPassword") -> bool:
        """A new Basic password from the central system (1.6 AuthorizationKey, 2.0.1 BasicAuthPassword, A01):
        16-40 printable characters; kept, reported as a security event, and used from the next connection
        (a reconnect now under profiles 1 and 2). The value is never logged."""
        if not valid_key(value):
            log.warning("%s rejected: 16-40 printable characters required", name)
            return False
        self._state["key"] = value
        self._save()
        self.event("ReconfigurationOfSecurityParameters", f"{name} changed")
        log.info("%s changed by the central system", name)
        if self.profile in (1, 2):
            self.reconnect_requested = True  # A01: reconnect with the new password
        return True

    def set_cpo_name(self, value: str) -> bool:
        """1.6 CpoName, 2.0.1 SecurityCtrlr.OrganizationName: the O of the station's CSR."""
        if not value.strip() or len(value) > 64:
            return False
        self._state["cpo_name"] = value.strip()
        self._save()
        return True

    def raise_profile(self, value: str) -> str:
        text = value.strip()
        if not text.isdigit() or int(text) > 3:
            return "Rejected"
        new, old = int(text), self.profile
        why = None
        if new <= old:
            why = f"profile {new} is not higher than the current {old} (lowering only through the local config)"
        elif new in (1, 2) and not valid_key(self.authorization_key):
            why = "no valid AuthorizationKey is set"
        elif new in (2, 3) and not self._valid_anchor():
            why = "no valid CentralSystemRootCertificate is installed"
        elif new == 3 and self.client_credentials() is None:
            why = "no valid station certificate is installed"
        if why:
            log.warning("ChangeConfiguration SecurityProfile=%s rejected: %s", text, why)
            return "Rejected"
        self._state.update(previous={"profile": old, "key": self._state.get("key")}, profile=new,
                           probation=True, failures=0)
        self._save()
        self.event("ReconfigurationOfSecurityParameters", f"SecurityProfile raised from {old} to {new}")
        log.warning("security profile raised from %d to %d by the central system; reconnecting", old, new)
        self.reconnect_requested = True
        return "Accepted"

    def _valid_anchor(self) -> bool:
        now = certstore.now_utc()
        return any(c.not_valid_before_utc <= now <= c.not_valid_after_utc for c in self.certs.csms_anchors())

    # -- the connection ------------------------------------------------------------------
    def client_credentials(self) -> tuple[str, str] | None:
        """(cert file, key file) for profile 3: the newest certificate from CertificateSigned, else the config's."""
        installed = self.certs.station_credentials(certstore.now_utc())
        if installed is not None:
            return str(installed[0]), str(installed[1])
        if self.o.cert_file and self.o.key_file and Path(self.o.cert_file).is_file() and Path(self.o.key_file).is_file():
            return self.o.cert_file, self.o.key_file
        return None

    def url(self, base: str) -> str:
        """The central system URL for the active profile (2 and 3 need wss://)."""
        if self.profile >= 2:
            if self.o.tls_url:
                return self.o.tls_url.rstrip("/") + "/" + self.charge_point_id
            if base.startswith("ws://"):
                return "wss://" + base[len("ws://"):]
        return base

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # A00.FR.312
        anchors = self.certs.csms_anchors()
        if anchors:
            ctx.load_verify_locations(cadata="".join(certstore.pem(c) for c in anchors))
        else:
            ctx.load_default_certs()  # a public CA signs the central system
        if self.profile == 3:
            creds = self.client_credentials()
            if creds is not None:
                ctx.load_cert_chain(*creds)
        return ctx

    def connection(self, base_url: str) -> tuple[str, dict[str, str], ssl.SSLContext | None]:
        url = self.url(base_url)
        headers: dict[str, str] = {}
        key = self.authorization_key
        if self.profile in (1, 2) and key:
            token = base64.b64encode(self.charge_point_id.encode() + b":" + basic_password(key)).decode()
            headers["Authorization"] = f"Basic {token}"
        return url, headers, (self.tls_context() if url.startswith("wss://") else None)

    # -- outcomes of connection attempts ---------------------------------------------------
    def connect_failed(self, exc: BaseException, url: str, delay: float) -> None:
        failure = classify(exc, self.profile)
        key = (failure.kind, failure.text)
        if key != self._last_failure:
            self._last_failure = key
            level = logging.ERROR if failure.security else logging.INFO
            log.log(level, "%s; retrying with backoff (next in %.1f s)", self._explain(failure, url), delay)
            if failure.event:
                self.event(failure.event, f"{failure.kind}: {failure.text}")
        else:
            log.debug("connection to %s failed again (%s); next try in %.1f s", url, failure.text, delay)
        self._probation_failure()

    def session_ended_unregistered(self) -> None:
        """A connection that ended before BootNotification was Accepted counts as a failed attempt."""
        self._probation_failure()

    def registered(self) -> None:
        """BootNotification Accepted under the active profile."""
        self._last_failure = None
        if self.on_probation:
            log.info("security profile %d confirmed by an accepted connection", self.profile)
            self._state.update(previous=None, probation=False, failures=0)
            self._save()

    def _probation_failure(self) -> None:
        if not self.on_probation:
            return
        self._state["failures"] = int(self._state.get("failures", 0)) + 1
        if self._state["failures"] >= FALLBACK_AFTER and self._state.get("previous"):
            prev = self._state["previous"]
            raised = self.profile
            self._state.update(profile=int(prev["profile"]), key=prev.get("key"), previous=None,
                               probation=False, failures=0)
            log.error("cannot connect under the raised security profile %d after %d attempts: falling back "
                      "to profile %d (whitepaper A05.FR.08)", raised, FALLBACK_AFTER, self.profile)
            self._save()
            self.event("ReconfigurationOfSecurityParameters",
                       f"fallback from SecurityProfile {raised} to {self.profile}: could not connect")
        else:
            self._save()

    def _explain(self, failure: Failure, url: str) -> str:
        p = self.profile
        if failure.kind == "auth":
            return (f"the central system at {url} refused the credentials of charge point {self.charge_point_id!r} "
                    f"({failure.text}, security profile {p}): check the AuthorizationKey "
                    f"(backend.ocpp.authorization_key) registered for this charge point")
        if failure.kind == "server_cert":
            return (f"the central system's TLS certificate at {url} is not trusted ({failure.text}): check "
                    f"backend.ocpp.ca_file and the installed CentralSystemRootCertificates, and that the "
                    f"certificate names the host")
        if failure.kind == "tls_version":
            return f"the central system at {url} offers only TLS older than 1.2 ({failure.text}): refused"
        if failure.kind == "client_cert":
            return (f"the central system at {url} refused the station's certificate ({failure.text}, security "
                    f"profile 3): check backend.ocpp.cert_file/key_file or the certificate from CertificateSigned")
        return f"cannot reach the central system at {url} ({failure.text})"


__all__ = ["Security", "EVENTS", "KEY_NAMES", "QUEUE_MAX", "basic_password", "classify", "valid_key"]
