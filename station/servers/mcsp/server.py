"""The MCSP/1.0 reference server on its transports: TCP (optionally TLS) and one serial line.

`McspServer` is the protocol logic (service.py) served over asyncio: one
codec `Connection` per accepted socket, or one for a station on a serial
line. Connections are admitted by station/admission.py's policy (docs/mcsp.md §9.1):
a valid request within 10 s of accept, then at least every 15 min; one
address cannot take the table; a station that spoke is never pushed out by
one that did not. The serial transport drops a message left unfinished for
FRAME_GAP_S and answers noise with few 400s.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from station.admission import MALFORMED, NOT_READ, REFUSED_REPEATEDLY, Admission, ConnectionLimits, Slot
from station.aio import cancel_and_wait
from station.backends.link import Link, SerialLink, StreamLink
from station.backends.mcsp import codec
from station.backends.mcsp.codec import CLOSED, NEED_DATA, Connection, Reply, Request, Role
from station.errors import ProtocolError
from station.servers.mcsp.ledger import SessionRecord
from station.servers.mcsp.service import REQUESTS_KEPT, Service, _utc_now
from station.servers.mcsp.tags import TagEntry

log = logging.getLogger(__name__)

FRAME_GAP_S = 2.0  # serial: silence inside a message after which its start is dropped (a station sends at once)
ERROR_REPLY_GAP_S = 1.0  # serial: at most one 400 per this long (the line is shared with the station's replies)
WRITE_S = 10.0  # a reply the peer has not taken (TCP flow control) within this long ends its connection
REFUSALS_BEFORE_VALID = 3  # 400/405/407 replies an unproven connection gets before it is closed
STOP_S = 5.0  # stop(): connection tasks get this long to end after their cancellation


class McspServer(Service):
    """The reference server: the protocol logic on a TCP port or a serial line."""

    def __init__(self, *, tags: Mapping[str, str | TagEntry] | None = None, stations: dict[str, str | None] | None = None,
                 db: str | Path = ":memory:", host: str = "127.0.0.1", port: int = 0, serial: str | None = None,
                 baudrate: int = 19200, ssl_context: ssl.SSLContext | None = None,
                 meter: Callable[[str], float] | None = None, now: Callable[[], str] = _utc_now,
                 out: TextIO | None = None, on_session_end: Callable[[SessionRecord], None] | None = None,
                 limits: ConnectionLimits | None = None, keep_requests: int | None = REQUESTS_KEPT) -> None:
        super().__init__(tags=tags, stations=stations, db=db, meter=meter, now=now, out=out,
                         on_session_end=on_session_end, keep_requests=keep_requests)
        self.host, self._port, self.serial, self.baudrate = host, port, serial, baudrate
        self.ssl_context = ssl_context
        # Against a hostile or broken peer on the building network (the codec bounds lines and
        # messages; station/admission.py explains the connection policy):
        self.admission = Admission(limits)
        self._server: asyncio.Server | None = None
        self._serial_task: asyncio.Task | None = None
        self._serial_link: SerialLink | None = None
        self._clients: dict[Slot, asyncio.Task] = {}
        self._tally_task: asyncio.Task | None = None

    @property
    def port(self) -> int:
        """The TCP port actually bound (port 0 picks a free one)."""
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._port

    @property
    def url(self) -> str:
        return f"{'tls' if self.ssl_context else 'tcp'}://{self.host}:{self.port}"

    async def start(self) -> None:
        if self.serial is not None:
            self._serial_link = await asyncio.to_thread(SerialLink.open, self.serial, self.baudrate)
            self._serial_task = asyncio.create_task(self._serve_serial(self._serial_link), name="mcsp-serial")
            log.info("MCSP server on serial %s at %d baud", self.serial, self.baudrate)
        else:
            # TLS is started per connection in _accept, inside the connection's slot, so a handshake
            # that never comes is bound by the first-request time like any silent connection.
            self._server = await asyncio.start_server(self._accept, self.host, self._port, backlog=128)
            log.info("MCSP server listening on %s", self.url)
        self._tally_task = asyncio.create_task(self._flush_tally(), name="mcsp-server-tally")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        stuck = await cancel_and_wait(*self._clients.values(), self._serial_task, self._tally_task, timeout=STOP_S)
        if stuck:  # a connection task that swallowed its cancellation must not hang the stop
            log.error("MCSP server: %d task(s) did not end within %.0f s of their cancellation: %s", len(stuck),
                      STOP_S, ", ".join(stuck))
        self.tally.flush()
        self.refusal_tally.flush()
        self._tally_task = None
        if self._server is not None:
            try:
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            except TimeoutError:
                pass
            self._server = None
        if self._serial_link is not None:
            await self._serial_link.close()
            self._serial_link = None
        self._serial_task = None

    async def close(self) -> None:
        await self.stop()
        self.ledger.close()

    async def suspend(self) -> None:
        """Take the server off the link (an outage, for `station simulate` and tests); the sessions
        stay. `resume()` serves again on the same port or serial device."""
        self._port = self.port
        await self.stop()

    async def resume(self) -> None:
        if self._server is None and self._serial_task is None:
            await self.start()

    async def _flush_tally(self) -> None:
        while True:
            await asyncio.sleep(self.tally.period_s)
            self.tally.flush()
            self.refusal_tally.flush()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # No await before start_tls below: the peer's first bytes must not reach the plain reader.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if peername else "?"
        verdict = self.admission.admit(peer, loop.time())
        for victim, why in verdict.evicted:
            self.tally.note(why, victim.peer)
            self._clients.pop(victim).cancel()
        slot = verdict.slot
        if slot is None:
            assert verdict.refused is not None
            self.tally.note(verdict.refused, peer)
            writer.transport.abort()  # no goodbye: nothing was asked
            return
        self._clients[slot] = task
        link = StreamLink(reader, writer, "tls" if self.ssl_context else "tcp")
        graceful = False
        try:
            # One deadline for everything the connection does, handshake, reads and writes: a peer
            # that never reads its replies blocks a write, not only a read.
            async with asyncio.timeout_at(self.admission.expires(slot)[0]) as deadline:
                if self.ssl_context is not None:
                    await writer.start_tls(self.ssl_context)
                graceful = await self._serve_tcp(link, slot, deadline)
        except TimeoutError:
            self.tally.note(self.admission.expires(slot)[1], peer)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection from %s ended: %s", peer, exc)
        except asyncio.CancelledError:
            # The server is stopping, or the policy made room: ending the task normally keeps
            # asyncio's stream callback from logging the cancellation as an error.
            pass
        finally:
            if self._clients.get(slot) is task:
                del self._clients[slot]
            self.admission.release(slot)
            if graceful:
                await link.close()  # bounded: aborted if the peer does not take the last bytes
            else:
                # Closed by the policy: no goodbye. A graceful close would keep the socket (and
                # its file descriptor) until a peer that never reads took the unsent replies.
                link.abort()

    async def _serve_tcp(self, link: StreamLink, slot: Slot, deadline: asyncio.Timeout) -> bool:
        """Requests in, replies out, until the peer closes or breaks §2 (400, then closed: the
        stream is out of step); True then (a graceful close). Each valid request moves the
        `deadline` (station/admission.py); a reply the peer does not take within WRITE_S ends it (False)."""
        conn = Connection(Role.SERVER)
        loop = asyncio.get_running_loop()
        refusals = 0
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as exc:
                self.tally.note(MALFORMED, slot.peer)
                log.debug("bad request from %s: %s", slot.peer, exc)
                return await self._reply(link, slot, self._bad_request(exc))
            if event is CLOSED:
                return True
            if event is NEED_DATA:
                data = await link.read(3600.0)  # the deadline, not this, ends a quiet connection
                if data is not None:
                    conn.receive_data(data)
                continue
            assert isinstance(event, Request)
            reply = self.handle(event)
            if reply.ok or reply.code not in (400, 405, 407):
                self.admission.valid_request(slot, loop.time())
                deadline.reschedule(self.admission.expires(slot)[0])
            elif not slot.proven:
                refusals += 1
            if not await self._reply(link, slot, conn.send(reply)):
                return False
            if refusals >= REFUSALS_BEFORE_VALID:
                # A station gets its 407 once and waits (backoff); a peer that goes on asking
                # costs the server work without ever becoming a station.
                self.tally.note(REFUSED_REPEATEDLY, slot.peer)
                return True
            # Pipelined requests are all in the buffer already, so neither the read nor the
            # write above gives way: yield, or one connection holds the loop for all of them.
            await asyncio.sleep(0)

    async def _reply(self, link: StreamLink, slot: Slot, data: bytes) -> bool:
        try:
            async with asyncio.timeout(WRITE_S):
                await link.write(data)
            return True
        except TimeoutError:
            self.tally.note(NOT_READ, slot.peer)
            return False

    async def _serve_serial(self, link: Link) -> None:
        """A serial line never closes. After a broken request the server answers 400 and skips to
        the next start line; a message left unfinished for FRAME_GAP_S is dropped, so a station's
        next request is not read as its continuation; line noise (no start line) and a flood of
        broken requests get at most one 400 per ERROR_REPLY_GAP_S."""
        conn = Connection(Role.SERVER)
        loop = asyncio.get_running_loop()
        last_byte, last_error_reply = 0.0, -ERROR_REPLY_GAP_S
        while True:
            try:
                event = conn.next_event()
            except ProtocolError as exc:
                self.tally.note("serial: malformed request or line noise", self.serial or "serial")
                log.debug("bad request on %s: %s", self.serial, exc)
                conn.resync()
                if loop.time() - last_error_reply >= ERROR_REPLY_GAP_S:
                    last_error_reply = loop.time()
                    await link.write(self._bad_request(exc))
                continue
            if event is CLOSED:
                return
            if event is NEED_DATA:
                if conn.in_message and loop.time() - last_byte >= FRAME_GAP_S:
                    self.tally.note(f"serial: unfinished message dropped after {FRAME_GAP_S:g} s of silence",
                                    self.serial or "serial")
                    conn.discard_partial()
                data = await link.read(FRAME_GAP_S if conn.in_message else 1.0)
                if data:
                    last_byte = loop.time()
                    conn.receive_data(data)
                continue
            assert isinstance(event, Request)
            await link.write(conn.send(self.handle(event)))

    def _bad_request(self, exc: ProtocolError) -> bytes:
        bad = codec.error(400, f"Malformed request: {exc}"[:200])
        return codec.encode_reply(Reply(bad.status, bad.headers.plus(time=self.now())))

