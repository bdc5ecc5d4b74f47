"""Reconnecting: backoff pacing, a link that died silently, and a station that says it is offline
while it goes on charging under the offline policy."""

from __future__ import annotations

import asyncio
import random

import pytest
from mcsp_support import FakeStation

from station.backends.mcsp.client import McspBackend
from station.backoff import Backoff
from station.servers.mcsp import McspServer
from tests.stations import CARD, TAGS, lcd, running_station, state_is, until


# --------------------------------------------------------------------------- backoff
class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_grows_by_its_factor_up_to_the_cap():
    top = Backoff(initial=1.0, cap=60.0, factor=2.0, rng=FixedRandom(0.999999))
    assert [round(top.next()) for _ in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    bottom = Backoff(initial=1.0, cap=60.0, factor=2.0, rng=FixedRandom(0.0))
    assert [bottom.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_backoff_jitter_stays_within_half_to_full_base_and_spreads():
    b = Backoff(initial=1.0, cap=16.0, rng=random.Random(7))
    for failures in range(12):
        base = min(16.0, 2.0 ** failures)
        draws = []
        for _ in range(200):
            b.failures = failures
            draws.append(b.next())
        assert all(base / 2 <= d <= base for d in draws), (failures, min(draws), max(draws))
        assert max(draws) - min(draws) > base / 4  # jittered: a hundred stations do not retry in step


def test_backoff_reset_starts_again_at_the_initial_delay():
    b = Backoff(initial=0.5, cap=30.0, rng=random.Random(1))
    for _ in range(10):
        b.next()
    assert b.next() >= 15.0
    b.reset()
    assert b.failures == 0 and 0.25 <= b.next() <= 0.5


def test_backoff_after_a_very_long_outage_stays_at_the_cap():
    # Some 1000 failures in a row (hours at the cap) made 2.0 ** failures overflow, and the
    # OverflowError ended the link keeper and the deliverer for good.
    b = Backoff(initial=1.0, cap=60.0, rng=random.Random(3))
    b.failures = 5000
    assert 30.0 <= b.next() <= 60.0


# --------------------------------------------------------------------------- a silently dead link
class Blackhole:
    """A TCP relay to the server that can go silent: while `dead`, bytes in both directions are
    swallowed and the connections stay open, as when a router or a cable dies without a reset."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.dead = False
        self.swallowed: list[tuple[str, bytes]] = []
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())
        try:
            ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pump(reader, uwriter, "up"), self._pump(ureader, writer, "down"))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for w in (writer, uwriter):
                w.close()

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: str) -> None:
        while True:
            data = await src.read(4096)
            if not data:
                dst.close()
                return
            if self.dead:
                self.swallowed.append((way, data))
                continue
            dst.write(data)
            await dst.drain()

    def heartbeats_swallowed(self) -> int:
        return sum(d.count(b"HEARTBEAT") for way, d in self.swallowed if way == "up")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def relay():
    server = McspServer(tags=TAGS)
    await server.start()
    hole = Blackhole(server.port)
    url = await hole.start()
    yield server, hole, url
    await hole.close()
    await server.close()


async def test_mcsp_client_notices_a_silently_dead_link_at_the_first_unanswered_heartbeat(relay):
    server, hole, url = relay
    station = FakeStation()
    b = McspBackend(url, "Tankstelle1", heartbeat_s=1.0, timeout_s=0.5, backoff=Backoff(initial=0.2, cap=1.0))
    await b.start(station)
    try:
        assert await b.wait_ready(10)
        before = len(server.requests)
        await until(lambda: len(server.requests) > before, what="a heartbeat through the relay")
        hole.dead = True
        await until(lambda: not b.online, timeout=30, what="the link noticed dead")
        # Noticed at the first HEARTBEAT that got no answer: within heartbeat_s + timeout_s,
        # i.e. within two heartbeat intervals whenever timeout_s <= heartbeat_s.
        assert hole.heartbeats_swallowed() == 1
        assert station.links[-1] is False
        hole.dead = False
        await until(lambda: b.online, timeout=30, what="the link back")  # reconnects on a fresh connection
    finally:
        await b.close()


async def test_station_says_offline_and_charges_on_under_the_offline_policy(relay, tmp_path):
    server, hole, url = relay
    overrides = {"backend.kind": "mcsp", "station.name": "Tankstelle1", "backend.mcsp.url": url,
                 "backend.mcsp.heartbeat_s": 5.0, "backend.mcsp.timeout_s": 1.0, "backend.offline_policy": "cached",
                 "lcd.cols": 20, "lcd.rows": 4}
    async with running_station(tmp_path, overrides) as st:
        assert await st.backend.wait_ready(10)
        await st.world.tap(CARD)  # online: accepted, and cached
        await state_is(st, "SuspendedEV")
        st.world.set_load(22000)
        await state_is(st, "Charging")
        assert "offline" not in lcd(st).lower()
        # The status change goes out as a HEARTBEAT of its own; let it through before the link dies,
        # so that the one swallowed below is the one that must reveal the dead link.
        await until(lambda: any(r.get("Status") == "Charging" for r in server.requests), what="the Charging status")
        hole.dead = True
        await until(lambda: not st.charger.online, timeout=30, what="the station noticing the dead link")
        assert hole.heartbeats_swallowed() <= 1
        await until(lambda: "offline" in lcd(st).lower(), what="the LCD saying offline")
        assert "offline" in st.status_line()
        # Charging goes on: the contactor stays closed and the meter keeps counting.
        assert st.world.contactor_closed and st.charger.state.value == "Charging"
        wh = st.charger.reading.energy_wh
        await until(lambda: st.charger.reading.energy_wh > wh + 5, what="energy still flowing")
        st.world.set_load(0)
        await st.world.tap(CARD)  # the driver's own card stops it offline
        await state_is(st, "Available")
        await st.world.tap(CARD)  # and starts a new one offline: a cached card
        await state_is(st, "SuspendedEV")
        st.world.consume(321)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        journal = st.store.sessions()
        assert [s.authorized_offline for s in journal] == [False, True]
        assert all(s.state == "stopped" for s in journal) and st.store.pending_messages() == 3  # STOP, START, STOP
        hole.dead = False
        assert await st.flush(60)
        await until(lambda: st.charger.online, timeout=30, what="online again")
        await until(lambda: "offline" not in lcd(st).lower(), what="the LCD no longer saying offline")
        recs = server.sessions()
        assert [(r.session_key, r.energy_wh, r.offline, r.state) for r in recs] == \
            [(s.key, s.energy_wh, s.authorized_offline, "closed") for s in journal]
        assert recs[1].energy_wh == 321 and recs[0].energy_wh > 5
