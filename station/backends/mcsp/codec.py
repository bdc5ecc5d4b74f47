"""MCSP/1.0 wire format, without I/O (in the manner of h11).

Theory of operation
-------------------
A `Connection` holds the parser state of one end of one link: the station
(role STATION: sends requests, receives replies) or the server (role SERVER:
receives requests, sends replies). Bytes from the link go in with
`receive_data()`; `next_event()` hands out complete messages, or NEED_DATA
when more bytes are needed, or CLOSED after the peer closed the link.
`send(message)` checks a message and returns the bytes to write. No sockets,
no serial ports, no clocks: the glue in client.py and server.py owns those.

The wire (docs/mcsp.md is the normative text)::

    request (station -> server)          reply (server -> station)
    MMETERING/1.0 START\\r\\n               MMETERING/1.0 OK\\r\\n
    Content-Length: 2\\r\\n                 Session-Id: 23\\r\\n
    Name: Tankstelle1\\r\\n                 \\r\\n            <- RECOMMENDED end marker
    Key: 16AC936B1692E73A\\r\\n

* Lines are printable ASCII (0x20-0x7E). We send CRLF, we accept LF.
* Requests: `Content-Length` is the first header and counts the header lines
  that follow it (the picture's rule), so a request needs no end marker.
* Replies carry no length (the picture's replies have none). A reply ends at
  the first of: an empty line; the next status line; the link closing; or,
  for a server that sends neither (the picture, the 2017 server), when the
  station's I/O layer sees the link go quiet and calls `end_of_reply()`.
* Empty lines between messages are ignored, so the end marker is harmless to
  a peer that does not expect it.
* A line cut by the link closing is never used (it may be cut short).
* Limits: 256 bytes per line (without the line ending), 32 header lines,
  4096 bytes per message. A peer that exceeds them is at fault.

Errors: the peer's mistakes raise `RemoteProtocolError`, ours (sending an
invalid message) `LocalProtocolError`; both are `station.errors.ProtocolError`.
After a RemoteProtocolError the connection raises again until `resync()`,
which skips input up to the next start line (the serial line cannot be
"closed" to recover, a TCP server simply closes instead).
"""

from __future__ import annotations

import re
from enum import Enum

from station.backends.mcsp.messages import (  # noqa: F401 - re-exported: codec.ok(), codec.START, ...
    ACTIONS,
    END,
    ERROR,
    HEARTBEAT,
    OK,
    PROTOCOL,
    SECRET_HEADERS,
    START,
    VERSION,
    Headers,
    Reply,
    Request,
    error,
    header_name,
    ok,
    request,
    request_problem,
)
from station.errors import ProtocolError

MAX_LINE = 256  # bytes per line, line ending not counted
MAX_HEADERS = 32  # header lines per message (Content-Length not counted)
MAX_MESSAGE = 4096  # bytes per message, line endings counted
MAX_NAME = 64  # bytes per header name


_START_LINE = re.compile(r"MMETERING/(\d{1,3})\.(\d{1,3}) ([A-Z][A-Z0-9_-]{0,31})")
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
_PRINTABLE = re.compile(rb"[\x20-\x7e]*")


class RemoteProtocolError(ProtocolError):
    """The peer sent something MCSP/1.0 does not allow."""

    def __init__(self, message: str) -> None:
        super().__init__(message, remote=True)


