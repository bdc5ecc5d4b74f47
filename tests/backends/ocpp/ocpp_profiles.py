"""The station's configuration for an OCPP security profile (1: basic auth, 2: TLS, 3: client certificates),
and the central system's TLS side."""

from __future__ import annotations

KEY = "0123456789abcdefXYZ"  # 19 characters: a plain-text AuthorizationKey


def profile_config(cs, profile: int, pki=None, key: str | None = KEY, station: str = "station", ca: str = "cpo-ca"):
    extra = {"backend.ocpp.security_profile": profile}
    if key:
        extra["backend.ocpp.authorization_key"] = key
    if cs.tls_url:
        extra["backend.ocpp.tls_url"] = cs.tls_url
    if pki is not None and profile >= 2:
        extra["backend.ocpp.ca_file"] = pki.path(f"{ca}.pem")
    if pki is not None and profile == 3:
        extra["backend.ocpp.cert_file"] = pki.path(f"{station}.pem")
        extra["backend.ocpp.key_file"] = pki.path(f"{station}.key")
    return extra


def tls(pki, *, client: bool = False, server: str = "server") -> dict:
    """The strict central system's TLS options (profile 2, and 3 with `client`)."""
    return {"cert": pki.path(f"{server}.pem"), "key": pki.path(f"{server}.key"), "ca": pki.path("cpo-ca.pem"),
            "requestCert": client}
