"""Whole stations (`kind = "evcs-serial"`, the product's timing) against a server that behaves as
the deployed 2018 listener does, over a lossy line: what a lost line does to billing, and that
`station sessions` (text, --json, --csv) and the status page show it with the energy at stake."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace

from mcsp_support import PtyBridge

from station import sessionlist
from station.cli import main
from station.servers.evcs2018 import MeterFailure, Runevcs2018
from station.sim import scenario
from tests.stations import CARD, lcd, running_station, state_is, until

PAGE = {"status_page.enabled": True, "status_page.listen": "127.0.0.1:0"}
WIRE = "D6 4F C9 3B"  # CARD as the 2018 server stores it


@asynccontextmanager
async def evcs_station(tmp_path, **overrides) -> AsyncIterator[SimpleNamespace]:
    """The 2018-like server on a lossy pty line, reading the station's own meter as its apartment
    meter (so its figures and the journal's can be compared), and a whole station on it, online."""
    bridge = PtyBridge()
    rig = SimpleNamespace(st=None, bridge=bridge, meter_fails=False)

    def apartment_meter(flat: str) -> float:
        if rig.meter_fails:
            raise MeterFailure(flat)
        return rig.st.world.meter_wh / 1000

    rig.server = Runevcs2018(bridge.b, meter=apartment_meter)
    await rig.server.start()
    config = {"backend.kind": "evcs-serial", "backend.evcs-serial.port": bridge.a, **PAGE, **overrides}
    try:
        async with running_station(tmp_path, config) as st:
            rig.st = st
            assert await st.backend.wait_ready(10)
            yield rig
    finally:
        await rig.server.stop()
        bridge.close()


async def start_charging(st, card: str = CARD) -> None:
    await st.world.tap(card)
    await state_is(st, "SuspendedEV", 30)  # the 2018 exchange takes seconds when a line is lost
    assert st.world.contactor_closed


async def stop_charging(st, card: str = CARD) -> None:
    await st.world.tap(card)
    await state_is(st, "Available", 30)


async def charge(st, wh: int, server: Runevcs2018 | None = None) -> None:
    await start_charging(st)
    if server is not None:  # the server has read its meter (it does after Verstanden)
        await until(lambda: server.open.get(WIRE) and server.open[WIRE].start_kwh is not None, 10, "start reading")
    st.world.consume(wh)
    await stop_charging(st)


async def page(st, path: str) -> str:
    """GET a status page path (no password: tags masked)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", st.status_page._server.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 20)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return body.decode()


def listed(state_dir, capsys) -> tuple[str, list[dict], list[dict]]:
    """`station sessions` as text, --json and --csv (the CSV as dicts)."""
    assert main(["sessions", "--state-dir", str(state_dir)]) == 0
    text = capsys.readouterr().out
    assert main(["sessions", "--state-dir", str(state_dir), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert main(["sessions", "--state-dir", str(state_dir), "--csv"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(",".join(sessionlist.FIELDS[:12]))  # the old columns first, in order
    return text, rows, list(csv.DictReader(io.StringIO(out)))


async def test_a_lost_ok_no_longer_stops_the_server_and_no_session_is_lost_after_it(tmp_path, capsys):
    async with evcs_station(tmp_path) as rig:
        rig.bridge.lose("b->a", "OK_Lader1!")
        await charge(rig.st, 500, rig.server)
        assert rig.bridge.lost == [("b->a", b"OK_Lader1!\r\n")]
        await charge(rig.st, 700, rig.server)
        assert await rig.st.flush(30)
        await until(lambda: len(rig.server.closed) == 2, 10, "the server's rows closed")
        assert rig.server.died is None
        # Both sessions billed in full; the row the lost OK created has no start reading (bills nothing).
        assert [r.energy_wh for r in rig.server.closed] == [500, 700]
        assert [r.start_kwh for r in rig.server.rows if r not in rig.server.closed] == [None]
        assert [s.energy_wh for s in rig.st.store.sessions()] == [500, 700]
    text, rows, table = listed(tmp_path, capsys)
    assert [(r["energy_wh"], r["end_acknowledged"], r["possibly_lost"], r["at_stake_wh"]) for r in rows] == \
        [(500, False, None, 0), (700, False, None, 0)]
    assert text.count("sent, not acknowledged") == 2 and "LOST" not in text


async def test_a_lost_end_and_a_late_start_are_shown_with_the_energy_at_stake(tmp_path, capsys):
    """The line is cut (scenario step `backend up = false`) while session 1 ends: its END (800 Wh)
    is lost, and the station learns it when session 2's START gets no reply. Session 2 charges
    under the offline policy and is opened late when the line is back: of its 300 Wh the server
    bills the last 100."""
    async with evcs_station(tmp_path) as rig:
        st = rig.st
        await start_charging(st)
        st.world.consume(800)
        await scenario.run(st, scenario.parse({"settle_s": 0, "step": [{"action": "backend", "up": False}]}))
        await stop_charging(st)
        await until(lambda: st.store.pending_messages() == 0, 20, "the END sent (into the cut line)")
        first = st.store.sessions()[0]
        assert first.extra["delivered"] and "end_possibly_lost" not in first.extra  # nothing seen down yet

        await start_charging(st)  # no reply: the offline policy lets the card charge
        await until(lambda: "end_possibly_lost" in st.store.session(first.id).extra, 20, "the END flagged")
        st.world.consume(200)
        await until(lambda: st.charger.reading and st.charger.reading.energy_wh == st.world.meter_wh, 10, "a reading")
        await st.world.backend_link(True)
        second = st.store.sessions()[1]
        await until(lambda: st.store.session(second.id).backend_session_id, 60, "the late START")
        await until(lambda: rig.server.open[WIRE].start_kwh is not None, 10, "the server's start reading")
        st.world.consume(100)
        await stop_charging(st)
        assert await st.flush(30)
        await until(lambda: rig.server.closed, 10, "the server's row closed")
        assert [r.energy_wh for r in rig.server.closed] == [100]  # session 1's row stays open: never billed
        assert rig.server.died is None

        html = await page(st, "/")
        assert "POSSIBLY LOST" in html and "0.800 kWh" in html and "late START" in html and "0.200 kWh" in html
        stake = {r["id"]: r["at_stake_wh"] for r in csv.DictReader(io.StringIO(await page(st, "/sessions.csv")))}
        assert stake == {str(first.id): "800", str(second.id): "200"}
    text, rows, table = listed(tmp_path, capsys)
    one, two = rows
    assert (one["energy_wh"], one["delivered"], one["end_acknowledged"], one["at_stake_wh"]) == (800, True, False, 800)
    assert "no answer to 'Abrechnung auf'" in one["possibly_lost"]
    assert (two["energy_wh"], two["late_start_wh"] - two["meter_start_wh"], two["at_stake_wh"]) == (300, 200, 200)
    assert [(r["possibly_lost"] != "", r["late_start_wh"], r["at_stake_wh"]) for r in table] == \
        [(True, "", "800"), (False, str(two["late_start_wh"]), "200")]
    assert "POSSIBLY LOST" in text and "800 Wh at stake" in text and "200 Wh at stake" in text


async def test_refused_ends_are_shown_with_their_reason(tmp_path, capsys):
    """ERROR21: the server cannot read its meter at the end. ERROR30: the server was restarted
    during the session and has forgotten it."""
    async with evcs_station(tmp_path) as rig:
        st = rig.st
        await start_charging(st)
        st.world.consume(400)
        rig.meter_fails = True
        await stop_charging(st)
        assert await st.flush(30)
        rig.meter_fails = False
        await start_charging(st)
        st.world.consume(600)
        await rig.server.restart()  # sessions are held in memory only
        await stop_charging(st)
        assert await st.flush(30)
        html = await page(st, "/")
        assert "refused: stop: ERROR21: Meter unreadable at end" in html and "0.400 kWh" in html
        assert "refused: stop: ERROR30: No open session for this tag" in html and "0.600 kWh" in html
    text, rows, table = listed(tmp_path, capsys)
    assert [(r["rejected"], r["at_stake_wh"]) for r in rows] == \
        [("stop: ERROR21: Meter unreadable at end", 400), ("stop: ERROR30: No open session for this tag", 600)]
    assert [(r["rejected"], r["at_stake_wh"]) for r in table] == \
        [("stop: ERROR21: Meter unreadable at end", "400"), ("stop: ERROR30: No open session for this tag", "600")]
    assert "refused: stop: ERROR21" in text and "400 Wh at stake" in text and "600 Wh at stake" in text


async def test_error20_after_verstanden_ends_the_session_before_it_charges(tmp_path):
    """docs/mcsp.md §11.3: the server could not read its meter at the start, so it cannot bill
    the session: the station says why on the LCD and does not close the contactor."""
    async with evcs_station(tmp_path) as rig:
        st = rig.st
        rig.meter_fails = True
        await st.world.tap(CARD)
        await until(lambda: "ERROR20: Meter" in lcd(st) and "unreadable" in lcd(st), 20, "the refusal on the LCD")
        await state_is(st, "Available", 20)
        assert not st.world.contactor_closed and st.world.meter.flowing is False
        assert st.store.sessions() == []  # a refused tap: nothing charged, nothing to bill
        assert rig.server.lines("server") == ["OK_Lader1!", "ERROR20_Lader1!"]
        rig.meter_fails = False
        await charge(st, 250, rig.server)  # and the server goes on
        assert await st.flush(30)
        await until(lambda: rig.server.closed, 10, "the row closed")
        assert [r.energy_wh for r in rig.server.closed] == [250] and rig.server.died is None


async def test_a_server_whose_thread_has_ended_is_noticed_at_the_next_start(tmp_path, capsys):
    """Both of the station's `Verstanden` lines are lost: the server's thread ends 3 s after its
    OK (nothing the station can do then). The END that follows goes nowhere; the next START gets no
    reply, and that END is flagged as possibly lost, its energy at stake."""
    async with evcs_station(tmp_path) as rig:
        st = rig.st
        rig.bridge.lose("a->b", "Verstanden", count=2)
        await start_charging(st)
        await until(lambda: rig.server.died is not None, 20, "the server's thread to end")
        st.world.consume(600)
        await stop_charging(st)
        await until(lambda: st.store.pending_messages() == 0, 20, "the END sent")
        await st.world.tap(CARD)  # no reply: the offline policy lets the card charge
        await state_is(st, "SuspendedEV", 30)
        first = st.store.sessions()[0]
        await until(lambda: "end_possibly_lost" in st.store.session(first.id).extra, 20, "the END flagged")
        assert not st.charger.online  # the LCD and the status page say the server is not answering
        html = await page(st, "/")
        assert "POSSIBLY LOST" in html and "0.600 kWh" in html
    text, rows, _ = listed(tmp_path, capsys)
    assert (rows[0]["energy_wh"], rows[0]["at_stake_wh"]) == (600, 600)
    assert "no answer to 'Abrechnung auf'" in rows[0]["possibly_lost"]