class LocalProtocolError(ProtocolError):
    """We were about to send something MCSP/1.0 does not allow (a bug on our side)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, remote=False)


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA = _Sentinel("NEED_DATA")
CLOSED = _Sentinel("CLOSED")


class Role(str, Enum):
    STATION = "station"  # sends requests, receives replies
    SERVER = "server"  # receives requests, sends replies




# --- the connection --------------------------------------------------------------


class _State(Enum):
    IDLE = "idle"  # between messages
    LENGTH = "length"  # request: start line read, Content-Length next
    HEADERS = "headers"  # inside a message's header lines
    ERROR = "error"  # the peer broke the protocol; resync() to go on
    CLOSED = "closed"


class Connection:
    """Parser and serializer for one end of one MCSP link."""

    def __init__(
        self,
        role: Role,
        *,
        max_line: int = MAX_LINE,
        max_headers: int = MAX_HEADERS,
        max_message: int = MAX_MESSAGE,
    ) -> None:
        self.role = Role(role)
        self.max_line = max_line
        self.max_headers = max_headers
        self.max_message = max_message
        self._buffer = bytearray()
        self._eof = False
        self._state = _State.IDLE
        self._skipping = False  # after resync(): drop lines until a start line
        self._overlong = False  # the buffer starts with a line that was too long
        self._drop_partial = False  # drop input up to the next LF (rest of a too-long line)
        self._start: tuple[str, str] | None = None  # (version, action or status)
        self._headers: list[tuple[str, str]] = []
        self._remaining = 0  # request header lines still expected
        self._size = 0  # bytes of the current message so far
        self._error: RemoteProtocolError | None = None
        self.outstanding: Request | None = None  # STATION: sent, reply not yet received
        self.unanswered = 0  # SERVER: requests received and not yet answered

    # -- receiving ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the link; b"" means the peer closed it."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data received after the end of the stream")
        self._buffer += data

    @property
    def in_message(self) -> bool:
        """A message has begun and is not complete, or a partial line is buffered, or the rest of
        a too-long line is still being dropped."""
        return self._state in (_State.LENGTH, _State.HEADERS) or bool(self._buffer) or self._drop_partial

    @property
    def partial_line(self) -> bool:
        """Bytes of an unfinished line are buffered."""
        return bool(self._buffer)

    @property
    def pending_reply(self) -> Reply | None:
        """STATION: the reply read so far (status line and complete header lines), if one has begun."""
        if self.role is Role.STATION and self._state is _State.HEADERS and self._start is not None:
            return Reply(self._start[1], Headers(self._headers), self._start[0])
        return None

    def next_event(self) -> Request | Reply | _Sentinel:
        """The next complete message, NEED_DATA, or CLOSED. Raises RemoteProtocolError."""
        if self._state is _State.ERROR:
            assert self._error is not None
            raise self._error
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._state = _State.ERROR
            self._error = exc
            raise

    def end_of_reply(self) -> Reply | None:
        """STATION: the link went quiet after a reply's status line (a server that sends no
        end marker): complete that reply. Returns None when no reply is waiting to be completed
        or a partial line is still buffered."""
        if self.pending_reply is None or self._buffer:
            return None
        return self._finish_reply("idle")

    def resync(self) -> None:
        """After a RemoteProtocolError: drop the broken message and skip input up to the next
        start line."""
        self._reset_message()
        self._error = None
        if self._overlong:
            self._overlong = False
            self._buffer.clear()
            self._drop_partial = True
        self._state = _State.CLOSED if self._eof and not self._buffer else _State.IDLE
        self._skipping = True

    def discard_partial(self) -> None:
        """Drop a message or line left unfinished (a serial peer fell silent in the middle) and
        skip input up to the next start line, as after resync()."""
        self._buffer.clear()
        self._overlong = self._drop_partial = False
        self.resync()

    def abandon(self) -> None:
        """STATION: give up waiting for the outstanding reply (timeout). Buffered input is
        dropped; a late reply that still arrives is handed out like any other, so the caller
        must check it (Session-Key echo) before trusting it."""
        self.outstanding = None
        self._buffer.clear()
        self._reset_message()
        if self._state is not _State.CLOSED:
            self._state = _State.IDLE

    def _reset_message(self) -> None:
        self._start = None
        self._headers = []
        self._remaining = 0
        self._size = 0

    def _next_event(self) -> Request | Reply | _Sentinel:
        while True:
            if self._state is _State.CLOSED:
                return CLOSED
            line = self._next_line()
            if line is None:
                if self._eof:
                    return self._at_eof()
                return NEED_DATA
            event = self._handle_line(line)
            if event is not None:
                return event

    def _next_line(self) -> str | None:
        """One line without its ending, or None if none is complete yet."""
        end = self._buffer.find(b"\n")
        if self._drop_partial:
            if end < 0:
                self._buffer.clear()
                return None
            del self._buffer[: end + 1]
            self._drop_partial = False
            end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > self.max_line + 1:  # +1: a CR may still come before the LF
                self._overlong = True
                raise RemoteProtocolError(f"line longer than {self.max_line} bytes")
            if self._eof and self._buffer:
                # The link closed in the middle of a line: it may be cut short ("Session-Id: 2" of
                # "Session-Id: 23"), so it is never used. A reply keeps its complete lines only.
                self._buffer.clear()
                if self.role is Role.SERVER or self._state is not _State.HEADERS:
                    raise RemoteProtocolError("the link closed in the middle of a line")
            return None
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return self._check_line(raw, end + 1)

    def _check_line(self, raw: bytes, wire_size: int) -> str:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.max_line:
            raise RemoteProtocolError(f"line longer than {self.max_line} bytes")
        if not _PRINTABLE.fullmatch(raw):
            bad = next(b for b in raw if not 0x20 <= b <= 0x7E)
            raise RemoteProtocolError(f"byte 0x{bad:02X} is not printable ASCII")
        if self._state is not _State.IDLE or raw:
            self._size += wire_size
            if self._size > self.max_message:
                raise RemoteProtocolError(f"message longer than {self.max_message} bytes")
        return raw.decode("ascii")

    def _handle_line(self, line: str) -> Request | Reply | None:
        if self._state is _State.IDLE:
            if not line:
                return None  # empty lines between messages are allowed
            if self._skipping and not _START_LINE.fullmatch(line):
                self._size = 0
                return None
            self._skipping = False
            self._parse_start(line)
            if self.role is Role.SERVER:
                self._state = _State.LENGTH
                return None
            self._state = _State.HEADERS
            return None
        if self._state is _State.LENGTH:
            name, value = self._parse_header(line)
            if name.lower() != "content-length":
                raise RemoteProtocolError(f"expected Content-Length as the first header, got {name!r}")
            if not value.isdigit() or len(value) > 3:
                raise RemoteProtocolError(f"Content-Length must be a number of header lines, got {value!r}")
            self._remaining = int(value)
            if self._remaining > self.max_headers:
                raise RemoteProtocolError(f"Content-Length {self._remaining} exceeds {self.max_headers} header lines")
            self._state = _State.HEADERS
            return self._finish_request() if self._remaining == 0 else None
        # HEADERS
        if self.role is Role.SERVER:
            if not line:
                raise RemoteProtocolError(f"empty line where {self._remaining} more header line(s) were announced")
            self._add_header(line)
            self._remaining -= 1
            return self._finish_request() if self._remaining == 0 else None
        if not line:
            return self._finish_reply("blank")
        if line.startswith(PROTOCOL + "/"):
            # The next status line ends this reply (a server without end markers, replying to a
            # request we no longer wait for). Parse it now and keep it as the next message.
            reply = self._finish_reply("next")
            self._parse_start(line)
            self._size = len(line) + 2
            self._state = _State.HEADERS
            return reply
        self._add_header(line)
        return None

    def _parse_start(self, line: str) -> None:
        match = _START_LINE.fullmatch(line)
        if not match:
            if line.startswith(PROTOCOL + "/"):
                raise RemoteProtocolError(f"malformed start line {line[:60]!r}")
            raise RemoteProtocolError(f"expected 'MMETERING/1.0 ...', got {line[:60]!r}")
        major, minor, word = match.groups()
        if major != "1":
            raise RemoteProtocolError(f"unsupported version MMETERING/{major}.{minor}")
        if self.role is Role.STATION and word not in (OK, ERROR):
            raise RemoteProtocolError(f"unknown reply status {word!r} (OK or ERROR)")
        self._start = (f"{major}.{minor}", word)
        self._headers = []

    def _parse_header(self, line: str) -> tuple[str, str]:
        name, colon, value = line.partition(":")
        if not colon:
            raise RemoteProtocolError(f"header line without ':': {line[:60]!r}")
        if not _HEADER_NAME.fullmatch(name) or len(name) > MAX_NAME:
            raise RemoteProtocolError(f"invalid header name {name[:60]!r}")
        return name, value.strip(" ")

    def _add_header(self, line: str) -> None:
        name, value = self._parse_header(line)
        low = name.lower()
        if low == "content-length" and self.role is Role.SERVER:
            raise RemoteProtocolError("Content-Length given twice")
        if any(n.lower() == low for n, _ in self._headers):
            raise RemoteProtocolError(f"header {name!r} given twice")
        if len(self._headers) >= self.max_headers:
            raise RemoteProtocolError(f"more than {self.max_headers} header lines")
        self._headers.append((name, value))

    def _finish_request(self) -> Request:
        assert self._start is not None
        version, action = self._start
        message = Request(action, Headers(self._headers), version)
        self._reset_message()
        self._state = _State.IDLE
        self.unanswered += 1
        return message

    def _finish_reply(self, ended_by: str) -> Reply:
        assert self._start is not None
        version, status = self._start
        message = Reply(status, Headers(self._headers), version, ended_by=ended_by)
        self._reset_message()
        self._state = _State.IDLE
        self.outstanding = None
        return message

    def _at_eof(self) -> Request | Reply | _Sentinel:
        if self._state is _State.HEADERS and self.role is Role.STATION:
            reply = self._finish_reply("eof")
            self._state = _State.CLOSED
            return reply
        if self._state in (_State.LENGTH, _State.HEADERS):
            raise RemoteProtocolError("the link closed in the middle of a request")
        self._state = _State.CLOSED
        return CLOSED

    # -- sending --------------------------------------------------------------

    def send(self, message: Request | Reply) -> bytes:
        """The bytes for `message`. Raises LocalProtocolError if it breaks MCSP/1.0 or does not
        fit this role's turn."""
        if self.role is Role.STATION:
            if not isinstance(message, Request):
                raise LocalProtocolError("a station sends requests, not replies")
            if self.outstanding is not None:
                raise LocalProtocolError(f"{self.outstanding.action} still waits for its reply (one request at a time)")
            data = encode_request(message, self)
            self.outstanding = message
            return data
        if not isinstance(message, Reply):
            raise LocalProtocolError("a server sends replies, not requests")
        if self.unanswered <= 0:
            raise LocalProtocolError("no request is waiting for a reply")
        data = encode_reply(message, self)
        self.unanswered -= 1
        return data


