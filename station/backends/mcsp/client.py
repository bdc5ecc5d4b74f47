"""The station side of MCSP/1.0: `[backend] kind = "mcsp"`.

Theory of operation
-------------------
One link (TCP, TLS or a serial line, see link.py) carries one request at a
time: an asyncio lock serializes authorize, deliver and the heartbeat. Each
exchange writes a request from the codec and reads until the codec hands
out the reply. A reply ends at its empty line; from a server that sends no
end marker (the picture, the 2017 server) it ends when the link stays
quiet for SETTLE_S after a complete line, but only once it holds what the
request needs (an OK to START needs its Session-Id).

What happens to each answer (docs/mcsp.md, "Error codes", is normative):

    reply            authorize (driver waiting)          deliver (outbox)
    OK               Accepted, Session-Id kept           confirmed
    401 403 409      refused, LCD shows Message          rejected for good
    other 4xx, bare  refused, LCD shows Message          rejected for good
    407, 5xx         BackendOffline (offline policy)     BackendOffline: retried later
    no reply         BackendOffline                      BackendOffline: retried later

Never billing twice: every START and END carries the station's session key
(`Session-Key`), and an MCSP/1.0 server treats a repeat of a known key as
the same session. So a request whose reply was lost is simply sent again,
on the same link or after reconnecting. A reply that echoes a different
Session-Key is a late answer to an earlier request (possible on a serial
line after a timeout) and is skipped.

A START sent by `authorize` opens the server's session at once; the core
then queues no START for that session. If the core abandons such a session
before charging (no plug within the connection timeout), the server would
keep it open: the link keeper closes those with an END of zero energy.

Sharing the building's supply (docs/mcsp.md 4.5, sitelimit.py): the
station's currents (`report_current`, which the core calls when they change)
go on every request; the server's cap on its replies is kept in `site.cap_a`
and handed to the core as its current limit (`set_current_limit`). While a server shares and a session
runs, heartbeats come every SHARED_HEARTBEAT_S (a station learns its cap only
in a reply), and at once when the offered current changes.

The background task (`_keep_link`) connects, sends HEARTBEAT every
`heartbeat_s`, sets the station clock from the reply's `Time`, and after a
failure reconnects with exponential backoff (station.backoff). It is a
critical loop of the station's supervisor: it reports progress (`beat`) at
least every BEAT_S while it waits, and its deadline covers the longest
exchange it can be held up by (`_deadline_s`), so a keeper that hangs stops
the watchdog instead of leaving the station silently offline.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any

from station import privacy
from station.aio import cancel_and_wait
from station.backends.link import Link, open_link, parse_url
from station.backends.mcsp import codec
from station.backends.mcsp.codec import CLOSED, Connection, Reply, Request, Role
from station.backends.mcsp.replies import ERROR_RULES, StationRefused, _printable, rule_for  # noqa: F401 - re-exported
from station.backends.mcsp.sitelimit import SHARED_HEARTBEAT_S, SiteLimit
from station.backends.online import OnlineBackend
from station.backoff import Backoff
from station.clock import iso
from station.core.model import AuthResult, AuthStatus, DeliveryResult, MessageKind, OutboxItem, Session, StatusReport
from station.core.ports import StationControl
from station.errors import BackendOffline, ProtocolError

log = logging.getLogger(__name__)

SETTLE_S = 0.3  # quiet after a complete line that ends a reply without end marker
BEAT_S = 5.0  # the link keeper reports progress at least this often while it waits
LINK_TASK = "mcsp-link"
OPENED_KEY = "mcsp.opened"  # store setting: session key -> Session-Id opened by authorize
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")


def _mask(tag: str) -> str:
    return privacy.tag(tag)  # id tags are personal data (station.privacy)


def _phases(values: tuple[int, ...]) -> str | None:
    return ",".join(str(int(v)) for v in values) if values else None


def _iso_or_none(stamp: str | None) -> str | None:
    """Monotonic stamps from an earlier boot cannot be given a date: leave Time out then."""
    return stamp if stamp and _ISO.fullmatch(stamp) else None


class McspBackend(OnlineBackend):
    kind = "mcsp"
    starts_session_in_authorize = True  # authorize is START: its OK carries the Session-Id

    def __init__(self, url: str, name: str, *, store: Any = None, baudrate: int = 19200, timeout_s: float = 5.0,
                 heartbeat_s: float = 60.0, ca_file: str | None = None, secret: str | None = None,
                 extensions: bool = True, settle_s: float = SETTLE_S, backoff: Backoff | None = None) -> None:
        super().__init__()
        parse_url(url)  # fail early on a malformed URL
        self.url, self.name = url, name
        self.store = store
        self.baudrate, self.timeout_s, self.heartbeat_s = baudrate, timeout_s, heartbeat_s
        self.ca_file, self.secret = ca_file, secret
        self.extensions = extensions
        self.settle_s = settle_s
        self.backoff = backoff or Backoff()
        self.heartbeats = extensions  # switched off if the server does not know HEARTBEAT
        self.tells_time = self.heartbeats  # its replies to HEARTBEAT carry the time
        self.last_round_trip_s = 0.0  # of the latest exchange: bounds when the server read its clock
        self.exchanges = 0  # completed request/reply pairs (tests, bench)
        self.last_reply: Reply | None = None
        self.problem: str | None = None  # what keeps the link down, as last logged
        self._link: Link | None = None
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._status_task: asyncio.Task | None = None
        self._status: str | None = None
        self._error: tuple[str, str] | None = None  # (Error, Error-Info) of the last status, if faulted
        self._opened: dict[str, str] = dict(store.get_json(OPENED_KEY, {}) or {}) if store is not None else {}
        self.site = SiteLimit()  # the station's currents out (report_current), the server's cap in
    # ------------------------------------------------------------------ lifecycle
    async def start(self, station: StationControl) -> None:
        await super().start(station)
        self.site.on_cap = station.set_current_limit  # the server's cap is the station's MCSP limit in amps
        self._spawn_keeper()

    def _spawn_keeper(self) -> asyncio.Task:
        assert self.station is not None
        self._task = self.station.spawn(self._keep_link(), LINK_TASK, critical=True, deadline_s=self._deadline_s())
        return self._task

    def carriers(self) -> dict[str, Callable[[], asyncio.Task]]:
        """The link keeper only carries messages: the supervisor restarts it if it hangs."""
        return {LINK_TASK: self._spawn_keeper}

    def _deadline_s(self) -> float:
        """Longest the link keeper may go without a beat: one wait slice, plus a HEARTBEAT that
        waits for the lock behind another exchange. An exchange is at most two tries of connect
        (timeout_s), write (a serial port's 5 s write timeout), reply (timeout_s) and close (2 s)."""
        exchange = 2 * (2 * self.timeout_s + 7.0)
        return BEAT_S + 2 * exchange + 10.0

    async def close(self) -> None:
        await cancel_and_wait(self._task, self._status_task)
        self._task = self._status_task = None
        async with self._lock:
            await self._drop_link("closing", force=True)
        self._set_online(False)

    def _beat(self) -> None:
        if self.station is not None:
            self.station.beat(LINK_TASK)

    async def _keep_link(self) -> None:
        while True:
            self._beat()
            try:
                await self._ping()
                self.backoff.reset()
                self._report(None)
                await self._close_abandoned()
                delay = self._heartbeat_delay()
            except BackendOffline as exc:
                delay = self.backoff.next()
                self._report(exc, delay)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or a journal error must not end the link keeping for good
                delay = self.backoff.next()
                log.exception("MCSP link keeper failed; next try in %.1f s", delay)
            self._wake.clear()
            await self._idle(delay)

    async def _idle(self, seconds: float) -> None:
        """Wait `seconds` or until woken, beating at least every BEAT_S."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            self._beat()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives in the same loop pass as the wake-up, and close() would hang.
                async with asyncio.timeout(min(left, BEAT_S)):
                    await self._wake.wait()
                return
            except TimeoutError:
                pass

    def _report(self, exc: BackendOffline | None, delay: float = 0.0) -> None:
        """One clear line per problem: logged when it first appears (ERROR for a TLS or
        credentials problem, which will not go away by itself; WARNING for an unreachable
        server), at DEBUG while it repeats, and an INFO line when the link works again."""
        if exc is None:
            if self.problem is not None:
                log.info("MCSP link to %s works again", self.url)
            self.problem = None
            return
        text, level = self._describe(exc)
        if text != self.problem:
            log.log(level, "%s; retrying with backoff (next in %.1f s, at most %g s apart)", text, delay,
                    self.backoff.cap)
        else:
            log.debug("%s; next try in %.1f s", text, delay)
        self.problem = text

    def _describe(self, exc: BackendOffline) -> tuple[str, int]:
        """What went wrong, for the installer (never containing the secret)."""
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            trust = f"the pinned CA {self.ca_file}" if self.ca_file else "a CA of the system store"
            return (f"MCSP TLS: the server certificate of {self.url} was refused ({cause.verify_message or cause.reason}); "
                    f"it must be signed by {trust} and name that host", logging.ERROR)
        if isinstance(cause, ssl.SSLError):
            return f"MCSP TLS: handshake with {self.url} failed ({cause.reason or cause})", logging.ERROR
        if isinstance(exc, StationRefused):
            return (f"MCSP: {self.url} refuses this station ({exc}): check station.name and backend.mcsp.secret "
                    f"against the server's station list", logging.ERROR)
        return f"MCSP server {self.url} unreachable ({exc})", logging.WARNING

    async def _ping(self) -> None:
        """Prove the link: HEARTBEAT (sets the clock), or just connect when heartbeats are off."""
        if not self.heartbeats:
            async with self._lock:
                await self._ensure_link()
            self._set_online(True)
            return
        reply = await self._exchange(self._heartbeat_request())
        if reply.ok:
            self._take_time(reply, self.last_round_trip_s)
            return
        code = reply.code
        if code == 405 or code is None:
            log.warning("the MCSP server does not know HEARTBEAT (%s); heartbeats off", code or "bare ERROR")
            self.heartbeats = self.tells_time = False  # no time from this server: nothing waits for it
            return
        rule = rule_for(code)
        text = f"{code} {reply.message or rule.meaning}"
        if code == 407:
            self._notice(text)
            self._set_online(False)
            raise StationRefused(text)
        log.warning("HEARTBEAT answered %s", text)

    def _take_time(self, reply: Reply, round_trip_s: float) -> None:
        """The server's `Time` (one-second resolution without a fraction), read by it while the
        request was under way: the clock corrects itself only if its time does not fit."""
        time = reply.get("Time")
        if time and _ISO.fullmatch(time) and self.station is not None:
            self.station.set_clock(time, round_trip_s=round_trip_s)

    def _notice(self, text: str) -> None:
        if self.station is not None:
            self.station.notice(f"MCSP: {text}")

    # ------------------------------------------------------------------ requests
    def _headers(self, pairs: list[tuple[str, Any]]) -> codec.Headers:
        if self.extensions:
            pairs += self.site.headers()
        if self.secret:
            pairs.append(("Auth", self.secret))
        return codec.Headers((n, v) for n, v in pairs if v is not None)

    def report_current(self, offered_a: float, drawn_a: float) -> None:
        """What the pilot offers and the car draws now (amps per phase), for a server that shares a
        site limit; a change that matters is sent at once, on a HEARTBEAT."""
        if self.site.report(offered_a, drawn_a) and self.heartbeats and self.online:
            self._wake.set()  # the link keeper sends its heartbeat now

    def _heartbeat_delay(self) -> float:
        if self.site.cap_a is None or self.station is None or self.station.current_session() is None:
            return self.heartbeat_s
        return min(self.heartbeat_s, SHARED_HEARTBEAT_S)

    def _start_request(self, id_tag: str, session: Session, *, live: bool) -> Request:
        pairs: list[tuple[str, Any]] = [("Name", self.name), ("Key", id_tag)]
        if self.extensions:
            pairs += [
                ("Session-Key", session.key),
                ("Meter-Start", session.meter_start_wh),
                ("Meter-Start-Phases", _phases(session.start_phase_wh)),
                # Sent live, the server's reception time is the start; late, the journal's.
                ("Time", None if live else _iso_or_none(session.started_at)),
                ("Offline", "yes" if session.authorized_offline and not live else None),
            ]
        return Request(codec.START, self._headers(pairs))

    def _end_request(self, session: Session, session_id: str | None, *, reason: str | None = None) -> Request:
        stop = session.meter_stop_wh if session.meter_stop_wh is not None else session.meter_start_wh
        pairs: list[tuple[str, Any]] = [("Name", self.name), ("Session-Id", session_id), ("Key", session.id_tag)]
        if self.extensions:
            start = session.meter_start_wh
            energy = stop - start if start is not None and stop is not None and stop >= start else None
            pairs += [
                ("Session-Key", session.key),
                ("Meter-Start", start),
                ("Meter-Stop", stop),
                ("Energy", energy),
                ("Start-Time", _iso_or_none(session.started_at)),
                ("Time", _iso_or_none(session.stopped_at)),
                ("Stop-Reason", reason or session.stop_reason),
                ("Meter-Start-Phases", _phases(session.start_phase_wh)),
                ("Meter-Stop-Phases", _phases(session.stop_phase_wh)),
                ("Meter-Estimated", "yes" if session.meter_stop_estimated else None),
            ]
        return Request(codec.END, self._headers(pairs))

    def _heartbeat_request(self) -> Request:
        current = self.station.clock.now() if self.station is not None else None
        now = iso(current) if current is not None else None  # None until the clock is trusted
        pairs: list[tuple[str, Any]] = [("Name", self.name), ("Time", now), ("Status", self._status)]
        if self._error is not None:  # the fault behind the status (docs/mcsp.md §4.3)
            pairs += [("Error", self._error[0]), ("Error-Info", self._error[1])]
        return Request(codec.HEARTBEAT, self._headers(pairs))

    # ------------------------------------------------------------------ Backend interface
    async def authorize(self, id_tag: str, session: Session) -> AuthResult:
        reply = await self._exchange(self._start_request(id_tag, session, live=True), idempotent=self.extensions)
        if reply.ok:
            session_id = reply.get("Session-Id")
            self._remember_opened(session.key, session_id)
            log.info("START %s: accepted, Session-Id %s", _mask(id_tag), session_id)
            return AuthResult(AuthStatus.ACCEPTED, message=reply.message, backend_session_id=session_id)
        rule = rule_for(reply.code)
        text = reply.message or rule.meaning
        log.info("START %s: ERROR %s %s", _mask(id_tag), reply.code, text)
        if rule.auth is None:
            self._notice(f"{reply.code} {text}")
            raise BackendOffline(f"server answered {reply.code} {text}")
        return AuthResult(rule.auth, message=text)

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if item.kind is MessageKind.START:
            return await self._deliver_start(session)
        if item.kind is MessageKind.STOP:
            return await self._deliver_stop(session)
        return DeliveryResult()  # MCSP carries no meter values during a session

    async def _deliver_start(self, session: Session) -> DeliveryResult:
        known = session.backend_session_id or self._opened.get(session.key)
        if known:
            # authorize's START already opened it (or an earlier delivery did): no second START.
            return DeliveryResult(backend_session_id=known)
        reply = await self._exchange(self._start_request(session.id_tag, session, live=False),
                                     idempotent=self.extensions)
        if reply.ok:
            return DeliveryResult(backend_session_id=reply.get("Session-Id"))
        return self._not_delivered(reply, "START")

    async def _deliver_stop(self, session: Session) -> DeliveryResult:
        session_id = session.backend_session_id or self._opened.get(session.key)
        if session_id is None:
            earlier = str(session.extra.get("rejected") or "")
            if "start:" in earlier:
                return DeliveryResult(rejected=f"the server refused this session's START ({earlier})")
            if not self.extensions:
                return DeliveryResult(rejected="no Session-Id: the server never accepted this session's START")
        reply = await self._exchange(self._end_request(session, session_id))
        if reply.ok:
            self._forget_opened(session.key)
            log.info("END session %s: %s Wh delivered", session_id or session.key, session.energy_wh)
            return DeliveryResult(backend_session_id=session_id or reply.get("Session-Id"))
        return self._not_delivered(reply, "END")

    def _not_delivered(self, reply: Reply, what: str) -> DeliveryResult:
        rule = rule_for(reply.code)
        text = f"{reply.code if reply.code is not None else 'ERROR'} {reply.message or rule.meaning}"
        if rule.retry:
            raise BackendOffline(f"{what} answered {text}; offered again later")
        return DeliveryResult(rejected=text)

    async def send_status(self, report: StatusReport) -> None:
        """Best effort: a HEARTBEAT carrying the new status, sent in the background."""
        self._status = report.status.value
        self._error = None
        if report.error_code != "NoError":
            detail = ": ".join(x for x in (report.vendor_error_code, report.info) if x)
            self._error = (report.error_code, _printable(detail or report.error_code))
        if not (self.heartbeats and self.online):
            return
        if self.station is not None and (self._status_task is None or self._status_task.done()):
            self._status_task = self.station.spawn(self._send_status(), "mcsp-status")

    async def _send_status(self) -> None:
        try:
            reply = await self._exchange(self._heartbeat_request())
            if reply.ok:
                self._take_time(reply, self.last_round_trip_s)
        except BackendOffline:
            pass

    # ------------------------------------------------------------------ sessions opened by authorize
    def _remember_opened(self, key: str, session_id: str | None) -> None:
        if session_id is None:
            return
        self._opened[key] = session_id
        self._save_opened()

    def _forget_opened(self, key: str) -> None:
        if self._opened.pop(key, None) is not None:
            self._save_opened()

    def _save_opened(self) -> None:
        if self.store is not None:
            try:
                self.store.put_json(OPENED_KEY, self._opened)
            except Exception as exc:  # the map is a convenience; the server's key rule is the safety
                log.warning("cannot save the MCSP open-session map: %s", exc)

    async def _close_abandoned(self) -> None:
        """END (zero energy) the server sessions that authorize opened but the core dropped."""
        if self.store is None:
            return
        for key, session_id in list(self._opened.items()):
            self._beat()
            session = self.store.session_by_key(key)
            if session is None:
                self._forget_opened(key)
            elif session.state in ("active", "stopped"):
                self._forget_opened(key)  # the outbox takes it from here (its START is not re-sent)
            elif session.state in ("aborted", "refused"):
                reply = await self._exchange(self._end_request(session, session_id, reason="Other"))
                if reply.ok or reply.code == 404:
                    self._forget_opened(key)
                    log.info("closed session %s that never started charging", session_id)

    # ------------------------------------------------------------------ the exchange
    async def _exchange(self, req: Request, *, idempotent: bool = True) -> Reply:
        """Send one request and return its reply. Raises BackendOffline when there is none."""
        async with self._lock:
            for attempt in (1, 2):
                reused = self._link is not None and not self._link.peer_closed()
                await self._ensure_link()
                try:
                    sent = asyncio.get_running_loop().time()
                    reply = await self._roundtrip(req)
                    self.last_round_trip_s = asyncio.get_running_loop().time() - sent
                except asyncio.CancelledError:
                    await self._drop_link("cancelled", force=True)
                    raise
                except (TimeoutError, ProtocolError) as exc:
                    # (caught first: TimeoutError is an OSError since Python 3.11)
                    why = "no reply" if isinstance(exc, asyncio.TimeoutError) else f"protocol error: {exc}"
                    await self._drop_link(why)
                    self._set_online(False)
                    self._wake.set()
                    raise BackendOffline(f"{req.action}: {why}") from exc
                except (OSError, EOFError, ssl.SSLError) as exc:
                    await self._drop_link(f"link broke: {exc or type(exc).__name__}", force=True)
                    if reused and idempotent and attempt == 1:
                        continue  # a stale connection (server restarted): once more, on a fresh one
                    self._set_online(False)
                    self._wake.set()
                    raise BackendOffline(f"{req.action}: link broke ({exc or type(exc).__name__})") from exc
                self.exchanges += 1
                self.last_reply = reply
                self.site.take(reply)
                if reply.ended_by == "eof":
                    await self._drop_link("server closed the link", force=True)
                self._set_online(True)
                return reply
        raise AssertionError("unreachable")

    async def _ensure_link(self) -> None:
        if self._link is not None and self._link.peer_closed():
            # The server closed it while we were quiet (its idle rule, docs/mcsp.md §9): a
            # fresh connection, before a request is lost on this one.
            await self._drop_link("the server had closed it", force=True)
        if self._link is not None:
            return
        try:
            self._link = await open_link(self.url, baudrate=self.baudrate, timeout=self.timeout_s, ca_file=self.ca_file)
        except (TimeoutError, OSError, ssl.SSLError, ValueError) as exc:
            self._set_online(False)
            if isinstance(exc, ssl.SSLError):
                self._notice(f"TLS failed: {exc.reason or exc}")
            raise BackendOffline(f"cannot reach {self.url}: {exc or type(exc).__name__}") from exc
        self._conn = Connection(Role.STATION)
        log.info("MCSP link to %s open", self.url)

    async def _drop_link(self, why: str, force: bool = False) -> None:
        link = self._link
        if link is None:
            return
        if not force and not link.reconnects:
            # A serial line stays open: forget the half-read reply, drop stale input next time.
            if self._conn is not None:
                self._conn.abandon()
            log.info("MCSP serial exchange abandoned: %s", why)
            return
        self._link = None
        self._conn = None
        log.info("MCSP link closed: %s", why)
        try:
            await link.close()
        except Exception:
            pass

    def _enough(self, reply: Reply, req: Request) -> bool:
        """Does a reply without end marker hold what `req` needs? (OK to START: Session-Id)."""
        return not (reply.ok and req.action == codec.START and not reply.get("Session-Id"))

    def _stale(self, reply: Reply, req: Request) -> bool:
        echo, mine = reply.get("Session-Key"), req.get("Session-Key")
        return echo is not None and mine is not None and echo != mine

    def _accept(self, reply: Reply, req: Request) -> Reply | None:
        """The reply to `req`, or None for a late reply to an earlier request (skip it)."""
        if self._stale(reply, req):
            log.warning("skipping a late reply for another session (Session-Key %s)", reply.get("Session-Key"))
            assert self._conn is not None
            self._conn.outstanding = req
            return None
        if reply.ended_by == "eof" and (not self._enough(reply, req) or (not reply.ok and reply.code is None)):
            # Cut by the link closing: we cannot know what was still to come.
            raise ConnectionResetError("server closed the link in the middle of its reply")
        if not self._enough(reply, req):
            raise codec.RemoteProtocolError("OK to START without Session-Id")
        return reply

    async def _roundtrip(self, req: Request) -> Reply:
        link, conn = self._link, self._conn
        assert link is not None and conn is not None
        if not link.reconnects:
            await link.discard_input()
            conn.abandon()
        await link.write(conn.send(req))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            event = conn.next_event()
            if isinstance(event, Reply):
                reply = self._accept(event, req)
                if reply is not None:
                    return reply
                continue
            if event is CLOSED:
                raise ConnectionResetError("server closed the link without a reply")
            remaining = deadline - loop.time()
            if remaining <= 0:
                conn.abandon()
                raise TimeoutError()
            pending = conn.pending_reply
            settle = pending is not None and self._enough(pending, req) and not conn.partial_line
            chunk = await link.read(min(remaining, self.settle_s) if settle else remaining)
            if chunk is not None:
                conn.receive_data(chunk)
                continue
            if settle:
                done = conn.end_of_reply()
                if done is not None:
                    reply = self._accept(done, req)
                    if reply is not None:
                        return reply


def create(config: Any, store: Any) -> McspBackend:
    m = config.backend.mcsp
    return McspBackend(m.url, config.station.name, store=store, baudrate=m.baudrate, timeout_s=m.timeout_s,
                       heartbeat_s=m.heartbeat_s, ca_file=m.ca_file, secret=m.secret, extensions=m.extensions)
