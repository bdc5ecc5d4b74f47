"""The 2018 serial dialect (`kind = "evcs-serial"`) against an emulation of the 2018 server,
over a pseudo-terminal pair: the live log's conversation, each ERROR, and fuzzing of the parsers."""

from __future__ import annotations

import asyncio

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from mcsp_support import FakeStation, PtyBridge, item, session

from station import config as configmod
from station.backends.evcs import dialect as dialect_mod
from station.backends.evcs.dialect import (
    DialectError,
    EvcsSerialBackend,
    LineParser,
    ServerReply,
    create,
    dialect_tag,
    error_text,
    parse_server_line,
    parse_station_line,
)
from station.core.model import AuthStatus, MessageKind
from station.errors import BackendOffline
from station.servers.evcs2018 import MeterFailure, Runevcs2018
from tests.stations import until

TAG = "d64fc93b"  # as the station's reader might format it (rfid.uid_case = "lower")


class FlatMeter:
    """The apartment meter the 2018 server reads itself (kWh), failing on demand."""

    def __init__(self, kwh: float = 1234.5) -> None:
        self.kwh, self.fail = kwh, False

    def __call__(self, flat: str) -> float:
        if self.fail:
            raise MeterFailure(flat)
        return self.kwh


@pytest.fixture
async def link():
    bridge = PtyBridge()
    meter = FlatMeter()
    server = Runevcs2018(bridge.b, meter=meter)
    await server.start()
    station = FakeStation()
    backend = EvcsSerialBackend(bridge.a, reply_timeout_s=1.0, heartbeat_s=3600)
    await backend.start(station)
    assert await backend.wait_ready(10)
    yield backend, server, meter, station, bridge
    await backend.close()
    await server.stop()
    bridge.close()


async def test_reproduces_the_live_logs_conversation(link):
    """The live log's lines, plus a second `Verstanden` and a heartbeat right after the END: each
    ends a wait of the server in case the line before it was lost (the server ignores it otherwise)."""
    backend, server, meter, _, bridge = link
    s = session(tag=TAG)
    result = await backend.authorize(TAG, s)
    assert result.accepted and result.backend_session_id == "D6 4F C9 3B"
    meter.kwh += 1.5
    stopped = session(tag=TAG, stop=2, backend_session_id=result.backend_session_id)
    assert (await backend.deliver(item(MessageKind.STOP), stopped)).rejected is None
    await backend.heartbeat()
    await until(lambda: server.lines("station")[-2:] == ["LADER 1 lebt"] * 2, 5, "the heartbeat")
    assert [(who, line) for _, who, line in server.log] == [
        ("station", "Abrechnung auf"),
        ("station", "Tag ID = D6 4F C9 3B"),
        ("server", "OK_Lader1!"),
        ("station", "Verstanden"),
        ("station", "Verstanden"),
        ("station", "Tag ID = D6 4F C9 3B"),
        ("station", "total FERTIG"),
        ("station", "LADER 1 lebt"),
        ("station", "LADER 1 lebt"),
    ]
    assert bridge.sent("a->b") == (b"Abrechnung auf\r\nTag ID = D6 4F C9 3B\r\nVerstanden\r\nVerstanden\r\n"
                                   b"Tag ID = D6 4F C9 3B\r\ntotal FERTIG\r\nLADER 1 lebt\r\nLADER 1 lebt\r\n")
    assert bridge.sent("b->a") == b"OK_Lader1!\r\n"
    [done] = server.closed
    assert (done.tag, done.energy_wh, done.acknowledged) == ("D6 4F C9 3B", 1500, True)
    assert server.died is None


@pytest.fixture
def fast_beats(monkeypatch):
    """The heartbeat loop's wait slice shortened, so a test need not wait 5 s for a beat."""
    monkeypatch.setattr(dialect_mod, "BEAT_S", 0.02)


