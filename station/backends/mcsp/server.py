"""The MCSP/1.0 reference server: the mmetering side, small enough to read in one sitting.

    station mcsp-server [--listen HOST:PORT | --serial PORT] [--tags FILE] [--db FILE]

Theory of operation
-------------------
`McspServer.handle(request)` is the whole protocol logic: one request in,
one reply out, sessions kept in SQLite (`Ledger`). Around it sit two
transports on the same codec: an asyncio TCP (optionally TLS) server, one
`Connection` per accepted socket, and a serial loop for one station on a
serial line. `station simulate` embeds the class; `main(argv)` is the CLI.

Rules it implements (docs/mcsp.md is normative):
* START: 407 for an unknown or unauthenticated station (only when the tags
  file lists stations), 401 for an unknown key, 403 for a key restricted to
  other stations, 409 when the key has an open session at another station,
  503 when the server's own meter cannot be read. A START whose Session-Key
  is known returns the same session: never a second one.
* A new START at a station that still has an open session closes that one
  as "superseded" (a station charges one car at a time; the old one was
  abandoned, e.g. its END was refused).
* END: the session is found by Session-Key, else by Session-Id (404 if
  neither, or if they disagree). An END for a closed session is answered
  OK again and bills nothing more. The station's readings in END are the
  record: energy = Meter-Stop - Meter-Start.
* Every reply ends with an empty line and carries `Time` (the server's
  UTC clock); replies to START and END echo `Session-Key`.
* Connections are admitted by admission.py's policy (docs/mcsp.md §9.1): a
  valid request within 10 s of accept, then at least every 15 min; one
  address cannot take the table; a station that spoke is never pushed out
  by one that did not. The serial transport drops a message left
  unfinished for FRAME_GAP_S and answers noise with few 400s.

Tags file (TOML)::

    "16AC936B1692E73A" = "Apartment 3"                     # tag = "apartment"
    "D6 4F C9 3B" = { apartment = "Apartment 5", stations = ["Tankstelle1"] }

    [stations]                 # optional: only these stations may connect
    Tankstelle1 = { secret = "s3cret-for-this-station" }   # secret optional
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import logging
import sqlite3
import ssl
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from station import privacy
from station.aio import cancel_and_wait, stop_on_signals
from station.backends.mcsp import codec
from station.backends.mcsp.admission import (
    MALFORMED,
    MAX_CONNECTIONS,
    NOT_READ,
    REFUSED_REPEATEDLY,
    Admission,
    ConnectionLimits,
    Slot,
)
from station.backends.mcsp.codec import CLOSED, NEED_DATA, Connection, Reply, Request, Role
from station.backends.mcsp.link import Link, SerialLink, StreamLink
from station.backends.mcsp.tally import Tally
from station.core.tags import normalize_tag
from station.errors import ProtocolError

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:4711"
FRAME_GAP_S = 2.0  # serial: silence inside a message after which its start is dropped (a station sends at once)
ERROR_REPLY_GAP_S = 1.0  # serial: at most one 400 per this long (the line is shared with the station's replies)
REQUESTS_KEPT = 1000  # McspServer.requests keeps the last this many (up to twice as many between trims)
TALLY_PERIOD_S = 60.0  # closed connections and dropped input are summed up in one log line this often
WRITE_S = 10.0  # a reply the peer has not taken (TCP flow control) within this long ends its connection
REFUSALS_BEFORE_VALID = 3  # 400/405/407 replies an unproven connection gets before it is closed
SEEN_EVERY_S = 30.0  # a station's last_seen is written at most this often (unless its status changes)
STATIONS_SEEN_MAX = 10_000  # names recorded by HEARTBEAT per run (bounds a flood of made-up names)


@dataclass(frozen=True)
class TagEntry:
    apartment: str
    stations: frozenset[str] | None = None  # None: any station


@dataclass(frozen=True)
class SessionRecord:
    id: int
    session_key: str | None
    station: str
    tag: str
    apartment: str | None
    state: str  # open | closed | superseded
    start_time: str
    end_time: str | None
    meter_start_wh: int | None
    meter_stop_wh: int | None
    energy_wh: int | None
    start_phases: str | None
    stop_phases: str | None
    stop_reason: str | None
    offline: bool
    estimated: bool
    server_meter_start: float | None
    server_meter_stop: float | None


def format_session(r: SessionRecord, *, for_log: bool = False) -> str:
    """One line per session. `for_log`: the tag masked (station.privacy) unless log_tags is on;
    the printed record (`out`, the operator's billing output) keeps it whole."""
    energy = f"{r.energy_wh} Wh" if r.energy_wh is not None else "energy unknown"
    tag = privacy.tag(r.tag) if for_log else r.tag
    return (f"session {r.id}: {tag} ({r.apartment or '?'}) at {r.station}, {r.start_time} -> {r.end_time or '?'}, "
            f"{energy}, meter {r.meter_start_wh}->{r.meter_stop_wh} Wh, {r.state}"
            + (f", reason {r.stop_reason}" if r.stop_reason else ""))


def load_tags(path: str | Path) -> tuple[dict[str, TagEntry], dict[str, str | None] | None]:
    """(tags by normalized tag, stations -> secret or None when the file has no [stations])."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    stations: dict[str, str | None] | None = None
    tags: dict[str, TagEntry] = {}
    for name, value in data.items():
        if name == "stations" and isinstance(value, dict) and "apartment" not in value:
            stations = {}
            for station, entry in value.items():
                if isinstance(entry, str):
                    stations[station] = entry
                elif isinstance(entry, dict):
                    stations[station] = entry.get("secret")
                else:
                    raise ValueError(f"{path}: stations.{station}: expected a table or a secret string")
        elif isinstance(value, str):
            tags[normalize_tag(name)] = TagEntry(value)
        elif isinstance(value, dict) and isinstance(value.get("apartment"), str):
            allowed = value.get("stations")
            if allowed is not None and not (isinstance(allowed, list) and all(isinstance(s, str) for s in allowed)):
                raise ValueError(f"{path}: {name}.stations: expected a list of station names")
            tags[normalize_tag(name)] = TagEntry(value["apartment"], frozenset(allowed) if allowed is not None else None)
        else:
            raise ValueError(f'{path}: {name}: expected "apartment" or {{ apartment = "...", stations = [...] }}')
    return tags, stations


class Ledger:
    """The server's sessions in SQLite. Session-Id = the row id (as in mmetering)."""

    DDL = """
    CREATE TABLE IF NOT EXISTS sessions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        session_key TEXT UNIQUE,
        station TEXT NOT NULL,
        tag TEXT NOT NULL,
        tag_norm TEXT NOT NULL,
        apartment TEXT,
        state TEXT NOT NULL,
        start_time TEXT NOT NULL,
        end_time TEXT,
        meter_start_wh INTEGER,
        meter_stop_wh INTEGER,
        energy_wh INTEGER,
        start_phases TEXT,
        stop_phases TEXT,
        stop_reason TEXT,
        offline INTEGER NOT NULL DEFAULT 0,
        estimated INTEGER NOT NULL DEFAULT 0,
        server_meter_start REAL,
        server_meter_stop REAL,
        received_start TEXT NOT NULL,
        received_end TEXT
    );
    CREATE TABLE IF NOT EXISTS stations (name TEXT PRIMARY KEY, last_seen TEXT, status TEXT);
    -- Every START looks for the open sessions of its tag and of its station: without these, a
    -- full scan of a ledger that only grows (19 ms at 100,000 sessions, 174 ms at 1,000,000).
    CREATE INDEX IF NOT EXISTS sessions_open_by_tag ON sessions(tag_norm) WHERE state = 'open';
    CREATE INDEX IF NOT EXISTS sessions_open_by_station ON sessions(station) WHERE state = 'open';
    """
    COLS = ("id", "session_key", "station", "tag", "apartment", "state", "start_time", "end_time", "meter_start_wh",
            "meter_stop_wh", "energy_wh", "start_phases", "stop_phases", "stop_reason", "offline", "estimated",
            "server_meter_start", "server_meter_stop")

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        if str(path) != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(self.DDL)

    def _one(self, where: str, args: tuple) -> SessionRecord | None:
        row = self.db.execute(f"SELECT {', '.join(self.COLS)} FROM sessions WHERE {where}", args).fetchone()
        return self._record(row) if row else None

    @staticmethod
    def _record(row: sqlite3.Row) -> SessionRecord:
        values = dict(row)
        values["offline"], values["estimated"] = bool(values["offline"]), bool(values["estimated"])
        return SessionRecord(**values)

    def by_key(self, key: str) -> SessionRecord | None:
        return self._one("session_key = ?", (key,))

    def by_id(self, session_id: str) -> SessionRecord | None:
        if not session_id.isdigit() or len(session_id) > 18:
            return None
        return self._one("id = ?", (int(session_id),))

    def open_for_tag(self, tag_norm: str) -> SessionRecord | None:
        return self._one("tag_norm = ? AND state = 'open' ORDER BY id DESC LIMIT 1", (tag_norm,))

    def open_at(self, station: str) -> list[SessionRecord]:
        rows = self.db.execute(f"SELECT {', '.join(self.COLS)} FROM sessions WHERE station = ? AND state = 'open'",
                               (station,)).fetchall()
        return [self._record(r) for r in rows]

    def insert(self, **values: Any) -> int:
        names = ", ".join(values)
        marks = ", ".join("?" * len(values))
        cur = self.db.execute(f"INSERT INTO sessions ({names}) VALUES ({marks})", tuple(values.values()))
        assert cur.lastrowid is not None  # an INSERT always sets it
        return cur.lastrowid

    def update(self, session_id: int, **values: Any) -> None:
        sets = ", ".join(f"{n} = ?" for n in values)
        self.db.execute(f"UPDATE sessions SET {sets} WHERE id = ?", (*values.values(), session_id))

    def seen(self, station: str, when: str, status: str | None) -> None:
        self.db.execute("INSERT INTO stations(name, last_seen, status) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                        " SET last_seen = excluded.last_seen, status = COALESCE(excluded.status, stations.status)",
                        (station, when, status))

    def all(self) -> list[SessionRecord]:
        rows = self.db.execute(f"SELECT {', '.join(self.COLS)} FROM sessions ORDER BY id").fetchall()
        return [self._record(r) for r in rows]

    def close(self) -> None:
        self.db.close()


class MeterUnreadable(Exception):
    """Raised by a server's meter reader: the apartment's meter did not answer (-> 503)."""


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: str | None) -> int | None:
    return int(value) if value is not None else None


