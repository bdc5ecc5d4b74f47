"""Whole simulated stations (station.daemon.Station on emulated hardware) speaking MCSP over TCP
and over a serial link, and the 2018 dialect, to servers in the same process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcsp_support import PtyBridge

from station.servers.evcs2018 import Runevcs2018
from station.servers.mcsp import McspServer
from tests.stations import CARD, CARD7, TAGS, UNKNOWN, lcd, running_station, state_is, until

MCSP = {"backend.kind": "mcsp", "station.name": "Tankstelle1", "backend.mcsp.heartbeat_s": 5.0,
        "backend.mcsp.timeout_s": 3.0}


async def charge(st, card: str, wh: int) -> None:
    await st.world.tap(card)
    await state_is(st, "SuspendedEV")
    assert st.world.contactor_closed
    st.world.consume(wh)
    await st.world.tap(card)
    await state_is(st, "Available")
    assert not st.world.contactor_closed


@asynccontextmanager
async def mcsp_station(tmp_path, serial: PtyBridge | None = None, **overrides) -> AsyncIterator:
    """The reference server (TCP, or on the serial bridge) and a whole station on it, online."""
    server = McspServer(tags=TAGS, serial=serial.b if serial is not None else None)
    await server.start()
    try:
        url = serial.a if serial is not None else server.url
        async with running_station(tmp_path, {**MCSP, "backend.mcsp.url": url, **overrides}) as st:
            assert await st.backend.wait_ready(10)
            yield server, st
    finally:
        await server.close()


async def test_session_over_tcp_bills_exact_energy_and_refusal_shows_the_servers_message(tmp_path):
    async with mcsp_station(tmp_path) as (server, st):
        await charge(st, CARD, 1500)
        assert await st.flush(10)
        [rec] = server.sessions()
        assert (rec.tag, rec.apartment, rec.station, rec.energy_wh, rec.state, rec.stop_reason) == \
            (CARD, "Apartment 2", "Tankstelle1", 1500, "closed", "Local")
        [s] = st.store.sessions()
        assert (s.backend_session_id, rec.session_key) == (str(rec.id), s.key)
        assert (rec.start_time, rec.end_time) == (s.started_at, s.stopped_at)

        await st.world.tap(UNKNOWN)
        await until(lambda: "registered" in lcd(st), what="the server's message on the LCD")
        assert "not" in lcd(st) and not st.world.contactor_closed
        assert len(server.sessions()) == 1


async def test_session_over_a_serial_link_bills_exact_energy(tmp_path):
    bridge = PtyBridge()
    try:
        async with mcsp_station(tmp_path, serial=bridge) as (server, st):
            await charge(st, CARD7, 1500)
            assert await st.flush(10)
            assert [(r.tag, r.energy_wh, r.state) for r in server.sessions()] == [(CARD7, 1500, "closed")]
    finally:
        bridge.close()


async def test_sessions_finished_while_the_server_is_down_are_delivered_later_in_order(tmp_path):
    async with mcsp_station(tmp_path, **{"backend.offline_policy": "cached+local"}) as (server, st):
        await server.suspend()
        await charge(st, CARD, 1000)
        await charge(st, CARD7, 500)
        assert server.sessions() == [] and st.store.pending_messages() == 4  # START, STOP, START, STOP
        await server.resume()
        assert await st.flush(30)
        recs = server.sessions()
        assert [(r.tag, r.energy_wh, r.offline, r.state) for r in recs] == \
            [(CARD, 1000, True, "closed"), (CARD7, 500, True, "closed")]
        journal = st.store.sessions()
        assert [(r.start_time, r.end_time) for r in recs] == [(s.started_at, s.stopped_at) for s in journal]
        assert recs[0].end_time <= recs[1].start_time


async def test_evcs_serial_dialect_station_on_the_2018_server(tmp_path):
    bridge = PtyBridge()
    holder = {}
    server = Runevcs2018(bridge.b, meter=lambda flat: holder["st"].world.meter_wh / 1000)
    await server.start()
    overrides = {"backend.kind": "evcs-serial", "backend.evcs-serial.port": bridge.a,
                 "backend.evcs-serial.reply_timeout_s": 1.0}
    try:
        async with running_station(tmp_path, overrides) as st:
            holder["st"] = st
            assert await st.backend.wait_ready(10)
            await charge(st, CARD, 1500)
            assert await st.flush(10)
            [done] = server.closed
            assert (done.tag, done.energy_wh) == ("D6 4F C9 3B", 1500)
            assert [line for line in server.lines("station") if line != "LADER 1 lebt"] == \
                ["Abrechnung auf", "Tag ID = D6 4F C9 3B", "Verstanden", "Verstanden", "Tag ID = D6 4F C9 3B",
                 "total FERTIG"]
            assert server.died is None
    finally:
        await server.stop()
        bridge.close()


async def test_a_fault_reaches_the_server_with_what_is_wrong(tmp_path):
    """docs/safety.md rule 3: every backend is told; MCSP with Status, Error and Error-Info (§4.3)."""
    async with mcsp_station(tmp_path, **{"charging.contactor_settle_s": 0.2, "charging.contactor_recover_s": 1.0}) \
            as (server, st):
        st.world.inject("contactor-welded")
        await state_is(st, "Faulted")
        await until(lambda: any(r.get("Status") == "Faulted" for r in server.requests), what="a Faulted HEARTBEAT")
        beat = [r for r in server.requests if r.get("Status") == "Faulted"][-1]
        assert beat.get("Error") == "OtherError"
        assert beat.get("Error-Info").startswith("ContactorWelded: contactor welded")
        st.world.clear()
        await state_is(st, "Available", timeout=15)
        await until(lambda: server.requests[-1].get("Status") == "Available", what="an Available HEARTBEAT")
        assert server.requests[-1].get("Error") is None


async def test_a_scenario_cuts_the_link_of_an_mcsp_station_at_the_station(tmp_path):
    """Scenario step `backend up = false` on a station whose server is not the simulator's own:
    the link is cut at the station (station.backends.link.SWITCH), the session runs offline and
    is delivered late once the link is back."""
    from station.sim import scenario

    async with mcsp_station(tmp_path, **{"backend.offline_policy": "cached+local"}) as (server, st):
        steps = [{"action": "backend", "up": False}, {"action": "tap", "uid": CARD},
                 {"action": "expect", "state": "SuspendedEV", "within": 20}, {"action": "consume", "wh": 400},
                 {"action": "tap", "uid": CARD}, {"action": "expect", "state": "Available", "within": 20}]
        outcome = await scenario.run(st, scenario.parse({"settle_s": 0, "step": steps}))
        assert outcome.failures == [f"{st.store.pending_messages()} message(s) still undelivered after 0 s"]
        assert server.sessions() == [] and not st.charger.online
        await scenario.run(st, scenario.parse({"settle_s": 30, "step": [{"action": "backend", "up": True}]}))
        assert await st.flush(30)
        assert [(r.tag, r.energy_wh, r.offline) for r in server.sessions()] == [(CARD, 400, True)]
