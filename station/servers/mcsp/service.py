"""The MCSP/1.0 reference server's protocol logic: one request in, one reply out (no I/O but its ledger).

`Service.handle(request)` is the whole of it; server.py puts it on TCP (TLS)
and serial transports, cli.py is `station mcsp-server`, `station simulate`
embeds the server. docs/mcsp.md is normative; the rules implemented here:

* START: 407 for an unknown or unauthenticated station (only when the tags
  file lists stations; one message for both, so that station names cannot
  be enumerated), 401 for an unknown key, 403 for a key restricted to other
  stations, 409 when the key has an open session at another station, 503
  when the server's own meter cannot be read, and 503 to a station that had
  too many STARTs refused within a minute (refusals.py: tag guessing). A
  START whose Session-Key is known returns the same session: never a
  second one. Refusals (401, 403, 407) are counted per station into one log
  line a minute (`refusal_tally`), so an operator sees a guessing station.
* A new START at a station that still has an open session closes that one
  as "superseded" (a station charges one car at a time; the old one was
  abandoned, e.g. its END was refused).
* END: the session is found by Session-Key, else by Session-Id (404 if
  neither, or if they disagree). An END for a closed session is answered
  OK again and bills nothing more. The station's readings in END are the
  record: energy = Meter-Stop - Meter-Start.
* Every reply ends with an empty line and carries `Time` (the server's
  UTC clock); replies to START and END echo `Session-Key`.
* With a site limit (`share_site_limit`, `station mcsp-server --site-limit-a`):
  what a station reports of its currents is noted, and every OK reply to a
  station that reports carries its cap, `Current-Limit` (sharing.py has the
  rule, docs/mcsp.md 4.5 the headers).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from station import privacy
from station.backends.mcsp import codec
from station.backends.mcsp.codec import Reply, Request
from station.backends.mcsp.messages import format_amps, parse_amps
from station.core.tags import normalize_tag
from station.servers.mcsp.ledger import Ledger, SessionRecord, format_session
from station.servers.mcsp.refusals import BUSY_MESSAGE, RefusalBudget
from station.servers.mcsp.sharing import Sharing
from station.servers.mcsp.tags import TagEntry
from station.tally import Tally

log = logging.getLogger(__name__)

REQUESTS_KEPT = 1000  # Service.requests keeps the last this many (up to twice as many between trims)
TALLY_PERIOD_S = 60.0  # closed connections and dropped input are summed up in one log line this often
SEEN_EVERY_S = 30.0  # a station's last_seen is written at most this often (unless its status changes)
STATIONS_SEEN_MAX = 10_000  # names recorded by HEARTBEAT per run (bounds a flood of made-up names)



class MeterUnreadable(Exception):
    """Raised by a server's meter reader: the apartment's meter did not answer (-> 503)."""


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _int(value: str | None) -> int | None:
    return int(value) if value is not None else None

class Service:
    """The protocol logic. `tags=None` accepts every key (a demo without a tags file)."""

    sharing: Sharing | None = None  # a site limit shared among the stations (share_site_limit)

    def __init__(self, *, tags: Mapping[str, str | TagEntry] | None = None, stations: dict[str, str | None] | None = None,
                 db: str | Path = ":memory:", meter: Callable[[str], float] | None = None,
                 now: Callable[[], str] = _utc_now, out: TextIO | None = None,
                 on_session_end: Callable[[SessionRecord], None] | None = None,
                 keep_requests: int | None = REQUESTS_KEPT) -> None:
        self.tags: dict[str, TagEntry] | None = None
        if tags is not None:
            self.tags = {normalize_tag(t): (e if isinstance(e, TagEntry) else TagEntry(e)) for t, e in tags.items()}
        self.stations = stations
        self.ledger = Ledger(db)
        self.meter = meter  # apartment -> kWh, raising MeterUnreadable (installations read their own meters)
        self.now = now
        self.out = out
        self.on_session_end = on_session_end
        self.tally = Tally("MCSP server", TALLY_PERIOD_S)
        self.refusals = RefusalBudget()
        self.refusal_tally = Tally("MCSP server refusals", TALLY_PERIOD_S, log)  # flushed with `tally`
        self.monotonic: Callable[[], float] = time.monotonic
        # compared against the Auth of a name that is not listed: the same work as for a wrong secret
        self._unknown_station_secret = secrets.token_hex(32).encode()
        # The requests handled, in order (tests, debugging): the last `keep_requests` of them (None:
        # all). Bounded by default: a server holding 1000 stations gets 1000 heartbeats a minute.
        self.requests: list[Request] = []
        self.keep_requests = keep_requests
        self.fail_next: list[Reply] = []  # replies to give instead of handling (tests of error paths)
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
        reply = self._with_current_limit(req, reply)
        return Reply(reply.status, reply.headers.plus(time=self.now()), reply.version)

    def _handle(self, req: Request) -> Reply:
        if req.action not in codec.ACTIONS:
            return codec.error(405, "Action not supported")
        problem = codec.request_problem(req)
        if problem:
            return codec.error(400, f"Malformed request: {problem}")
        name = req.headers["Name"]
        if self.stations is not None:
            # One answer, and the same work, for an unknown name and a wrong or missing secret.
            secret = self.stations.get(name)
            expected = secret.encode() if secret is not None else self._unknown_station_secret
            matches = hmac.compare_digest((req.get("Auth") or "").encode(), expected)
            if not (matches or (secret is None and name in self.stations)):
                self.refusal_tally.note("407 station not authenticated", name)
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
        busy = self.refusals.over(name, self.monotonic())
        if busy is not None:  # a guessing station learns nothing more for a while (refusals.py)
            self.refusal_tally.note(f"503: {busy}", name)
            return codec.error(503, BUSY_MESSAGE)
        apartment = None
        if self.tags is not None:
            entry = self.tags.get(tag_norm)
            if entry is None:
                return self._refuse(name, 401, "Key is not registered")
            if entry.stations is not None and name not in entry.stations:
                return self._refuse(name, 403, "Key is not allowed at this station")
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

    def _refuse(self, name: str, code: int, message: str) -> Reply:
        self.refusals.refused(name, self.monotonic())
        self.refusal_tally.note(f"{code} {message.lower()}", name)
        return codec.error(code, message)

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

    # ------------------------------------------------------------------ the site limit (docs/mcsp.md 4.5)
    def share_site_limit(self, sharing: Sharing) -> None:
        """Share `sharing.site_limit_a` among the stations. Stations with a session open in the
        ledger count at the reserve for stations that do not report (their cap is unknown, say
        after a restart of the server) until they report their currents."""
        self.sharing = sharing
        for name in self.ledger.open_stations():
            sharing.set_active(name, True)

    def _with_current_limit(self, req: Request, reply: Reply) -> Reply:
        """Note the station's currents and session, and give it its cap on an OK reply."""
        if self.sharing is None or not reply.ok or req.action not in codec.ACTIONS or not req.get("Name"):
            return reply
        name = req.headers["Name"]
        if name not in self.sharing.stations and len(self.sharing.stations) >= STATIONS_SEEN_MAX:
            return reply  # without a [stations] table any name may come: bounded, as last_seen is
        offered, drawn = parse_amps(req.get("Current-Offered")), parse_amps(req.get("Current-Drawn"))
        if offered is not None:
            self.sharing.report(name, offered, drawn if drawn is not None else offered)
        self.sharing.set_active(name, bool(self.ledger.open_at(name)))
        before = self.sharing.stations[name].cap_a
        cap = self.sharing.grant(name)
        if cap is None:
            return reply
        if cap != before:
            log.info("site limit %s A: %s may offer %s A (was %s)", format_amps(self.sharing.site_limit_a), name,
                     format_amps(cap), "-" if before is None else f"{format_amps(before)} A")
        return Reply(reply.status, reply.headers.plus(current_limit=format_amps(cap)), reply.version)
