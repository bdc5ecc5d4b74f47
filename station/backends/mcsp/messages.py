"""MCSP/1.0 messages as values: headers, requests, replies, and what makes a request malformed.

No syntax lives here (codec.py parses and writes the wire); this is what a
message *is* and what a server checks before acting on one (docs/mcsp.md).
`codec` re-exports every name, so `codec.ok()` and `codec.START` read as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

PROTOCOL = "MMETERING"
VERSION = "1.0"
SECRET_HEADERS = frozenset({"auth"})  # values never shown in a repr or an error

# Actions of MCSP/1.0. Others parse (a server answers them 405) but `send` of
# an unknown action is allowed too, for forward-compatible tests.
START, END, HEARTBEAT = "START", "END", "HEARTBEAT"
ACTIONS = (START, END, HEARTBEAT)
OK, ERROR = "OK", "ERROR"


def header_name(snake: str) -> str:
    """session_id -> Session-Id (for keyword construction)."""
    return "-".join(part[:1].upper() + part[1:] for part in snake.split("_"))


class Headers:
    """Ordered header lines; names compare case-insensitively, the sender's spelling is kept."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, object]] | Mapping[str, object] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: tuple[tuple[str, str], ...] = tuple((str(n), str(v)) for n, v in pairs)

    @classmethod
    def of(cls, **values: object) -> Headers:
        """Headers from keywords (`session_id=23` -> `Session-Id: 23`); None values are left out."""
        return cls((header_name(k), v) for k, v in values.items() if v is not None)

    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        for n, v in self._items:
            if n.lower() == low:
                return v
        return default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        # The station secret must not reach a log or a traceback through a repr.
        shown = [(n, "<redacted>" if n.lower() in SECRET_HEADERS else v) for n, v in self._items]
        return f"Headers({shown!r})"

    def plus(self, **values: object) -> Headers:
        return Headers(self._items + tuple(Headers.of(**values)))


@dataclass(frozen=True)
class Request:
    """A station's message: START, END or HEARTBEAT (Content-Length is not a header here:
    the codec counts it)."""

    action: str
    headers: Headers = field(default_factory=Headers)
    version: str = VERSION

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


@dataclass(frozen=True)
class Reply:
    """A server's answer: OK or ERROR. `ended_by` tells how its end was found
    ("blank", "next", "eof", "idle"); it is not part of equality."""

    status: str
    headers: Headers = field(default_factory=Headers)
    version: str = VERSION
    ended_by: str = field(default="", compare=False)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def code(self) -> int | None:
        """The numeric Code of an ERROR (None when missing or not a number, as from the 2017 server)."""
        raw = self.headers.get("Code")
        return int(raw) if raw is not None and raw.isdigit() and len(raw) <= 3 else None

    @property
    def message(self) -> str | None:
        return self.headers.get("Message")


# --- convenience constructors ---------------------------------------------------


def request(action: str, **headers: object) -> Request:
    return Request(action, Headers.of(**headers))


def ok(**headers: object) -> Reply:
    return Reply(OK, Headers.of(**headers))


def error(code: int, message: str, **headers: object) -> Reply:
    """An ERROR reply, Message before Code as in the picture."""
    return Reply(ERROR, Headers([("Message", message), ("Code", str(code))]).plus(**headers))


# --- meaning (no syntax): what a server checks before acting ------------------------

_SESSION_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")
_AMPS = re.compile(r"\d{1,3}(\.\d)?")
CURRENT_HEADERS = ("Current-Offered", "Current-Drawn")  # station -> server: amps per phase (docs/mcsp.md 4.5)
CURRENT_LIMIT = "Current-Limit"  # server -> station: the cap, amps per phase; 0 = pause
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_WH_HEADERS = ("Meter-Start", "Meter-Stop", "Energy")
_PHASE_HEADERS = ("Meter-Start-Phases", "Meter-Stop-Phases")


def request_problem(req: Request) -> str | None:
    """Why a syntactically valid request is malformed (-> ERROR 400), or None.

    Unknown actions are not "malformed": the server answers 405.
    """
    h = req.headers
    if not h.get("Name"):
        return "Name is missing"
    if len(h["Name"]) > 64:
        return "Name is longer than 64 characters"
    if req.action in (START, END) and not h.get("Key"):
        return "Key is missing"
    if len(h.get("Key") or "") > 64:
        return "Key is longer than 64 characters"
    if req.action == END and not (h.get("Session-Id") or h.get("Session-Key")):
        return "END needs Session-Id or Session-Key"
    key = h.get("Session-Key")
    if key is not None and not _SESSION_KEY.fullmatch(key):
        return "Session-Key must be 1-64 letters, digits, '-' or '_'"
    sid = h.get("Session-Id")
    if sid is not None and (not sid or " " in sid or len(sid) > 64):
        return "Session-Id must be 1-64 characters without spaces"
    for name in _WH_HEADERS:
        value = h.get(name)
        if value is not None and not (value.isdigit() and len(value) <= 15):
            return f"{name} must be a whole number of Wh"
    for name in _PHASE_HEADERS:
        value = h.get(name)
        if value is not None and not all(p.isdigit() and len(p) <= 15 for p in value.split(",")):
            return f"{name} must be whole Wh numbers separated by commas"
    start, stop, energy = (h.get(n) for n in _WH_HEADERS)
    if start is not None and stop is not None:
        if int(stop) < int(start):
            return "Meter-Stop is below Meter-Start"
        if energy is not None and int(energy) != int(stop) - int(start):
            return "Energy is not Meter-Stop minus Meter-Start"
    time = h.get("Time")
    if time is not None and not _TIME.fullmatch(time):
        return "Time must be UTC ISO 8601 like 2026-11-05T14:03:00Z"
    for name in CURRENT_HEADERS:
        value = h.get(name)
        if value is not None and parse_amps(value) is None:
            return f"{name} must be amps like 16 or 15.5"
    return None


# --- currents (the site limit extension, docs/mcsp.md 4.5) ------------------------------------------


def parse_amps(text: str | None) -> float | None:
    """`16`, `15.5` -> amps; None for anything else (a peer's value we cannot read is no value)."""
    if text is None or not _AMPS.fullmatch(text.strip()):
        return None
    return float(text)


def format_amps(amps: float) -> str:
    """Amps as the headers carry them: at most one decimal, rounded down (never more than meant)."""
    tenths = max(0, min(9999, int(amps * 10 + 1e-6)))
    whole, tenth = divmod(tenths, 10)
    return f"{whole}.{tenth}" if tenth else str(whole)
