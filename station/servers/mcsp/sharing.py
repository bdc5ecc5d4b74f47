"""Sharing the building's supply among the stations that charge: the rule, without I/O.

Theory of operation
-------------------
The server knows a site limit: amps per phase that all its stations together
may draw (the house connection's fuse, less what the building needs). Each
station reports on its HEARTBEAT what its pilot offers (`Current-Offered`) and
what the car draws (`Current-Drawn`); the server knows from its ledger which
stations have an open session. `Sharing` turns that into a cap per station
(`Current-Limit` on the station's replies, docs/mcsp.md 4.5):

1. Stations with an open session that never reported their currents (older
   firmware: they ignore caps) cannot be controlled; each is counted at
   `unreported_a`, taken off the limit first.
2. The rest of the limit feeds whole slots of `min_current_a` (6 A: the least
   a pilot can signal). With more stations than slots, the slots go round: a
   station keeps its slot at least `rotation_s`, then yields it to one that
   has been served less (served time is counted per session), so over time
   every waiting car charges; the others are paused (cap 0).
3. Each served station gets the minimum, and what is left is shared equally
   ("water filling") up to each one's demand: a car that draws clearly less
   than it is offered (full, cold battery, its own limit) needs only what it
   draws plus `headroom_a`; the rest goes to the others. When it draws (nearly)
   what it is offered again, its demand is unbounded again.
4. Moving current from one station to another is not instant: a station
   learns its cap only in the reply to its own request, and reports its new
   offer in the request after. So what a station may be offering at any
   moment is at most the larger of what it last reported and the cap last
   sent to it (`committed`). `grant(name)` gives the asking station its
   target, but never more than the limit less everybody else's committed
   current: a cap is lowered at once, and raised only out of room that is
   really free. Until a station confirms that it offers less, its old current
   still counts. Stations that obey their caps therefore never offer more
   than the limit together, at any moment.

`plan()` decides the targets (slots, rotation, water filling) for everyone;
`grant()` is called for the station whose reply is being sent. Caps are 0 or
at least `min_current_a`, in steps of 0.1 A, rounded down.
`tests/servers/mcsp/test_sharing.py` checks with hypothesis that the offers never exceed
the site limit (with stations that adopt caps late and in any order), that no
station given current gets less than the minimum, and that waiting stations
are served in turn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

STEP_A = 0.1


@dataclass
class StationLoad:
    """What the server knows of one station (amps per phase)."""

    active: bool = False  # it has an open session
    reports: bool = False  # it reported its currents: it knows Current-Limit
    offered_a: float = 0.0  # as last reported
    drawn_a: float = 0.0
    cap_a: float | None = None  # the cap last sent to it
    served_s: float = 0.0  # time holding a slot during this session
    slot_since: float | None = None  # when it got its slot (None: it has none)
    waiting_since: float | None = None  # when it started waiting for one


def _floor(amps: float) -> float:
    """Rounded down to the step (0.1 A), as a clean decimal."""
    return round(math.floor(amps / STEP_A + 1e-9) * STEP_A, 1)


class Sharing:
    """The site limit and the stations' loads; `reshare()` decides every cap."""

    def __init__(self, site_limit_a: float, *, min_current_a: float = 6.0, rotation_s: float = 600.0,
                 unreported_a: float = 16.0, headroom_a: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if site_limit_a < 0 or min_current_a <= 0 or rotation_s < 0 or unreported_a < 0 or headroom_a < 0:
            raise ValueError("site limit, currents and times must not be negative (the minimum above 0)")
        self.site_limit_a = float(site_limit_a)
        self.min_current_a = float(min_current_a)
        self.rotation_s = float(rotation_s)
        self.unreported_a = float(unreported_a)
        self.headroom_a = float(headroom_a)
        self.clock = clock
        self.stations: dict[str, StationLoad] = {}
        self.available_a = self.site_limit_a  # the limit less the reserves, at the last plan
        self.targets: dict[str, float] = {}
        self._last = clock()

    # -- what the server learns -------------------------------------------------------------------
    def station(self, name: str) -> StationLoad:
        load = self.stations.get(name)
        if load is None:
            load = self.stations[name] = StationLoad()
        return load

    def report(self, name: str, offered_a: float, drawn_a: float) -> None:
        """A station's HEARTBEAT: what its pilot offers and what its car draws."""
        load = self.station(name)
        load.reports = True
        load.offered_a, load.drawn_a = max(0.0, offered_a), max(0.0, drawn_a)

    def set_active(self, name: str, active: bool, now: float | None = None) -> None:
        """The station has an open session (True), or none (False: its served time is forgotten)."""
        now = self.clock() if now is None else now
        load = self.station(name)
        if active and not load.active:
            load.served_s, load.slot_since, load.waiting_since = 0.0, None, now
        if not active:
            load.slot_since = load.waiting_since = None
            load.served_s = 0.0
        load.active = active

    # -- the rule -------------------------------------------------------------------------------------
    def demand(self, load: StationLoad) -> float:
        """What a served station could use: unbounded, unless its car draws clearly less than offered."""
        # "Clearly less": by more than half the headroom, so that a car held at what it draws plus the
        # headroom stays held, and one that draws up to its cap is offered more again.
        if load.offered_a >= self.min_current_a and load.drawn_a + self.headroom_a / 2 < load.offered_a:
            return max(self.min_current_a, load.drawn_a + self.headroom_a)
        return math.inf

    def plan(self, now: float | None = None) -> dict[str, float]:
        """Every station's target now (amps per phase; 0 = paused), before the room check of `grant`."""
        now = self.clock() if now is None else now
        for load in self.stations.values():  # served time since the last decision (current delivered)
            if load.cap_a is not None and load.cap_a >= self.min_current_a and load.active:
                load.served_s += max(0.0, now - self._last)
        self._last = now
        shared = {n: s for n, s in self.stations.items() if s.active and s.reports}
        legacy = sum(1 for s in self.stations.values() if s.active and not s.reports)
        self.available_a = max(0.0, self.site_limit_a - self.unreported_a * legacy)
        slots = int(self.available_a // self.min_current_a + 1e-9)
        chosen = self._choose(shared, slots, now)
        self.targets = self._fill(shared, chosen, self.available_a)
        return self.targets

    def grant(self, name: str, now: float | None = None) -> float | None:
        """The cap to send to `name` in the reply going out now, or None for a station that does not
        report its currents (it would not understand a cap)."""
        targets = self.plan(now)
        load = self.stations.get(name)
        if load is None or not load.reports:
            return None
        others = sum(self.committed(n) for n, s in self.stations.items() if n != name and s.reports)
        cap = _floor(min(targets.get(name, 0.0), max(0.0, self.available_a - others)))
        if cap < self.min_current_a:
            cap = 0.0
        load.cap_a = cap
        return cap

    def committed(self, name: str) -> float:
        """What `name` may be offering right now: the larger of its last report and its last cap.
        Without a session a station offers nothing it was not given: a report of a station that
        never had a cap (a made-up name, a confused device) cannot take the others' current."""
        s = self.stations[name]
        if not s.active:
            return min(s.offered_a, s.cap_a or 0.0)
        return max(s.offered_a, s.cap_a or 0.0)

    def _choose(self, shared: dict[str, StationLoad], slots: int, now: float) -> list[str]:
        """Who holds a slot: those within their rotation time first, then the least served."""
        def key(name: str) -> tuple[bool, float, float]:
            s = shared[name]
            protected = s.slot_since is not None and now - s.slot_since < self.rotation_s
            return (not protected, s.served_s, s.waiting_since if s.waiting_since is not None else now)

        order = sorted(shared, key=key)
        chosen = order[:slots]
        for i, name in enumerate(order):
            s = shared[name]
            if i < slots and s.slot_since is None:
                s.slot_since, s.waiting_since = now, None
            elif i >= slots and s.slot_since is not None:
                s.slot_since, s.waiting_since = None, now
        return chosen

    def _fill(self, shared: dict[str, StationLoad], chosen: list[str], available: float) -> dict[str, float]:
        """The minimum each, then the rest equally up to each one's demand (water filling: the
        smallest demands are met first, the others share what is left equally)."""
        targets = {name: 0.0 for name in shared}
        room = available - self.min_current_a * len(chosen)
        wants = sorted(chosen, key=lambda n: self.demand(shared[n]))
        for i, name in enumerate(wants):
            share = room / (len(wants) - i)
            extra = min(share, self.demand(shared[name]) - self.min_current_a)
            room -= extra
            targets[name] = _floor(self.min_current_a + extra)
        return targets

    def committed_a(self) -> float:
        """What all stations may be offering at most right now (reports, caps and reserves)."""
        total = sum(self.committed(n) for n, s in self.stations.items() if s.reports)
        return total + self.unreported_a * sum(1 for s in self.stations.values() if s.active and not s.reports)
