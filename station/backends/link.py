"""Byte links for MCSP and the evcs-serial dialect: TCP, TLS and serial ports.

Theory of operation
-------------------
The codecs never touch I/O; this module moves bytes. A `Link` offers three
coroutines, `write(data)`, `read(timeout)` and `close()`. `read` returns the
bytes that arrived (at least one), `None` when nothing came within `timeout`
(the station uses that quiet to end a reply whose server sends no end
marker), or `b""` when the peer closed the link (TCP only: a serial line
has no "closed").

Serial ports go through pyserial in a worker thread (pyserial is blocking).
Reads use a short port timeout so that a close never waits long for a
thread stuck in `read`. `serial.serial_for_url` is used, so the port may
also be a pyserial URL (`socket://HOST:PORT`, `rfc2217://...`).

`open_link(url)` picks the transport: `tcp://HOST:PORT`, `tls://HOST:PORT`,
anything else is a serial device path.

`SWITCH` is the station's end of every backend link, for the simulator and
tests (scenario step `backend up = false`, the simulator's key `b`): cut,
the links that `open_link` opened carry nothing, as with the cable pulled at
the station. A TCP or TLS link is reset and cannot be opened again; a serial
line keeps its port open (the adapter is still there) but loses every byte
both ways, and what arrived during the cut is dropped when it is mended.
The OCPP websocket (backends/ocpp/link.py) follows the same switch. Servers open
their ports directly and are not affected.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import ssl
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

POLL_S = 0.05  # serial read slice: bounds how long close() waits for the reader thread


class LinkSwitch:
    """The station's end of the backend links: `set(False)` pulls the cable, `set(True)` plugs it
    back. Called from the event loop; the serial reader threads only read `up`."""

    def __init__(self) -> None:
        self.up = True
        self._watchers: dict[int, Callable[[bool], None]] = {}
        self._keys = itertools.count()

    def set(self, up: bool) -> None:
        if up == self.up:
            return
        self.up = up
        log.warning("backend link %s at the station (simulation)", "mended" if up else "cut")
        for watcher in list(self._watchers.values()):
            watcher(up)

    def check(self, what: str) -> None:
        """Raise ConnectionRefusedError (an OSError) while the link is cut."""
        if not self.up:
            raise ConnectionRefusedError(f"{what}: the link is cut at the station (simulation)")

    def watch(self, watcher: Callable[[bool], None]) -> Callable[[], None]:
        """Call `watcher(up)` on every change; returns the function that stops that."""
        key = next(self._keys)
        self._watchers[key] = watcher

        def stop() -> None:
            self._watchers.pop(key, None)
        return stop


SWITCH = LinkSwitch()


class Link:
    """A bidirectional byte stream. `kind` is "tcp", "tls" or "serial"."""

    kind = "?"
    #: the link can be dropped and opened again to get rid of stale bytes (TCP, TLS)
    reconnects = True

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    async def read(self, timeout: float) -> bytes | None:
        raise NotImplementedError

    async def discard_input(self) -> None:
        """Drop whatever arrived unasked (a late reply on a serial line)."""

    def peer_closed(self) -> bool:
        """The peer has closed the link (seen without reading: nothing unread is left)."""
        return False

    async def close(self) -> None:
        raise NotImplementedError


class StreamLink(Link):
    """TCP or TLS over asyncio streams (also used by the server for each accepted connection)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, kind: str = "tcp") -> None:
        self.reader, self.writer, self.kind = reader, writer, kind
        self._unwatch: Callable[[], None] | None = None

    def follow_switch(self) -> None:
        """The station's link: reset when SWITCH cuts it."""
        self._unwatch = SWITCH.watch(lambda up: None if up else self.abort())

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def peer_closed(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    async def read(self, timeout: float) -> bytes | None:
        try:
            # Cancelling StreamReader.read loses no data: it only returns what it took.
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation of
            # the caller that arrives as the data does.
            async with asyncio.timeout(max(timeout, 0.0)):
                return await self.reader.read(4096)
        except TimeoutError:
            return None

    async def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
        self.writer.close()
        try:
            async with asyncio.timeout(2.0):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ssl.SSLError):
            # A peer that does not read keeps a gracefully closing socket open for ever (asyncio
            # waits to flush the unsent bytes): drop it.
            self.abort()

    def abort(self) -> None:
        """Close at once, discarding unsent bytes (the peer sees a reset)."""
        self.writer.transport.abort()


