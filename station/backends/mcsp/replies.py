"""What the station does with each MCSP error reply: a refusal for the driver, or a try later.

docs/mcsp.md §8 lists the codes; unknown codes follow their class (4xx refuses, 5xx is "not now"),
and a bare ERROR of the 2017 server refuses. At a tap, `auth` is the refusal shown to the driver
(None: the backend counts as unreachable and the offline policy decides); for a queued message,
`retry` says whether it is offered again later or refused for good.
"""

from __future__ import annotations

from dataclasses import dataclass

from station.core.model import AuthStatus
from station.errors import BackendOffline


@dataclass(frozen=True)
class ErrorRule:
    """What the station does with one error code."""

    meaning: str
    auth: AuthStatus | None  # refusal status at authorize; None: BackendOffline (offline policy)
    retry: bool  # deliver: True = BackendOffline (offered again later), False = rejected for good


ERROR_RULES: dict[int, ErrorRule] = {
    400: ErrorRule("Malformed request", AuthStatus.INVALID, False),
    401: ErrorRule("Key is not registered", AuthStatus.INVALID, False),
    403: ErrorRule("Key not allowed at this station", AuthStatus.BLOCKED, False),
    404: ErrorRule("Unknown session", AuthStatus.INVALID, False),
    405: ErrorRule("Action not supported", AuthStatus.INVALID, False),
    407: ErrorRule("Station not authenticated", None, True),
    409: ErrorRule("Session already open", AuthStatus.CONCURRENT_TX, False),
    500: ErrorRule("Server error", None, True),
    503: ErrorRule("Meter not readable", None, True),
}


class StationRefused(BackendOffline):
    """407: the server does not accept this station's Name or Auth secret."""


def _printable(text: str, limit: int = 200) -> str:
    """A header value: printable ASCII only (the codec refuses anything else), bounded."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)[:limit].strip()


def rule_for(code: int | None) -> ErrorRule:
    """The rule for a code; unknown codes follow their class, a bare ERROR (2017 server) refuses."""
    if code in ERROR_RULES:
        return ERROR_RULES[code]
    if code is None:
        return ErrorRule("Refused by the server", AuthStatus.INVALID, False)
    if code >= 500:
        return ErrorRule("Server error", None, True)
    return ErrorRule("Refused by the server", AuthStatus.INVALID, False)
