"""The 2.0.1 names of what the shared parts record under their OCPP 1.6 names (security events).

Security events are recorded in the security log and its delivery queue
under the names of the 1.6 security whitepaper (station/backends/ocpp/
security.py); OCPP 2.0.1 renamed four of them (Part 2, Appendices, "Security
Events"). An event queued under one version is sent under the name of the
version of the connection that delivers it.
"""

from __future__ import annotations

_EVENTS = {
    "FailedToAuthenticationAtCentralSystem": "FailedToAuthenticationAtCsms",
    "CentralSystemFailedToAuthentication": "CsmsFailedToAuthentication",
    "InvalidCentralSystemCertificate": "InvalidCsmsCertificate",
    "InvalidChargePointCertificate": "InvalidChargingStationCertificate",
}


def event_name(kind: str) -> str:
    return _EVENTS.get(kind, kind)
