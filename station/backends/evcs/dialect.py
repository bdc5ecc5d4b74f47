"""The 2018 serial dialect of the deployed mmetering servers: `[backend] kind = "evcs-serial"`.

A Pi station with this backend replaces the original charger controller on
an unchanged mmetering server (`manage.py runevcs` on /dev/ttyUSB1, 19200 8N1).

The conversation (docs/mcsp.md §11.3; §14.4 has a live log of the 2018 device)::

    station: Abrechnung auf            billing opens
    station: Tag ID = D6 4F C9 3B      the tag, upper hex bytes separated by spaces
    server:  OK_Lader1!                accepted (or ERROR10_Lader1!)
    station: Verstanden                "understood": the server now reads its meter...
    server:  (ERROR20_Lader1!)         ...and says so only when that failed
    station: Verstanden                (again: the server's answer, had the first been lost)
    ...charging...
    station: Tag ID = D6 4F C9 3B
    station: total FERTIG              the session ends (server: silence, or ERROR21/30_Lader1!)
    station: LADER 1 lebt              heartbeat, no answer (also ends the server's wait, had
                                       'total FERTIG' been lost)

Theory of operation
-------------------
The server handles lines in one thread, and after `Abrechnung auf`, after
its OK and after a `Tag ID` line it waits 3 s for the next line; when that
line does not come its thread ends for good, while the process lives on
(nothing restarts it). So the station never leaves it waiting: after every
line that starts such a wait, its next line follows within ANSWER_WITHIN_S
(2.5 s). After the OK that line is `Verstanden` (sent twice: the second is
ignored by a server that had the first). Elsewhere it is the heartbeat
`LADER N lebt`, which every wait takes and ignores and which starts
nothing: when the start lines get no reply (the OK, or one of the
station's lines, was lost), the heartbeat ends whichever wait the server is
in, a row it may have created keeps no start reading (it bills nothing),
and the station tries once more (`_unwind`). A zero-energy END is not sent
there: after an earlier lost END it would close that stale session of the
same tag now, billing it energy that is not its own.

What the server's replies cannot say, the journal says (ends.py,
station.billing): success at the end is silence, so an END is recorded
as sent, not acknowledged, and flagged as possibly lost when the link is
seen down (a START without any reply, the port failing) before the next
reply. A START delivered late (the session began while the server was
unreachable) makes the server bill from its own reading at that moment:
the journal keeps the station's reading then, so the energy before it is
shown. Replies that arrive after their exchange (ERROR20 after a slow
meter read, ERROR21/30 after the END's wait) are read before the next
exchange and recorded on their session; a late ERROR20 ends a session
that was authorized live.

Replies name a station number (`OK_Lader<N>!`); lines for other numbers
are ignored, so several chargers can share one bus. The heartbeat loop is
a critical loop of the station's supervisor: it beats at least every
BEAT_S while it waits for the next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from station.aio import cancel_and_wait
from station.backends.evcs.ends import EndWatch
from station.backends.evcs.lines import (  # noqa: F401 - re-exported: the dialect's pieces are named from here
    ACK,
    CHECK_REPLIES,
    DONE,
    END_REPLIES,
    ERRORS,
    MAX_LINE,
    OPEN,
    START_REPLIES,
    DialectError,
    LineParser,
    LineReader,
    ServerReply,
    _loggable,
    dialect_tag,
    error_text,
    parse_server_line,
    parse_station_line,
)
from station.backends.link import Link, open_link
from station.backends.online import OnlineBackend
from station.billing import END_SENT_AT
from station.clock import iso
from station.core.model import AuthResult, AuthStatus, DeliveryResult, MessageKind, OutboxItem, Session
from station.core.ports import StationControl
from station.errors import BackendOffline

if TYPE_CHECKING:
    from station.store import Store

log = logging.getLogger(__name__)

BEAT_S = 5.0  # the heartbeat loop reports progress at least this often while it waits
HEARTBEAT_TASK = "evcs-heartbeat"
LATE_CHECK_TASK = "evcs-late-check"
SERVER_WAIT_S = 3.0  # the 2018 server's wait for the station's next line (its thread ends after it)
ANSWER_WITHIN_S = SERVER_WAIT_S - 0.5  # the station's next line comes within this: half a second to spare


class EvcsSerialBackend(OnlineBackend):
    kind = "evcs-serial"
    tells_time = False  # the 2018 messages carry no time either way: nothing waits for the clock
    starts_session_in_authorize = True  # the server's OK to the tag line opens the session

    def __init__(self, port: str, *, baudrate: int = 19200, station_number: int = 1, reply_timeout_s: float = 3.0,
                 meter_read_s: float = 1.5, heartbeat_s: float = 90.0, tag_separator: str = " ",
                 tag_prefix: str = "Tag ID = ", language: str = "en", reopen_s: float = 5.0,
                 store: Store | None = None) -> None:
        super().__init__()
        self.port, self.baudrate, self.number = port, baudrate, station_number
        self.reply_timeout_s, self.heartbeat_s = reply_timeout_s, heartbeat_s
        # Both waits end before the server's own: whatever the config says, the station's next
        # line must reach the server within its 3 s.
        self.answer_s = min(reply_timeout_s, ANSWER_WITHIN_S)
        self.meter_read_s = min(meter_read_s, ANSWER_WITHIN_S)
        self.tag_separator, self.tag_prefix, self.language = tag_separator, tag_prefix, language
        self.reopen_s = reopen_s
        self.sent: list[str] = []  # every line written, for tests and the terminal view
        self.ends = EndWatch(store, self._now)
        self._link: Link | None = None
        self._lines = LineReader("evcs-serial")
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._late_task: asyncio.Task | None = None
        self._check: tuple[int, bool] | None = None  # (session, authorized live) whose ERROR20 may still come
        self._end_session: int | None = None  # the END taken as delivered whose ERROR21/30 may still come

    def _now(self) -> str:
        if self.station is not None:
            return self.station.clock.stamp()
        return iso(datetime.now(UTC))

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
        """Longest the heartbeat loop may go without a beat: one wait slice, the lock held by the
        longest exchange (a START tried twice, each up to three writes with pyserial's 5 s write
        timeout and two waits), then its own write, and an open or close of the port."""
        return BEAT_S + 2 * (3 * 5.0 + self.answer_s + self.meter_read_s) + 5.0 + 10.0

    async def close(self) -> None:
        await cancel_and_wait(self._task)
        await cancel_and_wait(self._late_task)
        self._task = self._late_task = None
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
            await self._drain()
            await self._write(self._alive_line())

    def _alive_line(self) -> str:
        return f"LADER {self.number} lebt"

    # ------------------------------------------------------------------ I/O
    async def _ensure(self) -> Link:
        if self._link is None:
            try:
                self._link = await open_link(self.port, baudrate=self.baudrate)  # a serial device (SWITCH cuts it)
            except (OSError, ValueError) as exc:
                self._seen_down(f"cannot open {self.port}")
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

    def _seen_down(self, why: str) -> None:
        """The server cannot be reached (no reply at all, or the port failed)."""
        self.ends.link_down(why)
        self._set_online(False)

    def _alive(self) -> None:
        """The server answered: its protocol thread runs."""
        self.ends.reply_seen()
        self._set_online(True)

    async def _write(self, *lines: str) -> None:
        link = await self._ensure()
        try:
            await link.write("".join(f"{line}\r\n" for line in lines).encode("ascii"))
        except OSError as exc:
            await self._drop()
            self._seen_down(f"writing to {self.port} failed")
            raise BackendOffline(f"writing to {self.port} failed: {exc}") from exc
        self.sent.extend(lines)

    async def _reply(self, timeout: float, accept: frozenset[int | None]) -> ServerReply | None:
        """The next reply for our station number that answers this exchange (its code, None for
        OK, in `accept`) within `timeout`, or None. Other replies are late ones (_late)."""
        link = await self._ensure()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                line = await self._lines.next(link, end - loop.time())
            except OSError as exc:
                await self._drop()
                self._seen_down(f"reading {self.port} failed")
                raise BackendOffline(f"reading {self.port} failed: {exc}") from exc
            if line is None:
                return None
            reply = self._ours(line)
            if reply is None:
                continue
            if (None if reply.ok else reply.code) in accept:
                return reply
            self._late(reply)

    def _ours(self, line: str) -> ServerReply | None:
        reply = parse_server_line(line)
        if reply is not None and reply.station == self.number:
            self._alive()
            return reply
        if line.strip():
            log.debug("evcs-serial: ignoring %r", _loggable(line))
        return None

    async def _drain(self) -> None:
        """Before an exchange: take what arrived unasked (a late ERROR) and start clean."""
        link = await self._ensure()
        try:
            lines = await self._lines.arrived(link)
        except OSError as exc:
            await self._drop()
            self._seen_down(f"reading {self.port} failed")
            raise BackendOffline(f"reading {self.port} failed: {exc}") from exc
        for line in lines:
            reply = self._ours(line)
            if reply is not None:
                self._late(reply)

    def _late(self, reply: ServerReply) -> None:
        """A reply that came after its exchange was over: record it on its session."""
        text = "OK" if reply.ok else error_text(reply.code)
        if reply.code == 20 and self._check is not None:
            (session_id, live), self._check = self._check, None
            log.warning("evcs-serial: %s came late, for session %d", text, session_id)
            self.ends.refused_late(session_id, f"start: {text}")
            self._notice(reply.code)
            current = self.station.current_session() if self.station is not None else None
            if live and self.station is not None and current is not None and current.id == session_id:
                # Accepted only on the server's OK: the server cannot bill it, so it ends (§11.3).
                self.station.spawn(self.station.stop_session("DeAuthorized"), "evcs-error20-stop")
        elif reply.code in END_REPLIES and self._end_session is not None:
            session_id, self._end_session = self._end_session, None
            log.warning("evcs-serial: %s came late, for the END of session %d", text, session_id)
            self.ends.refused_late(session_id, f"stop: {text}")
            self._notice(reply.code)
        else:
            log.info("evcs-serial: %s came after its exchange; ignored", text)

    def _notice(self, code: int | None) -> None:
        if self.station is not None:
            self.station.notice(error_text(code, self.language))

    # ------------------------------------------------------------------ exchanges
    def _tag_line(self, id_tag: str) -> str:
        return f"{self.tag_prefix}{dialect_tag(id_tag, self.tag_separator)}"

    async def _start(self, id_tag: str, session_id: int, live: bool) -> ServerReply:
        """'Abrechnung auf' + the tag: the OK (answered 'Verstanden', and no ERROR20 while the
        server read its meter) or the ERROR. Raises BackendOffline when no reply came."""
        tag = self._tag_line(id_tag)
        async with self._lock:
            for _ in range(1 if self.ends.down else 2):  # a server seen silent gets one try
                await self._drain()  # a late ERROR20 of the previous START is still taken here
                self._check = None
                await self._write(OPEN, tag)
                reply = await self._reply(self.answer_s, START_REPLIES)
                if reply is None:
                    await self._unwind()
                    continue
                if not reply.ok:
                    return reply
                await self._write(ACK)
                check = await self._reply(self.meter_read_s, CHECK_REPLIES)
                if check is not None:
                    return check
                # Harmless when the first came (the server ignores it outside a wait); had it been
                # lost, this one opens the session, and an ERROR20 may follow (_late).
                await self._write(ACK)
                self._check = (session_id, live)
                return reply
        self._seen_down(f"no answer to '{OPEN}'")
        raise BackendOffline(f"no answer to '{OPEN}' within {self.answer_s:g} s")

    async def _unwind(self) -> None:
        """No reply to the start lines within the server's window: it may wait for the tag line
        (that line was lost), for 'total FERTIG' (it took the tag line for an END: 'Abrechnung
        auf' was lost) or for 'Verstanden' (its OK was lost). The heartbeat line ends each of
        these waits and starts nothing: in the last case the server's new row stays without a
        start reading (it bills nothing), and the next START replaces it."""
        await self._write(self._alive_line())
        log.warning("evcs-serial: no answer to '%s' within %g s; the server's wait ended with '%s'",
                    OPEN, self.answer_s, self._alive_line())

    async def _end(self, session: Session) -> ServerReply | None:
        """Tag + 'total FERTIG': the refusal, or None (silence: sent, not acknowledged). Raises
        BackendOffline only when nothing was sent."""
        tag = self._tag_line(session.id_tag)
        async with self._lock:
            await self._drain()  # a late ERROR21/30 of the previous END is still taken here
            self._end_session = None
            await self._write(tag, DONE)
            self.ends.end_sent(session.id)
            try:
                answer = await self._reply(self.meter_read_s, END_REPLIES)
                await self._write(self._alive_line())  # ends the server's wait, had 'total FERTIG' been lost
            except BackendOffline as exc:  # sent: never send it again (a repeat would get ERROR30)
                log.info("evcs-serial: after the END of session %d: %s", session.id, exc)
                return None
            if answer is None:
                self._end_session = session.id
            return answer

    async def _late_check(self) -> None:
        """After an accepted START: an ERROR20 that the server sends after a slow meter read."""
        async with self._lock:
            if self._link is not None and self._check is not None:
                try:
                    await self._reply(self.meter_read_s, frozenset())
                except BackendOffline as exc:
                    log.info("evcs-serial: %s", exc)

    def _watch_late(self) -> None:
        running = self._late_task is not None and not self._late_task.done()
        if self.station is not None and not running:  # one listening is enough: it takes any late reply
            self._late_task = self.station.spawn(self._late_check(), LATE_CHECK_TASK)

    # ------------------------------------------------------------------ the backend
    async def authorize(self, id_tag: str, session: Session) -> AuthResult:
        reply = await self._start(id_tag, session.id, live=True)
        if reply.ok:
            self._watch_late()
            return AuthResult(AuthStatus.ACCEPTED, backend_session_id=dialect_tag(id_tag, self.tag_separator))
        text = error_text(reply.code, self.language)
        self._notice(reply.code)
        return AuthResult(AuthStatus.BLOCKED if reply.code == 10 else AuthStatus.INVALID, message=text)

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if item.kind is MessageKind.START:
            return await self._deliver_start(session)
        if item.kind is MessageKind.STOP:
            if not session.backend_session_id:
                return DeliveryResult(rejected="the server never opened this session")
            if session.extra.get(END_SENT_AT):  # sent before the journal could confirm it
                return DeliveryResult(backend_session_id=session.backend_session_id)
            answer = await self._end(session)
            if answer is not None:  # silence is success in this dialect
                self._notice(answer.code)
                return DeliveryResult(rejected=error_text(answer.code))
            return DeliveryResult(backend_session_id=session.backend_session_id)
        return DeliveryResult()

    async def _deliver_start(self, session: Session) -> DeliveryResult:
        if session.backend_session_id:
            return DeliveryResult(backend_session_id=session.backend_session_id)
        if session.state != "active":
            return DeliveryResult(rejected="the 2018 server reads its own meter: a session that ended before it "
                                           "could be told cannot be billed")
        reply = await self._start(session.id_tag, session.id, live=False)  # still charging: billed from now on
        if not reply.ok:
            return DeliveryResult(rejected=error_text(reply.code))
        reading = self.station.last_reading() if self.station is not None else None
        self.ends.late_start(session.id, reading.energy_wh if reading is not None else None)
        self._watch_late()
        return DeliveryResult(backend_session_id=dialect_tag(session.id_tag, self.tag_separator))


def create(config: Any, store: Any) -> EvcsSerialBackend:
    e = config.get("backend.evcs-serial")
    return EvcsSerialBackend(e["port"], baudrate=e["baudrate"], station_number=e["station_number"],
                             reply_timeout_s=e["reply_timeout_s"], meter_read_s=e["meter_read_s"],
                             heartbeat_s=e["heartbeat_s"], tag_separator=e["tag_separator"],
                             tag_prefix=e["tag_prefix"], language=config.station.language, store=store)
