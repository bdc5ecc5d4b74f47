"""An emulation of the 2018 mmetering server side (`manage.py runevcs`), for tests and demos.

It behaves as the deployed one does (docs/mcsp.md §11.3 and §14.4), faults
included, because the station must cope with that server as it is:

* two tasks, as the original has two threads: a *reader* that takes lines
  off the serial port (19200 8N1) into a queue and writes the replies (CRLF
  after each), and a *protocol task* that handles the queued lines;
* after `Abrechnung auf`, after `OK_Lader<N>!` and after a `Tag ID` line the
  protocol task waits `follow_up_s` (3 s) for the next line, in a queue
  wait whose timeout the original does not catch: when the line does not
  come, the protocol task **ends** (`died` says why). The reader lives on,
  so the process looks alive; every later line is read and logged but
  never answered or billed. Any line at all ends such a wait; one that is
  not the awaited line is taken and ignored;
* a session is a database row (`rows`) created when the tag arrives, before
  `OK_Lader<N>!`; it gets its start reading only after `Verstanden`, when
  the server reads the apartment meter itself (`meter_read_s` on its bus).
  A failed read is answered `ERROR20_Lader<N>!` after the OK and
  `Verstanden`; the row stays without a start reading;
* the end (`Tag ID` + `total FERTIG`) is never acknowledged: silence, or
  `ERROR21_Lader<N>!` (meter read failed: the session stays open) or
  `ERROR30_Lader<N>!` (no open session for that tag);
* open sessions are held in memory (`open`, by tag; a new START of a tag
  replaces its entry, leaving the older row unfinished): `restart()` forgets
  them, as restarting the service does.

    Abrechnung auf + Tag ID = <tag>  ->  OK_Lader<N>!  (then waits for Verstanden, reads its meter)
                                         ERROR10_Lader<N>!  no flat/meter for station N
    Verstanden (after the OK)        ->  (silence)
                                         ERROR20_Lader<N>!  meter unreadable at start
    Tag ID = <tag> + total FERTIG    ->  (silence)
                                         ERROR21_Lader<N>!  meter unreadable at end
                                         ERROR30_Lader<N>!  no open session for that tag
    LADER <N> lebt                   ->  (silence; noted as alive)

The "Abrechnung auf" line names no station; like the original (one charger
per serial line), the emulation answers with its configured station number.
`log` records the conversation with monotonic times, as the live log did.
`fatal_waits = False` makes a missed wait harmless (the protocol task goes
on), for a test that needs a server that survives.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from station.aio import cancel_and_wait
from station.backends.evcs.lines import LineReader, parse_station_line
from station.backends.link import SerialLink

log = logging.getLogger(__name__)

FOLLOW_UP_S = 3.0  # the original's queue wait for each follow-up line
METER_READ_S = 0.3  # the server's own Modbus read of the apartment meter (four registers on its bus)


class MeterFailure(Exception):
    """The emulated apartment meter did not answer."""


class ProtocolTaskEnded(Exception):
    """A follow-up line did not come in time (the original's uncaught queue.Empty)."""


@dataclass
class EvcsSession:
    """One row of the server's database (mmetering's ChargingValue)."""

    tag: str
    station: int
    flat: str
    start_kwh: float | None = None  # None: never opened (no Verstanden, or ERROR20)
    start: float | None = None
    end_kwh: float | None = None
    end: float | None = None
    acknowledged: bool = False  # Verstanden came after the OK

    @property
    def energy_wh(self) -> int | None:
        """What this row bills; None when a reading is missing (a row nobody can bill)."""
        if self.start_kwh is None or self.end_kwh is None:
            return None
        return round((self.end_kwh - self.start_kwh) * 1000)


@dataclass
class Runevcs2018:
    port: str
    meter: Callable[[str], float]  # flat -> kWh; raises MeterFailure
    baudrate: int = 19200
    station_number: int = 1
    flats: dict[int, str] = field(default_factory=lambda: {1: "Flat 1"})
    follow_up_s: float = FOLLOW_UP_S
    meter_read_s: float = METER_READ_S
    fatal_waits: bool = True
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic s, "station"|"server", line)
    rows: list[EvcsSession] = field(default_factory=list)  # the database: survives restart()
    open: dict[str, EvcsSession] = field(default_factory=dict)  # in memory: lost by restart()
    closed: list[EvcsSession] = field(default_factory=list)  # rows given an end reading, in order
    alive: dict[int, float] = field(default_factory=dict)
    died: str | None = None  # why the protocol task ended (None: it runs)

    def __post_init__(self) -> None:
        self._link: SerialLink | None = None
        self._tasks: list[asyncio.Task] = []
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._lines = LineReader("runevcs")

    async def start(self) -> None:
        self._link = await asyncio.to_thread(SerialLink.open, self.port, self.baudrate)
        self._queue = asyncio.Queue()
        self.died = None
        self._tasks = [asyncio.create_task(self._read(), name="runevcs-reader"),
                       asyncio.create_task(self._protocol(), name="runevcs-protocol")]

    async def stop(self) -> None:
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks = []
        if self._link is not None:
            await self._link.close()
        self._link = None

    async def restart(self) -> None:
        """Restart the service: the open sessions (held in memory) are forgotten, the rows stay."""
        await self.stop()
        self.open.clear()
        await self.start()

    def lines(self, who: str | None = None) -> list[str]:
        return [line for _, w, line in self.log if who is None or w == who]

    # ------------------------------------------------------------------ the reader
    async def _read(self) -> None:
        assert self._link is not None
        while True:
            line = await self._lines.next(self._link, None)
            if line is not None:
                self.log.append((time.monotonic(), "station", line))
                self._queue.put_nowait(line)

    async def _send(self, line: str) -> None:
        assert self._link is not None
        self.log.append((time.monotonic(), "server", line))
        await self._link.write(f"{line}\r\n".encode("ascii"))

    # ------------------------------------------------------------------ the protocol task
    async def _follow(self, after: str) -> tuple[str, object] | None:
        """The next line within follow_up_s, parsed (None: not a line of the dialect)."""
        try:
            async with asyncio.timeout(self.follow_up_s):
                line = await self._queue.get()
        except TimeoutError:
            if self.fatal_waits:
                raise ProtocolTaskEnded(f"no line within {self.follow_up_s:g} s after {after!r}") from None
            return None
        return parse_station_line(line)

    async def _protocol(self) -> None:
        try:
            while True:
                parsed = parse_station_line(await self._queue.get())
                if parsed is None:
                    continue
                kind, value = parsed
                if kind == "alive":
                    assert isinstance(value, int)
                    self.alive[value] = time.monotonic()
                elif kind == "open":
                    follow = await self._follow("Abrechnung auf")
                    if follow is not None and follow[0] == "tag":
                        await self._start_loading(str(follow[1]))
                elif kind == "tag":
                    follow = await self._follow("Tag ID")
                    if follow is not None and follow[0] == "done":
                        await self._stop_loading(str(value))
        except ProtocolTaskEnded as exc:
            # The original's thread ends with a traceback on stderr; its reader thread goes on.
            self.died = str(exc)
            log.error("runevcs: protocol task ended: %s (the reader goes on; nothing is answered any more)", exc)

    async def _read_meter(self, flat: str) -> float | None:
        await asyncio.sleep(self.meter_read_s)
        try:
            return self.meter(flat)
        except MeterFailure:
            return None

    async def _start_loading(self, tag: str) -> None:
        n = self.station_number
        flat = self.flats.get(n)
        if flat is None:
            await self._send(f"ERROR10_Lader{n}!")
            return
        session = EvcsSession(tag, n, flat)  # the row exists before the OK is sent
        self.rows.append(session)
        await self._send(f"OK_Lader{n}!")
        self.open[tag] = session
        check = await self._follow(f"OK_Lader{n}!")
        if check is None or check[0] != "ack":
            return  # the row stays without a start reading
        session.acknowledged = True
        kwh = await self._read_meter(flat)
        if kwh is None:
            await self._send(f"ERROR20_Lader{n}!")
            return
        session.start_kwh, session.start = kwh, time.time()

    async def _stop_loading(self, tag: str) -> None:
        n = self.station_number
        ending = self.open.get(tag)
        if ending is None:
            await self._send(f"ERROR30_Lader{n}!")
            return
        kwh = await self._read_meter(ending.flat)
        if kwh is None:
            await self._send(f"ERROR21_Lader{n}!")
            return
        ending.end_kwh, ending.end = kwh, time.time()
        self.closed.append(self.open.pop(tag))