async def test_the_heartbeat_loop_is_supervised_and_beats_while_it_waits(fast_beats, link):
    backend, server, _, station, _ = link  # heartbeat_s = 3600
    await until(lambda: station.beats.get("evcs-heartbeat", 0) >= 10, 10, "beats while waiting")
    assert server.alive == {}  # the hour is not over: no 'LADER 1 lebt' yet
    assert "evcs-heartbeat" in station.supervisor.loops() and station.supervisor.check() is None


async def test_the_real_devices_tag_prefix_and_station_number():
    bridge = PtyBridge()
    server = Runevcs2018(bridge.b, meter=FlatMeter(), station_number=3, flats={3: "Flat 3"})
    await server.start()
    backend = EvcsSerialBackend(bridge.a, station_number=3, tag_prefix="Tag ID= ", reply_timeout_s=1.0, heartbeat_s=3600)
    try:
        assert (await backend.authorize("D64FC93B", session())).accepted
        assert server.lines("station")[:2] == ["Abrechnung auf", "Tag ID= D6 4F C9 3B"]
        assert server.lines("server") == ["OK_Lader3!"]
        await backend.heartbeat()
        await asyncio.sleep(0.3)
        assert 3 in server.alive
    finally:
        await backend.close()
        await server.stop()
        bridge.close()


async def test_error10_no_apartment_refuses_with_its_meaning():
    bridge = PtyBridge()
    server = Runevcs2018(bridge.b, meter=FlatMeter(), flats={})
    await server.start()
    station = FakeStation()
    backend = EvcsSerialBackend(bridge.a, reply_timeout_s=1.0, heartbeat_s=3600, language="de")
    backend.station = station
    try:
        result = await backend.authorize(TAG, session())
        assert result.status is AuthStatus.BLOCKED
        assert result.message == "ERROR10: Keine Wohnung fuer diese Station" == station.notices[-1]
        assert "Verstanden" not in server.lines("station")
    finally:
        await backend.close()
        await server.stop()
        bridge.close()


async def test_error20_after_verstanden_refuses_the_tap_with_its_meaning(link):
    """The deployed server answers OK first and reads its meter only after `Verstanden`; a failed
    read is ERROR20 a few hundred ms later. The station listens for it before it says yes."""
    backend, server, meter, station, _ = link
    meter.fail = True
    result = await backend.authorize(TAG, session())
    assert result.status is AuthStatus.INVALID and result.message == "ERROR20: Meter unreadable at start"
    assert station.notices[-1] == result.message
    assert server.lines("server") == ["OK_Lader1!", "ERROR20_Lader1!"]
    [row] = server.rows
    assert row.acknowledged and row.start_kwh is None  # a row the server can never bill
    assert server.died is None


async def test_error21_meter_unreadable_at_end(link):
    backend, server, meter, station, _ = link
    result = await backend.authorize(TAG, session())
    meter.fail = True
    out = await backend.deliver(item(MessageKind.STOP), session(tag=TAG, stop=2, backend_session_id=result.backend_session_id))
    assert out.rejected == "ERROR21: Meter unreadable at end" and station.notices[-1] == out.rejected


async def test_error30_no_open_session(link):
    backend, server, _, station, _ = link
    out = await backend.deliver(item(MessageKind.STOP), session(stop=2, backend_session_id="D6 4F C9 3B"))
    assert out.rejected == "ERROR30: No open session for this tag"
    assert server.lines("server") == ["ERROR30_Lader1!"]


async def test_offline_started_session_is_opened_late_only_while_it_runs(link):
    backend, server, _, _, _ = link
    running = session(tag=TAG, authorized_offline=True)
    assert (await backend.deliver(item(MessageKind.START), running)).backend_session_id == "D6 4F C9 3B"
    assert list(server.open) == ["D6 4F C9 3B"]
    ended = session(2, tag="0A0B0C0D", stop=5, authorized_offline=True)
    assert "cannot be billed" in (await backend.deliver(item(MessageKind.START), ended)).rejected
    assert "never opened" in (await backend.deliver(item(MessageKind.STOP), ended)).rejected
    assert "Abrechnung auf" not in server.lines("station")[3:]