def _limits(conn: Connection | None) -> tuple[int, int, int]:
    if conn is None:
        return MAX_LINE, MAX_HEADERS, MAX_MESSAGE
    return conn.max_line, conn.max_headers, conn.max_message


def _check_out_line(line: str, max_line: int) -> bytes:
    raw = line.encode("ascii", errors="replace") if line.isascii() else None
    if raw is None or not _PRINTABLE.fullmatch(raw):
        raise LocalProtocolError(f"not printable ASCII: {line[:60]!r}")
    if len(raw) > max_line:
        raise LocalProtocolError(f"line longer than {max_line} bytes: {line[:60]!r}...")
    return raw + b"\r\n"


def _encode_headers(headers: Headers, max_line: int, max_headers: int) -> list[bytes]:
    if len(headers) > max_headers:
        raise LocalProtocolError(f"{len(headers)} header lines exceed the limit of {max_headers}")
    seen: set[str] = set()
    lines = []
    for name, value in headers:
        if not _HEADER_NAME.fullmatch(name) or len(name) > MAX_NAME:
            raise LocalProtocolError(f"invalid header name {name!r}")
        if name.lower() in seen:
            raise LocalProtocolError(f"header {name!r} given twice")
        if name.lower() == "content-length":
            raise LocalProtocolError("Content-Length is computed by the codec")
        if value != value.strip(" "):
            raise LocalProtocolError(f"header {name!r}: value has leading or trailing spaces")
        seen.add(name.lower())
        try:
            lines.append(_check_out_line(f"{name}: {value}", max_line))
        except LocalProtocolError:
            # Name the header, never its value: it may be the station secret or an id tag.
            raise LocalProtocolError(f"header {name!r}: the value is not printable ASCII or makes the line "
                                     f"longer than {max_line} bytes") from None
    return lines


