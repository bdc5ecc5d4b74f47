"""How many refused STARTs a station may have: the reference server's answer to tag guessing, without I/O.

A station with a valid secret could ask START for one key after another and
learn from 401 (unknown), 403 (known, other station) and OK which keys exist:
22,779 guesses in 5 s on one connection. A key that exists is a card that
can be cloned (docs/security.md §2.1).

What a real station ever needs: a START is a driver's tap, and a refusal a
tap with a card the server does not take. Someone trying every card in a
wallet makes a few a minute; the reader reports a card again only after it
has left the field. A station that comes back from an outage delivers its
offline sessions one after another, and some may be refused. Ten refusals a
minute is far above all that; ten thousand a day is still nothing a guesser
can use on 4-byte UIDs.

The rule: a station with `PER_STATION` (10) refused STARTs within `WINDOW_S`
(a minute), or the server after `OVERALL` (100) from all stations together
(names are free text without a `[stations]` table, and one host could use
many), answers that station's (or every) *new* START with 503 until the
oldest of those refusals is a minute old. A START whose Session-Key the
server knows is answered as before (it learns nothing new). 503 is what
every station of this protocol, old or new, already treats as "not now":
at a tap the offline policy decides, a START delivered later is kept and
offered again, nothing is dropped (docs/mcsp.md §8). A new 4xx code would
be a refusal to older stations, and a dropped delivery.

Refusals are counted per station name; at most `STATIONS_MAX` names are
remembered (the oldest forgotten first): the overall budget holds when a
guesser makes up names.
"""

from __future__ import annotations

from collections import deque

PER_STATION = 10
OVERALL = 100
WINDOW_S = 60.0
STATIONS_MAX = 10_000
BUSY_MESSAGE = "Too many refused STARTs; try again later"


class RefusalBudget:
    """Refused STARTs per station and overall, in a sliding window. `now` is monotonic seconds."""

    def __init__(self, per_station: int = PER_STATION, overall: int = OVERALL, window_s: float = WINDOW_S) -> None:
        self.per_station, self.overall, self.window_s = per_station, overall, window_s
        self._by_station: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=overall)

    def over(self, station: str, now: float) -> str | None:
        """Why this station's new STARTs are answered 503 now (None: they are not)."""
        mine = self._by_station.get(station)
        if mine is not None and len(mine) >= self.per_station and now - mine[0] < self.window_s:
            return f"{self.per_station} refused STARTs from this station within a minute"
        if len(self._all) >= self.overall and now - self._all[0] < self.window_s:
            return f"{self.overall} refused STARTs within a minute"
        return None

    def refused(self, station: str, now: float) -> None:
        self._all.append(now)
        mine = self._by_station.pop(station, None)  # re-inserted last: the dict's order is the age of the name
        if mine is None:
            mine = deque(maxlen=self.per_station)
            if len(self._by_station) >= STATIONS_MAX:
                self._by_station.pop(next(iter(self._by_station)))
        mine.append(now)
        self._by_station[station] = mine
