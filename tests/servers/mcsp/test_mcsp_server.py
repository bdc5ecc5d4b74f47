"""The MCSP reference server: its rules (by request), its TCP and serial transports, its CLI."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mcsp_support import PtyBridge

from station.backends.mcsp import codec
from station.backends.mcsp.codec import Request
from station.servers.mcsp import Ledger, McspServer, MeterUnreadable, TagEntry, load_tags
from station.servers.mcsp.cli import main

ROOT = Path(__file__).resolve().parents[3]
TAG = "16AC936B1692E73A"
KEY = "a" * 32


def start(name="Tankstelle1", key=TAG, **more) -> Request:
    return codec.request("START", name=name, key=key, **more)


def end(name="Tankstelle1", key=TAG, **more) -> Request:
    return codec.request("END", name=name, key=key, **more)


@pytest.fixture
def server():
    clock = iter(f"2026-11-05T12:00:{s:02d}Z" for s in range(60))
    return McspServer(tags={TAG: "Apartment 3", "D6 4F C9 3B": TagEntry("Apartment 5", frozenset({"Tankstelle2"}))},
                      now=lambda: next(clock))


def test_start_and_end_record_the_session(server):
    r = server.handle(start(session_key=KEY, meter_start="1000", time="2026-11-05T09:00:00Z"))
    assert r.ok and r.get("Session-Id") == "1" and r.get("Session-Key") == KEY and r.get("Time")
    r = server.handle(end(session_id="1", session_key=KEY, meter_start="1000", meter_stop="2500", energy="1500",
                          time="2026-11-05T10:00:00Z", stop_reason="Local", meter_stop_phases="500,500,500"))
    assert r.ok and r.get("Energy") == "1500"
    [s] = server.sessions()
    assert (s.tag, s.apartment, s.station, s.session_key, s.state) == (TAG, "Apartment 3", "Tankstelle1", KEY, "closed")
    assert (s.meter_start_wh, s.meter_stop_wh, s.energy_wh) == (1000, 2500, 1500)
    assert (s.start_time, s.end_time, s.stop_reason, s.stop_phases) == \
        ("2026-11-05T09:00:00Z", "2026-11-05T10:00:00Z", "Local", "500,500,500")


def test_repeated_start_and_end_never_make_a_second_session_or_bill_twice(server):
    first = server.handle(start(session_key=KEY, meter_start="1000"))
    again = server.handle(start(session_key=KEY, meter_start="1000"))
    assert first.get("Session-Id") == again.get("Session-Id") == "1"
    server.handle(end(session_key=KEY, meter_start="1000", meter_stop="2500"))
    late = server.handle(end(session_key=KEY, meter_start="1000", meter_stop="9999"))  # a confused repeat
    assert late.ok and late.get("Energy") == "1500"
    assert server.handle(start(session_key=KEY)).get("Session-Id") == "1"  # even after the end
    [s] = server.sessions()
    assert s.energy_wh == 1500 and s.meter_stop_wh == 2500


def test_the_pictures_conversation_without_extensions(server):
    r = server.handle(start())
    assert r.ok and r.get("Session-Id") == "1" and "Session-Key" not in r.headers
    assert server.handle(end(session_id="1")).ok
    assert server.handle(end(session_id="1")).ok  # repeat by Session-Id: still one billing
    assert [s.state for s in server.sessions()] == ["closed"]


@pytest.mark.parametrize("req,code,message", [
    (start(key="FFFF"), 401, "Key is not registered"),
    (start(key="d6:4f:c9:3b"), 403, "Key is not allowed at this station"),
    (start(name=""), 400, "Name is missing"),
    (start(meter_start="-5"), 400, "whole number"),
    (end(session_id="99"), 404, "Unknown session"),
    (codec.request("RESET", name="Tankstelle1"), 405, "Action not supported"),
])
def test_refusals(server, req, code, message):
    r = server.handle(req)
    assert (r.status, r.code) == ("ERROR", code) and message in r.message and r.get("Time")


def test_key_allowed_at_its_station_compares_tags_loosely(server):
    assert server.handle(start(name="Tankstelle2", key="d64fc93b")).ok


def test_end_must_match_station_key_and_both_ids(server):
    server.handle(start(session_key=KEY))
    assert server.handle(end(name="Tankstelle9", session_key=KEY)).code == 404
    assert server.handle(end(key="D64FC93B", session_key=KEY)).code == 404
    assert server.handle(end(session_key=KEY, session_id="2")).code == 404
    assert server.handle(end(session_key="c" * 32, session_id="1")).code == 404  # keyed session, other key
    assert server.handle(end(session_key=KEY, session_id="1")).ok


def test_session_key_reused_for_another_tag_is_malformed(server):
    server.handle(start(session_key=KEY))
    assert server.handle(start(name="Tankstelle2", key="D64FC93B", session_key=KEY)).code == 400


def test_open_session_elsewhere_is_409_and_at_the_same_station_superseded(server):
    server.handle(start(session_key="1" * 32))
    r = server.handle(start(name="Tankstelle2", session_key="2" * 32))
    assert r.code == 409 and "Tankstelle1" in r.message
    r = server.handle(start(session_key="3" * 32))  # same station, new key: the old one was abandoned
    assert r.ok and r.get("Session-Id") == "2"
    assert [s.state for s in server.sessions()] == ["superseded", "open"]


def test_station_secrets_give_407():
    server = McspServer(tags={TAG: "A"}, stations={"Tankstelle1": "s3cret-s3cret-s3cret", "Open": None})
    assert server.handle(start()).code == 407
    assert server.handle(start(auth="wrong")).code == 407
    assert server.handle(start(name="Stranger")).code == 407
    assert server.handle(start(auth="s3cret-s3cret-s3cret")).ok
    assert server.handle(codec.request("HEARTBEAT", name="Open")).ok


def test_meter_and_server_failures():
    reads = iter([12.5])

    def meter(flat):
        try:
            return next(reads)
        except StopIteration:
            raise MeterUnreadable(f"{flat} does not answer") from None

    server = McspServer(tags={TAG: "Apartment 3"}, meter=meter)
    assert server.handle(start(session_key=KEY)).ok
    r = server.handle(end(session_key=KEY))
    assert r.code == 503 and "Apartment 3" in r.message
    server.meter = lambda flat: 1 / 0
    r = server.handle(end(session_key=KEY))
    assert r.code == 500 and r.message == "Server error"
    server.meter = lambda flat: 14.0
    assert server.handle(end(session_key=KEY)).get("Energy") == "1500"  # server's own reading, no station readings


def test_heartbeat_answers_time_and_records_the_station(server):
    r = server.handle(codec.request("HEARTBEAT", name="Tankstelle1", status="Charging"))
    assert r.ok and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r.get("Time"))
    row = server.ledger.db.execute("SELECT status FROM stations WHERE name='Tankstelle1'").fetchone()
    assert row[0] == "Charging"


def test_load_tags(tmp_path):
    f = tmp_path / "tags.toml"
    f.write_text('"16AC936B1692E73A" = "Apartment 3"\n'
                 '"D6 4F C9 3B" = { apartment = "Apartment 5", stations = ["Tankstelle1"] }\n'
                 '[stations]\nTankstelle1 = { secret = "abc" }\nTankstelle2 = {}\n')
    tags, stations = load_tags(f)
    assert tags == {TAG: TagEntry("Apartment 3"), "D64FC93B": TagEntry("Apartment 5", frozenset({"Tankstelle1"}))}
    assert stations == {"Tankstelle1": "abc", "Tankstelle2": None}
    f.write_text('"X" = 3\n')
    with pytest.raises(ValueError, match="X"):
        load_tags(f)


# --- transports -----------------------------------------------------------------------

async def test_tcp_replies_end_with_an_empty_line_and_garbage_closes_the_connection():
    server = McspServer(tags={TAG: "A"}, now=lambda: "2026-11-05T12:00:00Z")
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write((ROOT / "tests" / "transcripts" / "picture-success.1.station").read_bytes())
        reply = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert reply == b"MMETERING/1.0 OK\r\nSession-Id: 1\r\nTime: 2026-11-05T12:00:00Z\r\n\r\n"
        writer.write(b"HELLO\r\n")
        reply = await asyncio.wait_for(reader.read(), 10)  # read to EOF: the server closed
        assert reply.startswith(b"MMETERING/1.0 ERROR\r\nMessage: Malformed request: expected 'MMETERING/1.0")
        assert b"Code: 400\r\n" in reply and reply.endswith(b"\r\n\r\n")
        writer.close()
    finally:
        await server.close()


async def test_serial_server_answers_and_resyncs_after_garbage():
    bridge = PtyBridge()
    server = McspServer(tags={TAG: "A"}, serial=bridge.b)
    await server.start()
    try:
        import serial

        port = serial.Serial(bridge.a, 19200, timeout=0.2)
        port.write(b"line noise\r\nMMETERING/1.0 START\r\nContent-Length: 2\r\nName: Tankstelle1\r\nKey: "
                   + TAG.encode() + b"\r\n")
        got = b""
        for _ in range(100):
            got += await asyncio.to_thread(port.read, 4096)
            if got.count(b"\r\n\r\n") >= 2:
                break
        first, second = got.split(b"\r\n\r\n")[:2]
        assert first.startswith(b"MMETERING/1.0 ERROR") and b"Code: 400" in first
        assert second.startswith(b"MMETERING/1.0 OK\r\nSession-Id: 1\r\n")
        port.close()
    finally:
        await server.close()
        bridge.close()


# --- the CLI --------------------------------------------------------------------------

def test_cli_argument_errors(tmp_path, capsys):
    assert main(["--listen", "nohost"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("= nonsense")
    assert main(["--tags", str(bad)]) == 2
    assert main(["--cert", "x.pem"]) == 2
    assert "--cert and --key go together" in capsys.readouterr().err


def test_cli_serves_records_and_prints_sessions(tmp_path):
    tags = tmp_path / "tags.toml"
    tags.write_text(f'"{TAG}" = "Apartment 3"\n')
    db = tmp_path / "sessions.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "station.servers.mcsp", "--listen", "127.0.0.1:0", "--tags",
                             str(tags), "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    try:
        banner = proc.stdout.readline()
        port = int(re.search(r"tcp://127\.0\.0\.1:(\d+)", banner).group(1))
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(codec.encode_request(start(session_key=KEY, meter_start="100")))
            assert sock.recv(4096).startswith(b"MMETERING/1.0 OK\r\nSession-Id: 1\r\n")
            sock.sendall(codec.encode_request(end(session_key=KEY, session_id="1", meter_start="100", meter_stop="1600")))
            assert b"Energy: 1500" in sock.recv(4096)
        line = proc.stdout.readline()
        assert "session 1: 16AC936B1692E73A (Apartment 3) at Tankstelle1" in line and "1500 Wh" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    import sqlite3

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT tag, apartment, energy_wh, state FROM sessions").fetchall() == \
            [(TAG, "Apartment 3", 1500, "closed")]


def test_station_cli_passes_options_to_mcsp_server(tmp_path, capsys):
    from station import cli

    bad = tmp_path / "bad.toml"
    bad.write_text("= nonsense")
    try:
        code = cli.main(["mcsp-server", "--tags", str(bad)])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and "station mcsp-server: " in capsys.readouterr().err


# --- a server that runs for years -------------------------------------------------------------

def test_start_finds_open_sessions_by_index_also_in_a_ledger_from_before_the_indexes(tmp_path):
    db = tmp_path / "ledger.db"
    old = Ledger(db)
    old.db.execute("DROP INDEX sessions_open_by_tag")
    old.db.execute("DROP INDEX sessions_open_by_station")
    old.close()
    ledger = Ledger(db)  # opening adds them
    try:
        for query, args in (("tag_norm = ? AND state = 'open' ORDER BY id DESC LIMIT 1", ("X",)),
                            ("station = ? AND state = 'open'", ("S",))):
            [plan] = [row[3] for row in ledger.db.execute(f"EXPLAIN QUERY PLAN SELECT id FROM sessions WHERE {query}",
                                                          args)]
            assert plan.startswith("SEARCH sessions USING INDEX sessions_open_by_"), plan  # not "SCAN sessions"
    finally:
        ledger.close()


def test_the_request_log_keeps_only_the_last_requests():
    server = McspServer(tags={TAG: "A"}, keep_requests=3)
    for n in range(20):
        server.handle(codec.request("HEARTBEAT", name=f"Tankstelle{n}"))
    assert 3 <= len(server.requests) <= 6
    assert server.requests[-1].get("Name") == "Tankstelle19"
    assert [r.get("Name") for r in server.requests] == [f"Tankstelle{n}" for n in range(20 - len(server.requests), 20)]