async def test_replies_for_other_stations_are_ignored_and_silence_is_offline():
    bridge = PtyBridge()
    peer = serial.Serial(bridge.b, 19200, timeout=0.1)
    backend = EvcsSerialBackend(bridge.a, reply_timeout_s=1.5, heartbeat_s=3600)
    try:
        async def answer():
            got = b""
            while b"Tag ID" not in got:
                got += await asyncio.to_thread(peer.read, 100)
            peer.write(b"garbage \xff\r\nOK_Lader2!\r\nERROR10_Lader7!\r\nOK_Lader1!\r\n")

        task = asyncio.create_task(answer())
        assert (await backend.authorize(TAG, session())).accepted
        await task
        with pytest.raises(BackendOffline, match="no answer"):
            await backend.authorize(TAG, session())  # nobody answers now
    finally:
        await backend.close()
        peer.close()
        bridge.close()


async def test_missing_port_is_offline(tmp_path):
    backend = EvcsSerialBackend(str(tmp_path / "ttyUSB1"), heartbeat_s=3600)
    with pytest.raises(BackendOffline, match="cannot open"):
        await backend.authorize(TAG, session())
    assert backend.online is False


def test_create_from_config():
    cfg = configmod.defaults({"backend.kind": "evcs-serial", "backend.evcs-serial.station_number": 4,
                              "backend.evcs-serial.port": "/dev/ttyS9", "station.language": "de"})
    backend = create(cfg, None)
    assert (backend.port, backend.number, backend.reply_timeout_s, backend.tag_prefix, backend.language) == \
        ("/dev/ttyS9", 4, 3.0, "Tag ID = ", "de")


@pytest.mark.parametrize("tag,sep,out", [
    ("d64fc93b", " ", "D6 4F C9 3B"), ("D6:4F:C9:3B", " ", "D6 4F C9 3B"), ("D64FC93B", "", "D64FC93B"),
    ("16AC936B1692E73A", " ", "16 AC 93 6B 16 92 E7 3A"), ("guest-7", " ", "GUEST-7"),
])
def test_dialect_tag(tag, sep, out):
    assert dialect_tag(tag, sep) == out


def test_parse_lines():
    assert parse_server_line("OK_Lader1!") == ServerReply(True, None, 1)
    assert parse_server_line("ERROR21_Lader12!\r") == ServerReply(False, 21, 12)
    assert parse_server_line("OK_Lader!") is None and parse_server_line("ok_lader1!") is None
    assert parse_station_line("Tag ID= D6 4F C9 3B") == ("tag", "D6 4F C9 3B")
    assert parse_station_line("Tag ID = D6 4F C9 3B") == ("tag", "D6 4F C9 3B")
    assert parse_station_line("LADER 1 lebt") == ("alive", 1)
    assert [parse_station_line(x) for x in ("Abrechnung auf", "Verstanden", "total FERTIG", "hallo")] == \
        [("open", None), ("ack", None), ("done", None), None]
    assert error_text(30) == "ERROR30: No open session for this tag" and error_text(99).startswith("ERROR99: Unknown")


def test_line_parser_limits_and_recovery():
    p = LineParser(max_line=16)
    p.feed(b"x" * 40)
    with pytest.raises(DialectError, match="longer"):
        p.next_line()
    p.feed(b"rest of it\r\nOK_Lader1!\r\n")
    assert p.next_line() == "OK_Lader1!"
    p.feed(b"\x00\r\nLADER 1 lebt\n")
    with pytest.raises(DialectError, match="printable"):
        p.next_line()
    assert p.next_line() == "LADER 1 lebt" and p.next_line() is None


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=200), max_size=8))
def test_fuzzed_serial_input_raises_only_dialect_errors(chunks):
    p = LineParser()
    for chunk in chunks:
        p.feed(chunk)
        for _ in range(1000):
            try:
                line = p.next_line()
            except DialectError:
                continue
            if line is None:
                break
            parse_server_line(line)
            parse_station_line(line)
