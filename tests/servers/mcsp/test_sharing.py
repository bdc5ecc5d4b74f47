"""The MCSP server's rule for sharing the site limit (station/servers/mcsp/sharing.py), alone.

Stations here are models that obey their caps: a station learns its cap only in the reply to its
own request, offers at most that from then on, and reports its offer in its next request. The
properties hold for any order of requests, sessions starting and ending, and cars drawing less.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from station.servers.mcsp.sharing import Sharing

MIN = 6.0


class Station:
    """A station that obeys its caps, with a car that draws up to its own limit."""

    def __init__(self, name: str, car_max: float = math.inf) -> None:
        self.name, self.car_max = name, car_max
        self.active = False
        self.offered = 0.0  # what its pilot offers now

    @property
    def drawn(self) -> float:
        return min(self.offered, self.car_max) if self.active else 0.0

    def request(self, sharing: Sharing, now: float) -> float | None:
        """One exchange: report, session state, cap back; then offer at most the cap."""
        sharing.report(self.name, self.offered, self.drawn)
        sharing.set_active(self.name, self.active, now)
        cap = sharing.grant(self.name, now)
        assert cap is not None
        self.offered = cap if self.active else 0.0
        return cap


events = st.lists(st.tuples(st.integers(0, 7), st.sampled_from(["request", "request", "request", "toggle", "car"]),
                            st.floats(0, 40)), max_size=120)


@settings(max_examples=300, deadline=None)
@given(limit=st.floats(0, 200), n=st.integers(1, 8), steps=events)
def test_the_stations_never_offer_more_than_the_site_limit(limit, n, steps):
    sharing = Sharing(limit, min_current_a=MIN, rotation_s=30.0, clock=lambda: 0.0)
    stations = [Station(f"s{i}") for i in range(n)]
    now = 0.0
    for index, kind, x in steps:
        now += 1.0
        s = stations[index % n]
        if kind == "toggle":
            s.active = not s.active
            if not s.active:
                s.offered = 0.0  # a session that ends stops offering at once
        elif kind == "car":
            s.car_max = x
        else:
            cap = s.request(sharing, now)
            assert cap == 0 or MIN <= cap <= limit + 1e-9  # never a cap a pilot cannot signal
        assert sum(t.offered for t in stations) <= limit + 1e-6


@settings(max_examples=100, deadline=None)
@given(limit=st.floats(30, 100), legacy=st.integers(0, 3), n=st.integers(1, 6), order=st.permutations(range(6)))
def test_stations_that_do_not_report_are_counted_at_their_reserve(limit, legacy, n, order):
    sharing = Sharing(limit, min_current_a=MIN, unreported_a=16.0, clock=lambda: 0.0)
    for i in range(legacy):
        sharing.set_active(f"old{i}", True)  # an open session, never a report: it ignores caps
    stations = [Station(f"s{i}") for i in range(n)]
    for s in stations:
        s.active = True
    for _ in range(3):
        for i in order:
            if i < n:
                stations[i].request(sharing, 1.0)
            assert sum(t.offered for t in stations) <= max(0.0, limit - 16.0 * legacy) + 1e-6
    assert sharing.grant("old0" if legacy else "nobody") is None  # no cap for who would not understand it


def test_the_limit_is_shared_equally_and_given_back_when_a_car_draws_less():
    sharing = Sharing(32.0, min_current_a=MIN, headroom_a=1.0, clock=lambda: 0.0)
    a, b = Station("a"), Station("b")
    a.active = b.active = True
    for _ in range(3):
        a.request(sharing, 1.0)
        b.request(sharing, 1.0)
    assert a.offered == b.offered == 16.0
    a.car_max = 6.0  # a's car takes only 6 A (its battery is nearly full)
    for _ in range(4):
        a.request(sharing, 2.0)
        b.request(sharing, 2.0)
    assert a.offered == 7.0 and b.offered == 25.0  # a keeps what it draws plus headroom, b gets the rest
    a.active = False  # a's session ends
    a.offered = 0.0
    for _ in range(2):
        a.request(sharing, 3.0)
        b.request(sharing, 3.0)
    assert b.offered == 32.0


def test_a_new_session_gets_current_only_once_the_others_gave_it_up():
    sharing = Sharing(32.0, min_current_a=MIN, clock=lambda: 0.0)
    a, b = Station("a"), Station("b")
    a.active = True
    a.request(sharing, 0.0)
    assert a.offered == 32.0
    b.active = True
    assert b.request(sharing, 1.0) == 0.0  # a still offers 32 A: no room yet
    a.request(sharing, 2.0)  # a learns its new cap, 16 A ...
    assert a.offered == 16.0
    assert b.request(sharing, 3.0) == 0.0  # ... but has not reported it yet: a's committed stays 32 A
    a.request(sharing, 4.0)  # a reports 16 A
    assert b.request(sharing, 5.0) == 16.0


def test_more_cars_than_slots_take_turns_fairly():
    n, slots, rotation, dt = 5, 2, 60.0, 5.0
    sharing = Sharing(slots * MIN + 3.0, min_current_a=MIN, rotation_s=rotation, clock=lambda: 0.0)
    stations = [Station(f"s{i}") for i in range(n)]
    for s in stations:
        s.active = True
    served = dict.fromkeys((s.name for s in stations), 0.0)
    now = 0.0
    for _ in range(int(20 * rotation / dt)):
        now += dt
        for s in stations:
            s.request(sharing, now)
            assert sum(t.offered for t in stations) <= slots * MIN + 3.0 + 1e-6
        for s in stations:
            served[s.name] += dt if s.offered >= MIN else 0.0
        assert sum(1 for s in stations if s.offered >= MIN) <= slots
    assert min(served.values()) > 0  # every car charged
    # over 20 rotations, nobody got much more than its fair part: at most two turns (plus the hand-over) apart
    assert max(served.values()) - min(served.values()) <= 2 * rotation + 4 * dt
    assert sum(served.values()) >= 0.8 * slots * now  # and the slots were used