class SerialLink(Link):
    """A serial port (pyserial) driven from worker threads."""

    kind = "serial"
    reconnects = False

    def __init__(self, port) -> None:
        self.port = port
        self._lock = threading.Lock()  # one reader thread at a time
        self._closing = False
        self._switched = False  # the station's link: SWITCH cuts it
        self._unwatch: Callable[[], None] | None = None

    def follow_switch(self) -> None:
        """The station's link: bytes are lost both ways while SWITCH is cut."""
        self._switched = True
        self._unwatch = SWITCH.watch(self._mended)

    def _mended(self, up: bool) -> None:
        if up and self.port.is_open:
            try:
                self.port.reset_input_buffer()  # what came during the cut never arrived
            except Exception:  # closed meanwhile: nothing to drop
                pass

    def _cut(self) -> bool:
        return self._switched and not SWITCH.up

    @classmethod
    def open(cls, device: str, baudrate: int = 19200) -> SerialLink:
        """Open a device 8N1 without flow control. Raises OSError (serial.SerialException is one)."""
        import serial  # pyserial; imported here so TCP-only stations need not load it

        port = serial.serial_for_url(device, baudrate=baudrate, bytesize=8, parity="N", stopbits=1,
                                     timeout=POLL_S, write_timeout=5.0, exclusive=True)
        return cls(port)

    def _read_blocking(self, timeout: float) -> bytes | None:
        import time

        deadline = time.monotonic() + max(timeout, 0.0)
        with self._lock:
            while True:
                if self._closing or not self.port.is_open:
                    raise OSError("serial port closed")
                try:
                    data = self.port.read(max(1, self.port.in_waiting))
                except (TypeError, AttributeError) as exc:  # closed under our feet by another thread
                    raise OSError(f"serial port closed: {exc}") from None
                if data and not self._cut():
                    return data
                if time.monotonic() >= deadline:
                    return None

    async def read(self, timeout: float) -> bytes | None:
        return await asyncio.to_thread(self._read_blocking, timeout)

    async def write(self, data: bytes) -> None:
        await asyncio.to_thread(self._write_blocking, data)

    def _write_blocking(self, data: bytes) -> None:
        if self._cut():
            return  # into a cut cable: the write succeeds, the bytes are lost
        self.port.write(data)
        self.port.flush()

    async def discard_input(self) -> None:
        await asyncio.to_thread(self._discard)

    def _discard(self) -> None:
        with self._lock:
            if self.port.is_open:
                self.port.reset_input_buffer()

    async def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
        self._closing = True
        try:
            self.port.cancel_read()
        except Exception:  # not every pyserial backend can cancel; the read slice is short anyway
            pass
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self.port.close()


def parse_url(url: str) -> tuple[str, str, int]:
    """("tcp"|"tls", host, port) or ("serial", device, 0). Raises ValueError."""
    if url.startswith(("tcp://", "tls://")):
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ValueError(f"{url!r}: expected {parts.scheme}://HOST:PORT")
        return parts.scheme, parts.hostname, parts.port
    if not url:
        raise ValueError("empty link address")
    return "serial", url, 0


def client_tls_context(ca_file: str | None) -> ssl.SSLContext:
    """TLS 1.2 or newer, server certificate and host name checked. With `ca_file` only that CA
    is trusted (pinned); without it, the system's CAs."""
    # create_default_context loads the system CAs only when no cafile is given, so with a
    # ca_file the context trusts exactly the pinned CA.
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def open_link(url: str, *, baudrate: int = 19200, timeout: float = 5.0,
                    ca_file: str | None = None) -> Link:
    """Connect. Raises OSError (refused, unreachable, no such device), ssl.SSLError, or
    TimeoutError."""
    kind, host, port = parse_url(url)
    link: SerialLink | StreamLink
    if kind == "serial":
        link = await asyncio.to_thread(SerialLink.open, host, baudrate)
    else:
        SWITCH.check(url)
        ctx = client_tls_context(ca_file) if kind == "tls" else None
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host if ctx else None)
        link = StreamLink(reader, writer, kind)
    link.follow_switch()
    return link
