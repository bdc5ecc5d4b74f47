"""An emulation of the 2018 mmetering server side (`manage.py runevcs`), for tests and demos.

It behaves as the deployed one did (docs/mcsp.md, §14 "History"): a serial
port at 19200 8N1, CRLF after every line it sends, up to 3 s for each
follow-up line, sessions keyed by the tag string (one open session per tag),
the energy read by the server itself from the apartment meter of the
station's flat:

    Abrechnung auf + Tag ID = <tag>  ->  OK_Lader<N>!  (then waits for Verstanden)
                                         ERROR10_Lader<N>!  no flat/meter for station N
                                         ERROR20_Lader<N>!  meter unreadable at start
    Tag ID = <tag> + total FERTIG    ->  (silence)
                                         ERROR21_Lader<N>!  meter unreadable at end
                                         ERROR30_Lader<N>!  no open session for that tag
    LADER <N> lebt                   ->  (silence; noted as alive)

The "Abrechnung auf" line names no station; like the original (one charger
per serial line), the emulation answers with its configured station number.
`log` records the conversation with monotonic times, as the live log did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from station.aio import cancel_and_wait
from station.backends.evcs.dialect import LineReader, parse_station_line
from station.backends.link import SerialLink

log = logging.getLogger(__name__)

FOLLOW_UP_S = 3.0


class MeterFailure(Exception):
    """The emulated apartment meter did not answer."""


@dataclass
class EvcsSession:
    tag: str
    station: int
    flat: str
    start_kwh: float
    start: float
    end_kwh: float | None = None
    end: float | None = None
    acknowledged: bool = False

    @property
    def energy_wh(self) -> int | None:
        return None if self.end_kwh is None else round((self.end_kwh - self.start_kwh) * 1000)


@dataclass
class Runevcs2018:
    port: str
    meter: Callable[[str], float]  # flat -> kWh; raises MeterFailure
    baudrate: int = 19200
    station_number: int = 1
    flats: dict[int, str] = field(default_factory=lambda: {1: "Flat 1"})
    follow_up_s: float = FOLLOW_UP_S
    log: list[tuple[float, str, str]] = field(default_factory=list)  # (monotonic s, "station"|"server", line)
    open: dict[str, EvcsSession] = field(default_factory=dict)
    closed: list[EvcsSession] = field(default_factory=list)
    alive: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._link: SerialLink | None = None
        self._task: asyncio.Task | None = None
        self._lines = LineReader("runevcs")

    async def start(self) -> None:
        self._link = await asyncio.to_thread(SerialLink.open, self.port, self.baudrate)
        self._task = asyncio.create_task(self._run(), name="runevcs")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._link is not None:
            await self._link.close()
        self._task = self._link = None

    def lines(self, who: str | None = None) -> list[str]:
        return [line for _, w, line in self.log if who is None or w == who]

    async def _line(self, timeout: float | None) -> str | None:
        assert self._link is not None
        line = await self._lines.next(self._link, timeout)
        if line is not None:
            self.log.append((time.monotonic(), "station", line))
        return line

    async def _send(self, line: str) -> None:
        assert self._link is not None
        self.log.append((time.monotonic(), "server", line))
        await self._link.write(f"{line}\r\n".encode("ascii"))

    async def _run(self) -> None:
        n = self.station_number
        while True:
            parsed = parse_station_line(await self._line(None) or "")
            if parsed is None:
                continue
            kind, value = parsed
            if kind == "alive":
                self.alive[value] = time.monotonic()
            elif kind == "open":
                follow = parse_station_line(await self._line(self.follow_up_s) or "")
                if follow is None or follow[0] != "tag":
                    log.warning("runevcs: no Tag ID after 'Abrechnung auf'")
                    continue
                tag = follow[1]
                flat = self.flats.get(n)
                if flat is None:
                    await self._send(f"ERROR10_Lader{n}!")
                    continue
                try:
                    kwh = self.meter(flat)
                except MeterFailure:
                    await self._send(f"ERROR20_Lader{n}!")
                    continue
                session = EvcsSession(tag, n, flat, kwh, time.time())
                self.open[tag] = session
                await self._send(f"OK_Lader{n}!")
                ack = parse_station_line(await self._line(self.follow_up_s) or "")
                session.acknowledged = ack is not None and ack[0] == "ack"
            elif kind == "tag":
                follow = parse_station_line(await self._line(self.follow_up_s) or "")
                if follow is None or follow[0] != "done":
                    continue
                ending = self.open.get(value)
                if ending is None:
                    await self._send(f"ERROR30_Lader{n}!")
                    continue
                try:
                    kwh = self.meter(ending.flat)
                except MeterFailure:
                    await self._send(f"ERROR21_Lader{n}!")
                    continue
                ending.end_kwh, ending.end = kwh, time.time()
                self.closed.append(self.open.pop(value))
