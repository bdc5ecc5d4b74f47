"""Several stations on one reference server with a site limit: each station's share, over the wire.

The stations are the station's real MCSP client (McspBackend) on the reference server over TCP;
what the core does with a cap (offer it, report what the car draws) is played by a small double
of its StationControl here, so that many stations fit in one test (tests/hardware/test_controller_wiring.py
runs a whole station with a charge controller on a server with a site limit). The server logs every share it
gives; the test checks each one and that the stations together never offered more than the limit.
Also: old stations and old servers keep working (headers they do not know are ignored).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

import pytest

from station.backends.mcsp import codec
from station.backends.mcsp.client import McspBackend
from station.backoff import Backoff
from station.core.model import MessageKind
from station.servers.mcsp import McspServer
from station.servers.mcsp.sharing import Sharing
from tests.mcsp_support import FakeStation, item, session
from tests.stations import until

LIMIT = 32.0


@dataclass
class ChargingStation(FakeStation):
    """A station double that obeys its cap, as the core does: the cap arrives as its current limit
    (StationControl.set_current_limit); with a session it offers the cap, and reports what it offers
    and what its car draws."""

    car_max: float = math.inf
    running: object = None  # the open Session, if any
    offered: float = 0.0
    backend: McspBackend | None = None

    def current_session(self):
        return self.running

    def set_current_limit(self, amps: float | None) -> None:
        self.apply(amps)

    def apply(self, cap: float | None = None) -> None:
        assert self.backend is not None
        cap = self.backend.site.cap_a if cap is None else cap
        self.offered = (cap or 0.0) if self.running is not None else 0.0
        self.backend.report_current(self.offered, min(self.offered, self.car_max))


async def start_stations(url: str, n: int) -> list[ChargingStation]:
    stations = []
    for i in range(n):
        st = ChargingStation(name=f"station-{i + 1}")
        b = McspBackend(url, st.name, timeout_s=3.0, heartbeat_s=0.2, backoff=Backoff(initial=0.05, cap=0.2))
        st.backend = b
        await b.start(st)  # the backend hands the server's cap to set_current_limit
        assert await b.wait_ready(10)
        st.apply(0.0)
        stations.append(st)
    return stations


async def begin(st: ChargingStation, n: int) -> None:
    assert st.backend is not None
    s = session(n, tag=f"TAG{n:04d}")
    result = await st.backend.authorize(s.id_tag, s)
    assert result.accepted
    st.running = s
    st.apply()


async def end(st: ChargingStation, n: int) -> None:
    assert st.backend is not None
    st.running = None
    st.apply(0.0)  # the core stops offering before it closes the session
    s = session(n, tag=f"TAG{n:04d}", stop=20_000)
    await st.backend.deliver(item(MessageKind.STOP, n), s)


async def shares(stations: list[ChargingStation], expected: list[float], what: str) -> None:
    await until(lambda: [st.offered for st in stations] == expected, 20.0,
                f"{what}: shares {expected} (now {[st.offered for st in stations]})")


async def test_several_stations_share_the_site_limit(caplog):
    caplog.set_level(logging.INFO, logger="station.servers.mcsp.service")
    server = McspServer()
    server.share_site_limit(Sharing(LIMIT, min_current_a=6.0, headroom_a=1.0))
    await server.start()
    stations = await start_stations(server.url, 4)
    peak = 0.0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, sum(st.offered for st in stations))
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(watch())
    try:
        await shares(stations, [0, 0, 0, 0], "nobody charges")
        await begin(stations[0], 1)
        await shares(stations, [32, 0, 0, 0], "one car takes it all")
        await begin(stations[1], 2)
        await shares(stations, [16, 16, 0, 0], "two cars")
        await begin(stations[2], 3)
        await begin(stations[3], 4)
        await shares(stations, [8, 8, 8, 8], "four cars")
        stations[0].car_max = 3.0  # its car takes 3 A: it keeps 4 A (3 + 1 headroom, but at least 6)
        stations[0].apply()
        await shares(stations, [6, 8.6, 8.6, 8.6], "one car draws less")
        await end(stations[1], 2)
        await shares(stations, [6, 0, 13, 13], "a session ends")
    finally:
        watcher.cancel()
        for st in stations:
            assert st.backend is not None
            await st.backend.close()
        await server.close()
    assert peak <= LIMIT  # never more than the limit together, also while shares moved
    lines = [r.getMessage() for r in caplog.records if "site limit" in r.getMessage()]
    assert any("station-3 may offer 13 A" in line for line in lines)  # the server reports each share


async def test_more_cars_than_the_limit_can_feed_wait_their_turn():
    server = McspServer()
    server.share_site_limit(Sharing(12.0, min_current_a=6.0, rotation_s=0.5))
    await server.start()
    stations = await start_stations(server.url, 3)
    try:
        for i, st in enumerate(stations):
            await begin(st, i + 1)
        served: set[str] = set()
        deadline = asyncio.get_running_loop().time() + 20
        while len(served) < 3 and asyncio.get_running_loop().time() < deadline:
            assert sum(st.offered for st in stations) <= 12.0
            assert sum(1 for st in stations if st.offered > 0) <= 2  # two slots of 6 A
            served |= {st.name for st in stations if st.offered >= 6.0}
            await asyncio.sleep(0.01)
        assert served == {"station-1", "station-2", "station-3"}  # each took its turn
    finally:
        for st in stations:
            assert st.backend is not None
            await st.backend.close()
        await server.close()


async def test_an_old_station_gets_no_cap_and_is_counted_at_its_reserve():
    server = McspServer()
    sharing = Sharing(LIMIT, min_current_a=6.0, unreported_a=16.0)
    server.share_site_limit(sharing)
    # An old station: its START and HEARTBEAT carry no currents; its replies carry no cap.
    reply = server.handle(codec.request(codec.START, name="old", key="AA", session_key="k1"))
    assert reply.ok and reply.get("Current-Limit") is None
    # A new one gets what is left beside the old one's reserve.
    server.handle(codec.request(codec.START, name="new", key="BB", session_key="k2"))
    reply = server.handle(codec.request(codec.HEARTBEAT, name="new", current_offered="0", current_drawn="0"))
    assert reply.get("Current-Limit") == "16"
    bad = server.handle(codec.request(codec.HEARTBEAT, name="new", current_offered="lots"))
    assert bad.code == 400


async def test_a_server_without_a_limit_sends_no_cap_and_ignores_the_currents():
    server = McspServer()
    await server.start()
    st = (await start_stations(server.url, 1))[0]
    try:
        await begin(st, 1)
        assert st.backend is not None and st.backend.site.cap_a is None and st.offered == 0
        assert any(r.get("Current-Offered") == "0" for r in server.requests)  # reported, and harmless
    finally:
        assert st.backend is not None
        await st.backend.close()
        await server.close()


@pytest.mark.parametrize("raw, kept", [("16", 16.0), ("6.5", 6.5), ("0", 0.0), ("-3", None), ("16A", None)])
def test_the_station_reads_the_cap_or_ignores_it(raw, kept):
    from station.backends.mcsp.sitelimit import SiteLimit

    site = SiteLimit()
    assert site.take(codec.ok(current_limit=raw)) == kept
    assert site.take(codec.ok()) is None and site.cap_a == kept  # a reply without a cap changes nothing
    assert site.take(codec.error(500, "x", current_limit="10")) is None  # only OK replies carry caps


def test_the_server_command_takes_a_site_limit(capsys):
    from station.servers.mcsp.cli import build_parser, main, site_sharing

    sharing = site_sharing(build_parser().parse_args(["--site-limit-a", "63", "--rotation-s", "300"]))
    assert sharing is not None and sharing.site_limit_a == 63 and sharing.rotation_s == 300 and sharing.min_current_a == 6
    assert site_sharing(build_parser().parse_args([])) is None
    assert main(["--site-limit-a", "5"]) == 2  # below the minimum current: no station could ever charge
    assert "--min-current-a" in capsys.readouterr().err
