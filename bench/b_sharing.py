"""Benchmark: sharing a site limit among 8 stations, the time until every station holds its share.

In the server's logic (station/servers/mcsp/sharing.py), with stations modelled
as the station's MCSP client behaves (sitelimit.py, client.py): each station
sends a HEARTBEAT every SHARED_HEARTBEAT_S (10 s) at its own phase, and one at
once when its offered current changes; it learns its cap in the reply to its
own request and offers it from then on. A virtual clock, so the figures are in
seconds of a real installation, independent of this machine's load; the
network round trip (milliseconds) is left out.

Scenarios, each repeated with random heartbeat phases: sessions start one by
one at 8 stations, then end one by one. After each event the time until every
station offers its final share (the steady state of the rule) is taken; the
worst and the median are reported, with the peak of the stations' offers
(never above the limit). Also the CPU cost of one `grant()` at 8 and at 1000
stations (the server decides anew at every request).
"""

from __future__ import annotations

import heapq
import random
import time

from bench.common import Result, percentile

LIMIT = 63.0
MIN = 6.0
N = 8


def _simulate(rng: random.Random, hb: float) -> tuple[list[float], list[float], float]:
    """One installation's evening: 8 sessions start a minute apart, then end a minute apart."""
    from station.servers.mcsp.sharing import Sharing

    sharing = Sharing(LIMIT, min_current_a=MIN, rotation_s=3600.0, clock=lambda: 0.0)
    names = [f"s{i}" for i in range(N)]
    active = dict.fromkeys(names, False)
    offered = dict.fromkeys(names, 0.0)
    next_beat = {n: rng.uniform(0, hb) for n in names}
    queue: list[tuple[float, int, str]] = []
    counter = iter(range(10**9))
    for n in names:
        heapq.heappush(queue, (next_beat[n], next(counter), n))
    peak = 0.0

    def request(name: str, t: float) -> None:
        nonlocal peak
        sharing.report(name, offered[name], offered[name])
        sharing.set_active(name, active[name], t)
        cap = sharing.grant(name, t) or 0.0
        new = cap if active[name] else 0.0
        if new != offered[name]:
            offered[name] = new
            heapq.heappush(queue, (t, next(counter), name))  # a changed offer is reported at once
        peak = max(peak, sum(offered.values()))

    def settled(t: float) -> bool:
        targets = sharing.plan(t)
        return all(abs(offered[n] - (targets.get(n, 0.0) if active[n] else 0.0)) < 1e-9 for n in names)

    def run(until: float | None, since: float | None = None) -> float:
        """Process requests up to `until`, or (since an event) until the shares settle."""
        while queue:
            t, _, name = queue[0]
            if until is not None and t >= until:
                return 0.0
            heapq.heappop(queue)
            if abs(t - next_beat[name]) < 1e-12:  # its periodic heartbeat: schedule the next
                next_beat[name] = t + hb
                heapq.heappush(queue, (next_beat[name], next(counter), name))
            request(name, t)
            if since is not None and settled(t):
                return t - since
            if since is not None and t - since > 3600:
                break
        return float("nan")

    starts, stops = [], []
    now = 0.0
    for name in names:
        now += 60.0
        run(until=now)
        active[name] = True
        request(name, now)  # its START
        starts.append(0.0 if settled(now) else run(until=None, since=now))
    for name in names:
        now += 60.0
        run(until=now)
        active[name] = False
        offered[name] = 0.0  # the station stops offering before it sends END
        request(name, now)  # its END
        stops.append(0.0 if settled(now) else run(until=None, since=now))
    return starts, stops, peak


def _grant_cost(n: int, calls: int) -> float:
    from station.servers.mcsp.sharing import Sharing

    sharing = Sharing(n * 4.0, min_current_a=MIN)
    for i in range(n):
        sharing.report(f"s{i}", 0.0, 0.0)
        sharing.set_active(f"s{i}", i % 2 == 0, 0.0)
    t0 = time.process_time()
    for k in range(calls):
        sharing.grant(f"s{k % n}", float(k))
    return (time.process_time() - t0) / calls * 1e6


def run(quick: bool) -> Result:
    from station.backends.mcsp.sitelimit import SHARED_HEARTBEAT_S

    res = Result("sharing", f"MCSP site limit: {N} stations, {LIMIT:g} A, time until every station holds its share")
    trials = 20 if quick else 200
    rng = random.Random(20)
    starts: list[float] = []
    stops: list[float] = []
    peak = 0.0
    for _ in range(trials):
        s, e, p = _simulate(rng, SHARED_HEARTBEAT_S)
        starts += s
        stops += e
        peak = max(peak, p)
    res.figures["heartbeat_s"] = SHARED_HEARTBEAT_S
    res.figures["trials"] = trials
    res.figures["start"] = {"p50_s": round(percentile(starts, 50), 1), "max_s": round(max(starts), 1)}
    res.figures["stop"] = {"p50_s": round(percentile(stops, 50), 1), "max_s": round(max(stops), 1)}
    res.figures["peak_offered_a"] = round(peak, 1)
    res.figures["grant_us"] = {"8 stations": round(_grant_cost(8, 2000 if quick else 20000), 1),
                               "1000 stations": round(_grant_cost(1000, 50 if quick else 500), 1)}
    res.notes += [
        f"A virtual clock: stations heartbeat every {SHARED_HEARTBEAT_S:g} s at random phases, and at once when "
        "their offer changes; the network round trip is left out. Times are from the START (or END) to the "
        "moment every station offers the share the rule settles on.",
        "A new session waits for the others to lower their offers and report them before it gets its share: "
        "never more than the limit together (peak above), at the price of up to about two heartbeat intervals.",
        "grant_us: CPU per request of the server's decision (it decides anew at every request).",
    ]
    return res
