"""The 2018 dialect over a lossy line, against a server that behaves as the deployed one does: its
protocol thread ends when a follow-up line does not come within 3 s, it acknowledges no END, it
says ERROR20 after `Verstanden`, and it keeps its sessions in memory (station/servers/evcs2018.py).

The station waits 1 s for a reply here (`reply_timeout_s`; 2.5 s at most in the product), so the
server's 3 s leave a wide margin on a busy machine; test_evcs_billing.py runs the product's own
timing on whole stations."""

from __future__ import annotations

import uuid

import pytest
from mcsp_support import FakeStation, PtyBridge, item, session

from station.backends.evcs.dialect import EvcsSerialBackend
from station.backends.evcs.ends import EndWatch
from station.billing import END_ACKNOWLEDGED, END_SENT_AT, POSSIBLY_LOST, REFUSED_LATE
from station.core.model import AuthStatus, MessageKind
from station.errors import BackendOffline
from station.servers.evcs2018 import MeterFailure, Runevcs2018
from station.store import Store
from tests.stations import until

TAG = "D64FC93B"
WIRE = "D6 4F C9 3B"


class FlatMeter:
    def __init__(self, kwh: float = 1000.0) -> None:
        self.kwh, self.fail = kwh, False

    def __call__(self, flat: str) -> float:
        if self.fail:
            raise MeterFailure(flat)
        return self.kwh


@pytest.fixture
async def line(tmp_path):
    """A station backend and the 2018-like server on a lossy line; the journal is a real Store."""
    bridge = PtyBridge()
    meter = FlatMeter()
    server = Runevcs2018(bridge.b, meter=meter)
    await server.start()
    store = Store.open(tmp_path)
    station = FakeStation()
    backend = EvcsSerialBackend(bridge.a, reply_timeout_s=1.0, heartbeat_s=3600, store=store)
    await backend.start(station)
    assert await backend.wait_ready(10)
    yield backend, server, meter, station, bridge, store
    await backend.close()
    await server.stop()
    bridge.close()
    store.close()


def journal_session(store: Store):
    """A session row in the journal (ends.py writes its facts there)."""
    return store.create_session(uuid.uuid4().hex, 1, TAG, 0)


async def one_session(backend, meter, store, wh: int, server=None):
    """Authorize, charge `wh` on the server's meter, deliver the END; the END's result."""
    row = journal_session(store)
    result = await backend.authorize(TAG, session(row.id, tag=TAG))
    assert result.accepted, result
    if server is not None:  # the car charges once the server has its start reading
        await until(lambda: server.open.get(WIRE) and server.open[WIRE].start_kwh is not None, 10, "start reading")
    meter.kwh += wh / 1000
    stopped = session(row.id, tag=TAG, stop=wh, backend_session_id=result.backend_session_id)
    return row.id, await backend.deliver(item(MessageKind.STOP, session_id=row.id, seq=row.id), stopped)


@pytest.mark.parametrize("way,lost", [
    ("b->a", "OK_Lader1!"),            # the server waits for Verstanden
    ("a->b", f"Tag ID = {WIRE}"),      # the server waits for the tag after 'Abrechnung auf'
    ("a->b", "Abrechnung auf"),        # the server takes the tag line as an END and waits for 'total FERTIG'
    ("a->b", "Verstanden"),            # the server waits for Verstanden (the station had its OK)
])
async def test_a_line_lost_at_the_start_no_longer_ends_the_servers_thread(line, way, lost):
    backend, server, meter, _, bridge, store = line
    bridge.lose(way, lost)
    _, first = await one_session(backend, meter, store, 500, server)
    assert bridge.lost and first.rejected is None
    _, second = await one_session(backend, meter, store, 700, server)
    assert second.rejected is None
    await until(lambda: len(server.closed) >= 2, 10, "both sessions closed")
    assert server.died is None
    # Both sessions billed in full; a row the server created for a lost OK has no start reading
    # (it bills nothing) and was replaced by the next START.
    assert [r.energy_wh for r in server.closed] == [500, 700]
    assert all(r in server.closed or r.start_kwh is None for r in server.rows)


async def test_a_lost_total_fertig_no_longer_ends_the_servers_thread(line):
    """The END is lost (the server keeps that session open: silence cannot say so), but the
    server's wait for 'total FERTIG' ends with the station's next line, and it bills on."""
    backend, server, meter, _, bridge, store = line
    bridge.lose("a->b", "total FERTIG")
    first, out = await one_session(backend, meter, store, 500)
    assert out.rejected is None and bridge.lost
    _, out = await one_session(backend, meter, store, 700)
    await until(lambda: server.closed, 10, "the second session closed")
    assert server.died is None
    assert [r.energy_wh for r in server.closed] == [700]
    # What the journal can say about the first END: sent, not acknowledged; nothing was seen down.
    extra = store.session(first).extra
    assert extra[END_ACKNOWLEDGED] is False and extra[END_SENT_AT] and POSSIBLY_LOST not in extra


