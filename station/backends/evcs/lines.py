"""The lines of the 2018 serial dialect, without I/O policy: framing, parsing, the codes.

Every line ends with CRLF (a bare LF is read too). `LineParser` (no I/O)
splits bytes into lines with a length limit; `LineReader` reads them from a
link within a time limit, skipping and counting lines it refuses; the
`parse_*` functions read single lines, as the station (`parse_server_line`)
and the 2018 server (`parse_station_line`) see them. The station's backend
(dialect.py) and the emulated server (station/servers/evcs2018.py) are both
built on these pieces.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from station import privacy
from station.backends.link import Link
from station.core.tags import parse_uid
from station.errors import ProtocolError
from station.tally import Tally

MAX_LINE = 128
OPEN = "Abrechnung auf"
DONE = "total FERTIG"
ACK = "Verstanden"

#: code -> (German, English) as shown on the LCD
ERRORS: dict[int, tuple[str, str]] = {
    10: ("Keine Wohnung fuer diese Station", "No apartment for this station"),
    20: ("Zaehler beim Start nicht lesbar", "Meter unreadable at start"),
    21: ("Zaehler am Ende nicht lesbar", "Meter unreadable at end"),
    30: ("Keine offene Sitzung fuer Tag", "No open session for this tag"),
}

#: the replies that answer each of the station's exchanges (None: OK); any other is a late one
START_REPLIES = frozenset({None, 10})  # to 'Abrechnung auf' + tag
CHECK_REPLIES = frozenset({20})  # after 'Verstanden', once the server has read its meter
END_REPLIES = frozenset({21, 30})  # to tag + 'total FERTIG' (success is silence)

_REPLY = re.compile(r"(OK|ERROR(\d{2}))_Lader(\d{1,2})!")
_ALIVE = re.compile(r"LADER (\d{1,2}) lebt")
_TAG = re.compile(r"Tag ID\s*=\s*(.+)")


class DialectError(ProtocolError):
    """The serial peer sent something the 2018 dialect does not have."""

    def __init__(self, message: str) -> None:
        super().__init__(message, remote=True)


class LineParser:
    """Bytes in, lines out (CRLF or LF, CR stripped). Lines longer than MAX_LINE or with bytes
    outside printable ASCII raise DialectError; the parser then goes on with the next line."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._drop = False  # inside an overlong line: drop up to its LF

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def clear(self) -> None:
        self._buffer.clear()
        self._drop = False

    @property
    def partial(self) -> bool:
        """A line has begun and not ended (or the rest of a too-long one is being dropped)."""
        return bool(self._buffer) or self._drop

    def next_line(self) -> str | None:
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self.max_line + 1:
                    self._buffer.clear()
                    self._drop = True
                    raise DialectError(f"line longer than {self.max_line} bytes")
                return None
            raw = bytes(self._buffer[:end]).rstrip(b"\r")
            del self._buffer[: end + 1]
            if self._drop:
                self._drop = False
                continue
            if len(raw) > self.max_line:
                raise DialectError(f"line longer than {self.max_line} bytes")
            bad = next((i for i, b in enumerate(raw) if not 0x20 <= b <= 0x7E), None)
            if bad is not None:
                # Position and byte only: the line may hold a tag (personal data).
                raise DialectError(f"byte 0x{raw[bad]:02X} at column {bad + 1} is not printable ASCII")
            return raw.decode("ascii")


class LineReader:
    """The next line from a link within a time limit. A line the parser refuses is skipped and
    logged (prefixed with `who`): the first at once, then the count once a minute, so line
    noise or a flood of bytes on the line cannot flood the log."""

    LOG_EVERY_S = 60.0
    GAP_S = 2.0  # silence inside a line after which its start is dropped (a peer sends a line at once)

    def __init__(self, who: str) -> None:
        self.who = who
        self.parser = LineParser()
        self.tally = Tally(who, self.LOG_EVERY_S)
        self._last_data = 0.0

    @property
    def refused(self) -> int:
        """Lines refused since start."""
        return sum(self.tally.total.values())

    async def next(self, link: Link, timeout: float | None) -> str | None:
        """The next line, or None when none came within `timeout` s (None: wait for ever).
        A line already received is returned even when the time is up. Raises OSError."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            try:
                line = self.parser.next_line()
            except DialectError as exc:
                self.tally.note(str(exc), now=loop.time())
                continue
            if line is not None:
                return line
            if self.parser.partial and loop.time() - self._last_data >= self.GAP_S:
                # Without this, the rest of a line that never ended would swallow the peer's
                # next line (e.g. "Abrechnung auf" after a burst of noise).
                self.tally.note(f"unfinished line dropped after {self.GAP_S:g} s of silence", now=loop.time())
                self.parser.clear()
            wait = 1.0 if end is None else end - loop.time()
            if wait <= 0:
                return None
            data = await link.read(min(wait, self.GAP_S) if self.parser.partial else wait)
            if data:
                self._last_data = loop.time()
                self.parser.feed(data)

    async def arrived(self, link: Link, max_reads: int = 64) -> list[str]:
        """The lines that have arrived unasked, without waiting for more; a partial line is
        dropped (the station starts its next exchange clean). Raises OSError."""
        loop = asyncio.get_running_loop()
        for _ in range(max_reads):  # a flood of bytes must not keep the station here
            data = await link.read(0)
            if not data:
                break
            self.parser.feed(data)
        lines = []
        while True:
            try:
                line = self.parser.next_line()
            except DialectError as exc:
                self.tally.note(str(exc), now=loop.time())
                continue
            if line is None:
                break
            lines.append(line)
        self.parser.clear()
        return lines


@dataclass(frozen=True)
class ServerReply:
    ok: bool
    code: int | None  # ERROR code (10, 20, 21, 30)
    station: int


def parse_server_line(line: str) -> ServerReply | None:
    """`OK_Lader1!` / `ERROR10_Lader1!` -> ServerReply; anything else None."""
    m = _REPLY.fullmatch(line.strip())
    if not m:
        return None
    return ServerReply(m.group(2) is None, int(m.group(2)) if m.group(2) else None, int(m.group(3)))


def parse_station_line(line: str) -> tuple[str, Any] | None:
    """A station's line as the server reads it: ("alive", n), ("open", None), ("tag", text),
    ("ack", None), ("done", None); None for anything else. Both `Tag ID = ` and the real
    device's `Tag ID= ` are read."""
    text = line.strip()
    if m := _ALIVE.fullmatch(text):
        return "alive", int(m.group(1))
    if text == OPEN:
        return "open", None
    if text == ACK:
        return "ack", None
    if text == DONE:
        return "done", None
    if m := _TAG.fullmatch(text):
        return "tag", m.group(1).strip()
    return None


def _loggable(line: str) -> str:
    """A line for the log: a `Tag ID` line (another station's, on a shared bus) has its tag masked."""
    m = _TAG.search(line)
    return line[: m.start(1)] + privacy.tag(m.group(1)) if m else line


def dialect_tag(id_tag: str, separator: str = " ") -> str:
    """The tag as the 2018 server stores it: upper hex bytes joined by `separator`
    ("d64fc93b" -> "D6 4F C9 3B"). A tag that is not hex is sent upper-cased as it is."""
    try:
        return separator.join(f"{b:02X}" for b in parse_uid(id_tag))
    except ValueError:
        return id_tag.strip().upper()


def error_text(code: int | None, language: str = "en") -> str:
    de, en = ERRORS.get(code or 0, ("Unbekannter Fehler", "Unknown error"))
    return f"ERROR{code}: {de if language == 'de' else en}"