class McspServer:
    """The reference server. `tags=None` accepts every key (a demo without a tags file)."""

    def __init__(self, *, tags: Mapping[str, str | TagEntry] | None = None, stations: dict[str, str | None] | None = None,
                 db: str | Path = ":memory:", host: str = "127.0.0.1", port: int = 0, serial: str | None = None,
                 baudrate: int = 19200, ssl_context: ssl.SSLContext | None = None,
                 meter: Callable[[str], float] | None = None, now: Callable[[], str] = _utc_now,
                 out: TextIO | None = None, on_session_end: Callable[[SessionRecord], None] | None = None,
                 limits: ConnectionLimits | None = None, keep_requests: int | None = REQUESTS_KEPT) -> None:
        self.tags: dict[str, TagEntry] | None = None
        if tags is not None:
            self.tags = {normalize_tag(t): (e if isinstance(e, TagEntry) else TagEntry(e)) for t, e in tags.items()}
        self.stations = stations
        self.ledger = Ledger(db)
        self.host, self._port, self.serial, self.baudrate = host, port, serial, baudrate
        self.ssl_context = ssl_context
        self.meter = meter  # apartment -> kWh, raising MeterUnreadable (installations read their own meters)
        self.now = now
        self.out = out
        self.on_session_end = on_session_end
        # Against a hostile or broken peer on the building network (the codec bounds lines and
        # messages; admission.py explains the connection policy):
        self.admission = Admission(limits)
        self.tally = Tally("MCSP server", TALLY_PERIOD_S)
        # The requests handled, in order (tests, debugging): the last `keep_requests` of them (None:
        # all). Bounded by default: a server holding 1000 stations gets 1000 heartbeats a minute.
        self.requests: list[Request] = []
        self.keep_requests = keep_requests
        self.fail_next: list[Reply] = []  # replies to give instead of handling (tests of error paths)
        self._server: asyncio.Server | None = None
        self._serial_task: asyncio.Task | None = None
        self._serial_link: SerialLink | None = None
        self._clients: dict[Slot, asyncio.Task] = {}
        self._tally_task: asyncio.Task | None = None
        self._seen: dict[str, tuple[float, str | None]] = {}  # name -> (monotonic s, status) last written

    # ------------------------------------------------------------------ protocol logic
    def handle(self, req: Request) -> Reply:
        """One request in, one reply out. Never raises."""
        self.requests.append(req)
        if self.keep_requests is not None and len(self.requests) >= 2 * self.keep_requests + 1:
            del self.requests[: len(self.requests) - self.keep_requests]  # in chunks: O(1) per request
        if self.fail_next:
            return self.fail_next.pop(0)
        try:
            reply = self._handle(req)
        except MeterUnreadable as exc:
            reply = codec.error(503, f"Meter not readable: {exc}"[:200])
        except Exception:
            log.exception("handling %s failed", req.action)
            reply = codec.error(500, "Server error")
        echo = req.get("Session-Key")
        if echo is not None and req.action in (codec.START, codec.END) and "Session-Key" not in reply.headers:
            reply = Reply(reply.status, reply.headers.plus(session_key=echo), reply.version)
        return Reply(reply.status, reply.headers.plus(time=self.now()), reply.version)

    def _handle(self, req: Request) -> Reply:
        if req.action not in codec.ACTIONS:
            return codec.error(405, "Action not supported")
        problem = codec.request_problem(req)
        if problem:
            return codec.error(400, f"Malformed request: {problem}")
        name = req.headers["Name"]
        if self.stations is not None:
            if name not in self.stations:
                return codec.error(407, "Station is not registered")
            secret = self.stations[name]
            if secret is not None and not hmac.compare_digest((req.get("Auth") or "").encode(), secret.encode()):
                return codec.error(407, "Station not authenticated")
        if req.action == codec.HEARTBEAT:
            self._record_seen(name, req.get("Status"))
            return codec.ok()
        if req.action == codec.START:
            return self._start(req, name)
        return self._end(req, name)

    def _record_seen(self, name: str, status: str | None) -> None:
        """Note a station alive in the ledger, at most every SEEN_EVERY_S unless its status
        changed: every write is an fsync on the event loop, and without a [stations] table any
        name may come, so at most STATIONS_SEEN_MAX names a run are recorded."""
        now = time.monotonic()
        last = self._seen.get(name)
        if last is None and len(self._seen) >= STATIONS_SEEN_MAX:
            self.tally.note(f"heartbeat not recorded: {STATIONS_SEEN_MAX} station names already", name)
            return
        if last is not None and now - last[0] < SEEN_EVERY_S and status in (None, last[1]):
            return
        if status is None and last is not None:
            status = last[1]  # the status the ledger keeps (seen() leaves it as it was)
        self._seen[name] = (now, status)
        self.ledger.seen(name, self.now(), status)

    def _start(self, req: Request, name: str) -> Reply:
        key, skey = req.headers["Key"], req.get("Session-Key")
        tag_norm = normalize_tag(key)
        if skey is not None:
            known = self.ledger.by_key(skey)
            if known is not None:
                if known.station != name or normalize_tag(known.tag) != tag_norm:
                    return codec.error(400, "Malformed request: Session-Key belongs to another session")
                return codec.ok(session_id=known.id)  # a repeated START: the same session
        apartment = None
        if self.tags is not None:
            entry = self.tags.get(tag_norm)
            if entry is None:
                return codec.error(401, "Key is not registered")
            if entry.stations is not None and name not in entry.stations:
                return codec.error(403, "Key is not allowed at this station")
            apartment = entry.apartment
        other = self.ledger.open_for_tag(tag_norm)
        if other is not None and other.station != name:
            return codec.error(409, f"Session already open at {other.station}"[:200])
        server_meter = self.meter(apartment or "") if self.meter is not None else None
        now = self.now()
        for stale in self.ledger.open_at(name):
            self.ledger.update(stale.id, state="superseded", end_time=now, stop_reason="Superseded")
            log.warning("session %d at %s superseded by a new START", stale.id, name)
        session_id = self.ledger.insert(
            session_key=skey, station=name, tag=key, tag_norm=tag_norm, apartment=apartment, state="open",
            start_time=req.get("Time") or now, meter_start_wh=_int(req.get("Meter-Start")),
            start_phases=req.get("Meter-Start-Phases"), offline=int((req.get("Offline") or "").lower() == "yes"),
            server_meter_start=server_meter, received_start=now)
        log.info("session %d opened: %s at %s", session_id, privacy.tag(key), name)
        return codec.ok(session_id=session_id)

    def _end(self, req: Request, name: str) -> Reply:
        sid, skey = req.get("Session-Id"), req.get("Session-Key")
        rec = None
        if skey is not None:
            rec = self.ledger.by_key(skey)
            if rec is None and sid is not None:
                by_id = self.ledger.by_id(sid)
                rec = by_id if by_id is not None and by_id.session_key is None else None
        elif sid is not None:
            rec = self.ledger.by_id(sid)
        if rec is None or (sid is not None and str(rec.id) != sid):
            return codec.error(404, "Unknown session")
        if rec.station != name or normalize_tag(rec.tag) != normalize_tag(req.headers["Key"]):
            return codec.error(404, "Unknown session")
        if rec.state == "closed":  # a repeated END: answered again, billed once
            return codec.ok(session_id=rec.id, energy=rec.energy_wh)
        server_meter = self.meter(rec.apartment or "") if self.meter is not None else None
        start = _int(req.get("Meter-Start"))
        start = start if start is not None else rec.meter_start_wh
        stop = _int(req.get("Meter-Stop"))
        energy = stop - start if start is not None and stop is not None else _int(req.get("Energy"))
        if energy is None and server_meter is not None and rec.server_meter_start is not None:
            energy = round((server_meter - rec.server_meter_start) * 1000)
        now = self.now()
        self.ledger.update(
            rec.id, state="closed", end_time=req.get("Time") or now, start_time=req.get("Start-Time") or rec.start_time,
            meter_start_wh=start, meter_stop_wh=stop, energy_wh=energy,
            start_phases=req.get("Meter-Start-Phases") or rec.start_phases, stop_phases=req.get("Meter-Stop-Phases"),
            stop_reason=req.get("Stop-Reason"), estimated=int((req.get("Meter-Estimated") or "").lower() == "yes"),
            server_meter_stop=server_meter, received_end=now)
        closed = self.ledger.by_key(rec.session_key) if rec.session_key else self.ledger.by_id(str(rec.id))
        assert closed is not None
        log.info("%s", format_session(closed, for_log=True))
        if self.out is not None:
            print(format_session(closed), file=self.out, flush=True)
        if self.on_session_end is not None:
            self.on_session_end(closed)
        return codec.ok(session_id=rec.id, energy=energy)

    def sessions(self) -> list[SessionRecord]:
        return self.ledger.all()

    # ------------------------------------------------------------------ transports
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
        await cancel_and_wait(*self._clients.values(), self._serial_task, self._tally_task)
        self.tally.flush()
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
        `deadline` (admission.py); a reply the peer does not take within WRITE_S ends it (False)."""
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


# --------------------------------------------------------------------------- CLI
def _server_ssl(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="station mcsp-server", description="MCSP/1.0 reference server (mmetering side)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--listen", default=None, metavar="HOST:PORT", help=f"TCP address (default {DEFAULT_LISTEN})")
    where.add_argument("--serial", metavar="PORT", help="serve one station on a serial line instead")
    p.add_argument("--baudrate", type=int, default=19200, help="serial baud rate (default 19200, 8N1)")
    p.add_argument("--tags", metavar="FILE", help='TOML: tag = "apartment" (without it every key is accepted)')
    p.add_argument("--db", metavar="FILE", default="mcsp-sessions.db", help="SQLite file (default ./mcsp-sessions.db)")
    p.add_argument("--cert", metavar="FILE", help="TLS certificate chain (serves tls:// with --key)")
    p.add_argument("--key", metavar="FILE", help="TLS private key")
    p.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS, metavar="N",
                   help=f"TCP connections served at once (default {MAX_CONNECTIONS}); docs/mcsp.md §9.1")
    p.add_argument("--log-tags", action="store_true", help="log id tags in full (default: masked; the printed "
                   "session lines and the database always keep them)")
    return p


def _enough_file_descriptors(connections: int) -> None:
    """Every connection is a file descriptor, and asyncio accepts a backlog's worth of
    connections in one go before the policy sees any. With the soft limit near the table size
    (systemd gives a service 1024), a connect-and-reset storm makes accept() fail (EMFILE) and
    pauses accepting: raise the soft limit to the hard one, and say so if even that is low."""
    import resource

    want = connections + 4 * 128 + 64  # the table, a few backlogs in flight, the ledger and logs
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < want:
        log.warning("only %d file descriptors allowed (ulimit -n): fewer than --max-connections %d needs (%d)",
                    hard, connections, want)


def _count_accept_errors(server: McspServer) -> None:
    """asyncio logs every failed accept() with a traceback: under a storm, thousands of lines.
    Count them in the server's once-a-minute summary instead."""
    loop = asyncio.get_running_loop()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if str(context.get("message", "")).startswith("socket.accept() out of system resource"):
            server.tally.note("accept failed: out of file descriptors", "server")
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def serve(server: McspServer, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    stop_on_signals(stop)
    _count_accept_errors(server)
    await server.start()
    print(f"MCSP server on {server.serial or server.url}; sessions are printed as they end", flush=True)
    try:
        await stop.wait()
    finally:
        await server.close()


def main(argv: Iterable[str] | None = None) -> int:
    """`station mcsp-server ...`; returns an exit code."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    privacy.set_log_tags(args.log_tags)
    tags = stations = None
    if args.tags:
        try:
            tags, stations = load_tags(args.tags)
        except ValueError as exc:
            print(f"station mcsp-server: {exc}", file=sys.stderr)
            return 2
    else:
        log.warning("no --tags file: every key is accepted")
    host, port = DEFAULT_LISTEN.rsplit(":", 1)
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not host or not port.isdigit():
            print(f"station mcsp-server: --listen wants HOST:PORT, got {args.listen!r}", file=sys.stderr)
            return 2
    if args.max_connections < 1:
        print("station mcsp-server: --max-connections must be at least 1", file=sys.stderr)
        return 2
    if bool(args.cert) != bool(args.key):
        print("station mcsp-server: --cert and --key go together", file=sys.stderr)
        return 2
    try:
        ctx = _server_ssl(args.cert, args.key) if args.cert else None
        server = McspServer(tags=tags, stations=stations, db=args.db, host=host, port=int(port), serial=args.serial,
                            baudrate=args.baudrate, ssl_context=ctx, out=sys.stdout,
                            limits=ConnectionLimits(max_connections=args.max_connections))
        _enough_file_descriptors(args.max_connections)
        asyncio.run(serve(server))
    except (OSError, ssl.SSLError, sqlite3.Error) as exc:
        print(f"station mcsp-server: {exc}", file=sys.stderr)
        return 1
    return 0


run_server = main


if __name__ == "__main__":
    sys.exit(main())