async def test_error20_after_a_lost_verstanden_ends_the_session_when_it_comes(line):
    """The first Verstanden is lost, so the server reads its meter only at the station's second
    one, and its ERROR20 comes after the station said yes: the session is stopped and the refusal
    journaled on it."""
    backend, server, meter, station, bridge, store = line
    bridge.lose("a->b", "Verstanden")
    meter.fail = True
    row = journal_session(store)
    station.session = session(row.id, tag=TAG)
    assert (await backend.authorize(TAG, station.session)).accepted
    await until(lambda: "ERROR20_Lader1!" in server.lines("server"), 10, "the server's ERROR20")
    await backend.heartbeat()  # the next exchange takes it at the latest (the late check may have)
    assert station.stops == ["DeAuthorized"] and station.notices[-1] == "ERROR20: Meter unreadable at start"
    assert store.session(row.id).extra[REFUSED_LATE] == "start: ERROR20: Meter unreadable at start"
    assert server.died is None


async def test_an_error21_after_the_ends_wait_is_recorded_on_its_session(line):
    backend, server, meter, station, _, store = line
    server.meter_read_s = 2.0  # a slow bus: the refusal comes after the station's 1.5 s
    row = journal_session(store)
    result = await backend.authorize(TAG, session(row.id, tag=TAG))
    meter.fail = True
    stopped = session(row.id, tag=TAG, stop=100, backend_session_id=result.backend_session_id)
    assert (await backend.deliver(item(MessageKind.STOP, session_id=row.id), stopped)).rejected is None
    await until(lambda: "ERROR21_Lader1!" in server.lines("server"), 10, "the server's ERROR21")
    await backend.heartbeat()
    assert store.session(row.id).extra[REFUSED_LATE] == "stop: ERROR21: Meter unreadable at end"
    assert station.notices[-1] == "ERROR21: Meter unreadable at end"


async def test_a_start_without_reply_after_a_session_flags_its_end_as_possibly_lost(line):
    backend, server, meter, station, _, store = line
    first, _ = await one_session(backend, meter, store, 800)
    assert POSSIBLY_LOST not in store.session(first).extra
    await server.stop()  # from here on nothing answers (as when its protocol thread has ended)
    with pytest.raises(BackendOffline, match="no answer"):
        await backend.authorize(TAG, session(2, tag=TAG))
    assert "no answer to 'Abrechnung auf'" in store.session(first).extra[POSSIBLY_LOST]
    assert backend.online is False and station.links[-1] is False
    # An END sent while the server is silent is flagged at once.
    row = journal_session(store)
    stopped = session(row.id, tag=TAG, stop=5, backend_session_id=WIRE)
    assert (await backend.deliver(item(MessageKind.STOP, session_id=row.id), stopped)).rejected is None
    assert "not answering" in store.session(row.id).extra[POSSIBLY_LOST]


async def test_a_late_start_records_the_stations_reading(line):
    from station.billing import LATE_START_WH
    from station.core.model import MeterReading

    backend, server, _, station, _, store = line
    row = journal_session(store)
    station.reading = MeterReading(energy_wh=1300)
    running = session(row.id, tag=TAG, start=1000, authorized_offline=True)
    assert (await backend.deliver(item(MessageKind.START, session_id=row.id), running)).backend_session_id == WIRE
    assert store.session(row.id).extra[LATE_START_WH] == 1300
    assert list(server.open) == [WIRE] and server.open[WIRE].start_kwh is not None


def test_the_ends_in_doubt_outlive_a_restart(tmp_path):
    store = Store.open(tmp_path)
    try:
        a, b = journal_session(store), journal_session(store)
        watch = EndWatch(store, lambda: "2026-11-05T10:00:00Z")
        watch.end_sent(a.id)
        watch = EndWatch(store, lambda: "2026-11-05T10:05:00Z")  # the station restarted
        watch.link_down("no answer")
        assert store.session(a.id).extra[POSSIBLY_LOST].startswith("no answer at 2026-11-05T10:05:00Z")
        watch = EndWatch(store, lambda: "2026-11-05T10:06:00Z")
        assert watch.down
        watch.end_sent(b.id)  # while down: flagged at once
        assert "since 2026-11-05T10:05:00Z" in store.session(b.id).extra[POSSIBLY_LOST]
        watch.reply_seen()
        assert not EndWatch(store, lambda: "x").down
    finally:
        store.close()


async def test_error10_comes_before_any_ok_and_gets_no_verstanden(line):
    """ERROR10 (no apartment) comes before any OK: the server waits for nothing, and the station
    sends no Verstanden."""
    backend, server, _, station, _, _ = line
    server.flats.clear()
    result = await backend.authorize(TAG, session(tag=TAG))
    assert result.status is AuthStatus.BLOCKED
    assert "Verstanden" not in server.lines("station") and server.died is None
