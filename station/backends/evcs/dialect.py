"""The 2018 serial dialect of the deployed mmetering servers: `[backend] kind = "evcs-serial"`.

A Pi station with this backend replaces the original charger controller on
an unchanged mmetering server (`manage.py runevcs` on /dev/ttyUSB1, 19200 8N1).

The conversation (docs/mcsp.md, §14 "History", has a live log of the 2018
device and the server's side)::

    station: Abrechnung auf            billing opens
    station: Tag ID = D6 4F C9 3B      the tag, upper hex bytes separated by spaces
    server:  OK_Lader1!                accepted (or ERROR10/20_Lader1!)
    station: Verstanden                "understood"
    ...charging...
    station: Tag ID = D6 4F C9 3B
    station: total FERTIG              the session ends (server: silence, or ERROR21/30_Lader1!)
    station: LADER 1 lebt              heartbeat, no answer

Every line ends with CRLF. The server reads its own apartment meters at the
start and the end: the messages carry no energy and no time. Consequences
this module lives with:
* a session can only be billed live. A session that started while the
  server was unreachable is opened late if it is still running (the server
  bills from that moment); one that already ended cannot be billed and is
  rejected with that reason (it stays in the journal for the operator);
* success at the end is silence: the END is "delivered" when no ERROR came
  within `reply_timeout_s`. An absent server cannot be told from a content
  one at that moment (a port that cannot be opened can).
* replies name a station number (`OK_Lader<N>!`); lines for other numbers
  are ignored, so several chargers can share one bus.

`LineParser` (no I/O) splits bytes into lines with a length limit;
`LineReader` reads them from a link within a time limit; the `parse_*`
functions read single lines. The 2018 server side is emulated in station/servers/evcs2018.py
on the same pieces.

The heartbeat loop is a critical loop of the station's supervisor: it
beats at least every BEAT_S while it waits for the next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from station import privacy
from station.aio import cancel_and_wait
from station.backends.link import Link, SerialLink
from station.backends.online import OnlineBackend
from station.core.model import AuthResult, AuthStatus, DeliveryResult, MessageKind, OutboxItem, Session
from station.core.ports import StationControl
from station.core.tags import parse_uid
from station.errors import BackendOffline, ProtocolError
from station.tally import Tally

log = logging.getLogger(__name__)

MAX_LINE = 128
BEAT_S = 5.0  # the heartbeat loop reports progress at least this often while it waits
HEARTBEAT_TASK = "evcs-heartbeat"
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


class EvcsSerialBackend(OnlineBackend):
    kind = "evcs-serial"

    def __init__(self, port: str, *, baudrate: int = 19200, station_number: int = 1, reply_timeout_s: float = 3.0,
                 heartbeat_s: float = 90.0, tag_separator: str = " ", tag_prefix: str = "Tag ID = ",
                 language: str = "en", reopen_s: float = 5.0) -> None:
        super().__init__()
        self.port, self.baudrate, self.number = port, baudrate, station_number
        self.reply_timeout_s, self.heartbeat_s = reply_timeout_s, heartbeat_s
        self.tag_separator, self.tag_prefix, self.language = tag_separator, tag_prefix, language
        self.reopen_s = reopen_s
        self.sent: list[str] = []  # every line written, for tests and the terminal view
        self._link: Link | None = None
        self._lines = LineReader("evcs-serial")
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self, station: StationControl) -> None:
        await super().start(station)
        self._spawn_heartbeat()

    def _spawn_heartbeat(self) -> asyncio.Task:
        assert self.station is not None
        self._task = self.station.spawn(self._heartbeat(), HEARTBEAT_TASK, critical=True, deadline_s=self._deadline_s())
        return self._task

    def carriers(self) -> dict[str, Callable[[], asyncio.Task]]:
        """The heartbeat loop only carries messages: the supervisor restarts it if it hangs."""
        return {HEARTBEAT_TASK: self._spawn_heartbeat}

    def _deadline_s(self) -> float:
        """Longest the heartbeat loop may go without a beat: one wait slice, the lock held by a
        session's exchange (write with pyserial's 5 s write timeout, then the reply), then its
        own write, and an open or close of the port."""
        return BEAT_S + 2 * (5.0 + self.reply_timeout_s) + 5.0 + 10.0

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        async with self._lock:
            await self._drop()

    async def _idle(self, seconds: float) -> None:
        """Sleep `seconds`, beating at least every BEAT_S."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while True:
            if self.station is not None:
                self.station.beat(HEARTBEAT_TASK)
            left = end - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, BEAT_S))

    async def _heartbeat(self) -> None:
        """Open the port (online), then 'LADER N lebt' every heartbeat_s, as the original device did."""
        delay = 0.0
        while True:
            await self._idle(delay)
            try:
                if self._link is None:
                    async with self._lock:
                        await self._ensure()
                else:
                    await self.heartbeat()
                delay = self.heartbeat_s
            except BackendOffline as exc:
                log.info("evcs-serial: %s", exc)
                delay = self.reopen_s
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a bug end the heartbeat for good
                log.exception("evcs-serial heartbeat failed")
                delay = self.reopen_s

    async def heartbeat(self) -> None:
        """'LADER N lebt' (the server does not answer it). Raises BackendOffline."""
        async with self._lock:
            await self._write(f"LADER {self.number} lebt")

    # ------------------------------------------------------------------ I/O
    async def _ensure(self) -> Link:
        if self._link is None:
            try:
                self._link = await asyncio.to_thread(SerialLink.open, self.port, self.baudrate)
            except (OSError, ValueError) as exc:
                self._set_online(False)
                raise BackendOffline(f"cannot open {self.port}: {exc}") from exc
            self._lines.parser.clear()
            self._set_online(True)
        return self._link

    async def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            try:
                await link.close()
            except Exception:
                pass
        self._set_online(False)

    async def _write(self, *lines: str) -> None:
        link = await self._ensure()
        try:
            await link.write("".join(f"{line}\r\n" for line in lines).encode("ascii"))
        except OSError as exc:
            await self._drop()
            raise BackendOffline(f"writing to {self.port} failed: {exc}") from exc
        self.sent.extend(lines)

    async def _reply(self, timeout: float) -> ServerReply | None:
        """The next OK/ERROR for our station number within `timeout`, or None."""
        link = await self._ensure()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                line = await self._lines.next(link, end - loop.time())
            except OSError as exc:
                await self._drop()
                raise BackendOffline(f"reading {self.port} failed: {exc}") from exc
            if line is None:
                return None
            reply = parse_server_line(line)
            if reply is not None and reply.station == self.number:
                return reply
            if line.strip():
                log.debug("evcs-serial: ignoring %r", _loggable(line))

    async def _discard(self) -> None:
        link = await self._ensure()
        await link.discard_input()
        self._lines.parser.clear()

    # ------------------------------------------------------------------ sessions
    def _tag_line(self, id_tag: str) -> str:
        return f"{self.tag_prefix}{dialect_tag(id_tag, self.tag_separator)}"

    async def _open(self, id_tag: str) -> ServerReply:
        async with self._lock:
            await self._discard()
            await self._write(OPEN, self._tag_line(id_tag))
            reply = await self._reply(self.reply_timeout_s)
            if reply is None:
                raise BackendOffline(f"no answer to '{OPEN}' within {self.reply_timeout_s} s")
            if reply.ok:
                await self._write(ACK)
            return reply

    async def authorize(self, id_tag: str, session: Session) -> AuthResult:
        reply = await self._open(id_tag)
        if reply.ok:
            return AuthResult(AuthStatus.ACCEPTED, backend_session_id=dialect_tag(id_tag, self.tag_separator))
        text = error_text(reply.code, self.language)
        if self.station is not None:
            self.station.notice(text)
        return AuthResult(AuthStatus.BLOCKED if reply.code == 10 else AuthStatus.INVALID, message=text)

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if item.kind is MessageKind.START:
            if session.backend_session_id:
                return DeliveryResult(backend_session_id=session.backend_session_id)
            if session.state != "active":
                return DeliveryResult(rejected="the 2018 server reads its own meter: a session that ended before it "
                                               "could be told cannot be billed")
            reply = await self._open(session.id_tag)  # still charging: billed from now on
            if reply.ok:
                return DeliveryResult(backend_session_id=dialect_tag(session.id_tag, self.tag_separator))
            return DeliveryResult(rejected=error_text(reply.code))
        if item.kind is MessageKind.STOP:
            if not session.backend_session_id:
                return DeliveryResult(rejected="the server never opened this session")
            async with self._lock:
                await self._discard()
                await self._write(self._tag_line(session.id_tag), DONE)
                answer = await self._reply(self.reply_timeout_s)
            if answer is not None and not answer.ok:  # silence is success in this dialect
                text = error_text(answer.code, self.language)
                if self.station is not None:
                    self.station.notice(text)
                return DeliveryResult(rejected=error_text(answer.code))
            return DeliveryResult(backend_session_id=session.backend_session_id)
        return DeliveryResult()


def create(config: Any, store: Any) -> EvcsSerialBackend:
    e = config.get("backend.evcs-serial")
    return EvcsSerialBackend(e["port"], baudrate=e["baudrate"], station_number=e["station_number"],
                             reply_timeout_s=e["reply_timeout_s"], heartbeat_s=e["heartbeat_s"],
                             tag_separator=e["tag_separator"], tag_prefix=e["tag_prefix"],
                             language=config.station.language)