def encode_request(message: Request, conn: Connection | None = None) -> bytes:
    max_line, max_headers, max_message = _limits(conn)
    if not _START_LINE.fullmatch(f"{PROTOCOL}/{message.version} {message.action}") or not message.version.startswith("1."):
        raise LocalProtocolError(f"invalid request start {message.version!r} {message.action!r}")
    lines = [_check_out_line(f"{PROTOCOL}/{message.version} {message.action}", max_line)]
    headers = _encode_headers(message.headers, max_line, max_headers)
    lines.append(_check_out_line(f"Content-Length: {len(headers)}", max_line))
    data = b"".join(lines + headers)
    if len(data) > max_message:
        raise LocalProtocolError(f"message of {len(data)} bytes exceeds {max_message}")
    return data


def encode_reply(message: Reply, conn: Connection | None = None, *, end_marker: bool = True) -> bytes:
    """A reply's bytes; `end_marker` adds the RECOMMENDED empty line (False gives the picture's
    bare form, for tests that play a picture-only server)."""
    max_line, max_headers, max_message = _limits(conn)
    if message.status not in (OK, ERROR) or not message.version.startswith("1."):
        raise LocalProtocolError(f"invalid reply status {message.version!r} {message.status!r}")
    lines = [_check_out_line(f"{PROTOCOL}/{message.version} {message.status}", max_line)]
    lines += _encode_headers(message.headers, max_line, max_headers)
    if end_marker:
        lines.append(b"\r\n")
    data = b"".join(lines)
    if len(data) > max_message:
        raise LocalProtocolError(f"message of {len(data)} bytes exceeds {max_message}")
    return data
