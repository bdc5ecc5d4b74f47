"""One host on the building network cannot lock the stations out of the MCSP reference server
(issue 15; the policy is in station/admission.py and docs/mcsp.md §9).

The flood tests run hundreds of silent and half-frame connections from other loopback source
addresses (127.0.0.0/8 is all loopback; the server binds 127.0.0.1 only) while the station's own
client, from 127.0.0.1, runs whole sessions against the same server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from mcsp_support import FakeStation, PtyBridge, item, session

from station.admission import (
    EVICTED_FULL,
    EVICTED_PEER,
    EVICTED_STALE,
    IDLE,
    LATE,
    NOT_READ,
    REFUSED_FULL,
    REFUSED_PEER,
    Admission,
    ConnectionLimits,
)
from station.backends.mcsp import codec
from station.backends.mcsp.client import McspBackend
from station.backoff import Backoff
from station.core.model import MessageKind
from station.servers.mcsp import McspServer
from tests.stations import until

TAG = "16AC936B1692E73A"
HALF_FRAME = b"MMETERING/1.0 START\r\nContent-Length: 4\r\nName: Tankstelle9\r\n"  # and then nothing


# --- the policy, without sockets ---------------------------------------------------------------

def test_a_peer_keeps_at_most_its_unproven_quota_the_oldest_goes_first():
    table = Admission(ConnectionLimits(max_unproven_per_peer=3))
    first = [table.admit("10.0.0.66", t).slot for t in range(3)]
    verdict = table.admit("10.0.0.66", 3.0)
    assert verdict.slot is not None and verdict.evicted == [(first[0], EVICTED_PEER)]
    assert len(table) == 3
    # another address is not affected by that one's quota
    assert table.admit("10.0.0.5", 4.0).evicted == []


def test_a_station_that_spoke_is_never_pushed_out_by_silent_ones():
    table = Admission(ConnectionLimits(max_connections=4, max_unproven_per_peer=8))
    station = table.admit("10.0.0.5", 0.0).slot
    assert station is not None
    table.valid_request(station, 0.1)
    silent = [table.admit(f"10.0.1.{n}", 1.0 + n).slot for n in range(3)]
    # full: each newcomer takes the place of the oldest connection that never sent a valid request
    for n in range(10):
        verdict = table.admit(f"10.0.2.{n}", 10.0 + n)
        assert verdict.slot is not None and len(verdict.evicted) == 1
        assert verdict.evicted[0][1] == EVICTED_FULL and verdict.evicted[0][0] is not station
    assert station in table.slots() and not any(s in table.slots() for s in silent)


def test_full_of_active_stations_a_newcomer_is_refused_unless_one_went_quiet():
    lim = ConnectionLimits(max_connections=2, stale_s=180.0)
    table = Admission(lim)
    a, b = table.admit("10.0.0.1", 0.0).slot, table.admit("10.0.0.2", 0.0).slot
    assert a is not None and b is not None
    table.valid_request(a, 100.0)
    table.valid_request(b, 150.0)
    assert table.admit("10.0.0.3", 200.0).refused == REFUSED_FULL  # both spoke within 3 minutes
    verdict = table.admit("10.0.0.3", 100.0 + 180.0)  # a has been quiet for 3 minutes: it went away
    assert verdict.slot is not None and verdict.evicted == [(a, EVICTED_STALE)]


def test_one_address_holds_at_most_max_per_peer_even_proven():
    table = Admission(ConnectionLimits(max_per_peer=3, max_unproven_per_peer=3))
    for n in range(3):
        slot = table.admit("10.0.0.9", n).slot
        assert slot is not None
        table.valid_request(slot, n)
    assert table.admit("10.0.0.9", 5.0).refused == REFUSED_PEER
    assert table.admit("10.0.0.8", 5.0).slot is not None


def test_deadlines_first_request_then_idle_counted_from_the_last_valid_request():
    table = Admission(ConnectionLimits(first_request_s=10.0, idle_s=900.0))
    slot = table.admit("10.0.0.1", 50.0).slot
    assert slot is not None
    assert table.expires(slot) == (60.0, LATE)
    table.valid_request(slot, 55.0)
    assert table.expires(slot)[0] == 955.0


def test_limits_reject_nonsense():
    with pytest.raises(ValueError):
        ConnectionLimits(max_connections=0)
    with pytest.raises(ValueError):
        ConnectionLimits(first_request_s=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["admit", "speak", "close"]), st.integers(0, 5), st.integers(0, 40)),
                max_size=120))
def test_the_table_keeps_its_bounds_under_any_sequence(ops):
    lim = ConnectionLimits(max_connections=10, max_per_peer=4, max_unproven_per_peer=2, stale_s=50.0)
    table = Admission(lim)
    now = 0.0
    for op, peer, pick in ops:
        now += 1.0
        live = table.slots()
        if op == "admit":
            spoken = {s for s in live if s.proven and now - (s.last_valid or 0) < lim.stale_s}
            verdict = table.admit(f"10.0.0.{peer}", now)
            for victim, why in verdict.evicted:
                assert victim not in table.slots()
                if why in (EVICTED_PEER, EVICTED_FULL):
                    assert not victim.proven  # only connections that never spoke are pushed out...
                assert victim not in spoken  # ...and never a station heard from recently
            assert (verdict.slot is None) == (verdict.refused is not None)
        elif live and op == "speak":
            table.valid_request(live[pick % len(live)], now)
        elif live:
            table.release(live[pick % len(live)])
        slots = table.slots()
        assert len(slots) <= lim.max_connections
        for p in {s.peer for s in slots}:
            mine = [s for s in slots if s.peer == p]
            assert len(mine) <= lim.max_per_peer
            assert sum(1 for s in mine if not s.proven) <= lim.max_unproven_per_peer


def test_a_tally_logs_the_first_at_once_then_one_line_a_period(caplog):
    from station.tally import Tally

    caplog.set_level(logging.WARNING, logger="station.tally")
    tally = Tally("reader", period_s=60.0)
    for n in range(100):  # within the first minute: one line
        tally.note("line too long", now=float(n) / 10)
    assert [r.getMessage() for r in caplog.records] == [
        "reader: line too long; more of these are summed up every 60 s"]
    tally.note("byte 0x00 is not printable ASCII", "10.0.0.7", now=61.0)  # a minute on: the sum, lazily
    assert caplog.records[-1].getMessage() == (
        "reader, last 60 s: 100 more (line too long 99, byte 0x00 is not printable ASCII 1); from 10.0.0.7 1")
    assert sum(tally.total.values()) == 101
    tally.flush(130.0)  # a quiet period: the next one is logged at once again
    tally.note("line too long", now=131.0)
    assert caplog.records[-1].getMessage().startswith("reader: line too long;") and len(caplog.records) == 3


# --- floods over TCP -----------------------------------------------------------------------------

class Attack:
    """`lanes` connections from `source`, each reopened shortly after the server closes it."""

    def __init__(self, port: int, sources: list[str], lanes: int, payload: bytes = b"") -> None:
        self.port, self.sources, self.lanes, self.payload = port, sources, lanes, payload
        self.opened = self.closed = 0
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lane(self.sources[n % len(self.sources)]))
                       for n in range(self.lanes)]

    async def _lane(self, source: str) -> None:
        rnd = random.Random(hash(source))
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self.opened += 1
            try:
                if self.payload:
                    writer.write(self.payload)
                while await reader.read(4096):  # until the server closes it
                    pass
            except OSError:
                pass
            finally:
                self.closed += 1
                writer.close()
            await asyncio.sleep(rnd.uniform(0.0, 0.1))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def station_backend(url: str, **kw) -> McspBackend:
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("heartbeat_s", 3600.0)
    return McspBackend(url, "Tankstelle1", backoff=Backoff(initial=0.05, cap=0.5), **kw)


async def run_sessions(backend: McspBackend, count: int, first: int = 1) -> None:
    """Whole sessions as the station runs them: START at the tap, END when the car leaves."""
    for n in range(first, first + count):
        s = session(n, start=10_000 * n)
        result = await backend.authorize(TAG, s)
        assert result.accepted, f"session {n}: {result}"
        stopped = session(n, start=10_000 * n, stop=10_000 * n + 100 + n, backend_session_id=result.backend_session_id)
        delivered = await backend.deliver(item(MessageKind.STOP, session_id=n, seq=n), stopped)
        assert delivered.backend_session_id == result.backend_session_id


def peers(server: McspServer, address: str) -> int:
    return sum(1 for s in server.admission.slots() if s.peer == address)


async def test_hundreds_of_silent_and_half_frame_connections_from_one_host_do_not_stop_billing(caplog):
    caplog.set_level(logging.WARNING, logger="station.backends.mcsp")
    server = McspServer(tags={TAG: "Apartment 3"})  # the default policy: 256 connections, 10 s
    await server.start()
    silent = Attack(server.port, ["127.0.0.2"], 300)
    half = Attack(server.port, ["127.0.0.2"], 200, HALF_FRAME)
    backend = station_backend(server.url)
    station = FakeStation()
    try:
        silent.start()
        half.start()
        await until(lambda: silent.opened + half.opened >= 500, 60, "the attack's first 500 connections")
        await until(lambda: peers(server, "127.0.0.2") == server.admission.limits.max_unproven_per_peer, 30,
                    "the attacker holding its quota")
        await backend.start(station)
        assert await backend.wait_ready(30)
        await run_sessions(backend, 20)
        assert silent.closed + half.closed >= 300  # the attack went on all along
    finally:
        await backend.close()
        await silent.stop()
        await half.stop()
        await server.stop()  # the ledger stays readable
    records = server.sessions()
    assert [(r.state, r.energy_wh) for r in records] == [("closed", 100 + n) for n in range(1, 21)]
    assert server.tally.total[EVICTED_PEER] >= 300
    assert server.tally.total[REFUSED_FULL] == 0
    # hundreds of closed connections, a handful of log lines
    assert 1 <= len([r for r in caplog.records if r.name.endswith("tally")]) <= 5


async def test_a_full_table_makes_room_for_a_new_station_and_keeps_the_heartbeating_one(caplog):
    limits = ConnectionLimits(max_connections=48, first_request_s=1.0)
    server = McspServer(tags={TAG: "Apartment 3"}, limits=limits)
    await server.start()
    # A station that holds its connection and sends a HEARTBEAT every 0.3 s (gaps longer than
    # nothing; the first-request time does not apply to it once it spoke).
    keeper = McspBackend(server.url, "Tankstelle2", timeout_s=5.0, heartbeat_s=0.3,
                         backoff=Backoff(initial=0.05, cap=0.5))
    await keeper.start(FakeStation(name="Tankstelle2"))
    assert await keeper.wait_ready(30)
    [kept] = server.admission.slots()
    sources = [f"127.0.0.{n}" for n in range(10, 30)]  # 20 addresses x 8 unproven = 160 > 48
    attack = Attack(server.port, sources, 160)
    backend = station_backend(server.url)
    try:
        attack.start()
        await until(lambda: len(server.admission) == limits.max_connections, 60, "a full table")
        await backend.start(FakeStation())
        assert await backend.wait_ready(30)
        await run_sessions(backend, 10)
        await asyncio.sleep(2 * limits.first_request_s)  # the keeper's quiet gaps pass the first-request time
        assert kept in server.admission.slots() and kept.proven  # the same connection all along
        heartbeats = sum(1 for r in server.requests if r.action == codec.HEARTBEAT and r.get("Name") == "Tankstelle2")
        assert heartbeats >= 5
    finally:
        await backend.close()
        await keeper.close()
        await attack.stop()
        await server.stop()  # the ledger stays readable
    assert len([r for r in server.sessions() if r.state == "closed"]) == 10
    assert server.tally.total[EVICTED_FULL] > 0


async def test_silent_tls_connections_are_bound_by_the_first_request_time(tmp_path):
    from mcsp_support import SECRET, tls_server
    from pki_support import mcsp_pki

    pki = mcsp_pki(tmp_path)
    server = await tls_server(pki)
    server.admission.limits = ConnectionLimits(first_request_s=1.0)
    attack = Attack(server.port, ["127.0.0.2"], 100)  # TCP connects, never a ClientHello
    backend = McspBackend(server.url.replace("127.0.0.1", "localhost"), "Tankstelle1", timeout_s=5.0,
                          heartbeat_s=3600.0, ca_file=str(pki / "ca.pem"), secret=SECRET,
                          backoff=Backoff(initial=0.05, cap=0.5))
    try:
        attack.start()
        await until(lambda: attack.closed >= 100, 60, "silent TLS connections closed")
        assert peers(server, "127.0.0.2") <= 8
        await backend.start(FakeStation())
        assert await backend.wait_ready(30)
        await run_sessions(backend, 3)
    finally:
        await backend.close()
        await attack.stop()
        await server.stop()  # the ledger stays readable
    assert server.tally.total[LATE] + server.tally.total[EVICTED_PEER] >= 100


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (a reset when it closed with our bytes unread)."""
    try:
        return await asyncio.wait_for(reader.read(4096), 30) == b""
    except ConnectionError:
        return True


async def test_idle_time_counts_from_the_last_valid_request_and_trickled_bytes_do_not_extend_it():
    server = McspServer(tags={}, limits=ConnectionLimits(first_request_s=0.5, idle_s=1.0))
    await server.start()
    try:
        silent = await asyncio.open_connection("127.0.0.1", server.port)
        station = await asyncio.open_connection("127.0.0.1", server.port)
        station[1].write(codec.encode_request(codec.request("HEARTBEAT", name="Tankstelle1")))
        assert (await asyncio.wait_for(station[0].readuntil(b"\r\n\r\n"), 10)).startswith(b"MMETERING/1.0 OK")
        assert await closed(silent[0])  # no request within 0.5 s
        # A trickle that never completes a request, for 6 s: the server closes the connection
        # while it trickles, 1 s after the HEARTBEAT.
        for _ in range(30):
            station[1].write(b"M")
            await asyncio.sleep(0.2)
            if station[0].at_eof() or station[1].is_closing():
                break
        else:
            raise AssertionError("trickled bytes kept the connection open")
        assert server.tally.total[LATE] == 1 and server.tally.total[IDLE] == 1
        for _, writer in (silent, station):
            writer.close()
    finally:
        await server.stop()


async def test_a_peer_that_never_reads_its_replies_loses_its_connection_and_its_file_descriptor(monkeypatch):
    # Pipelined requests whose replies are never read: the server's writes block on TCP flow
    # control. A reply not taken within WRITE_S ends the connection, and a policy close aborts
    # instead of waiting for a flush that never comes (found by a red-team run: the sockets
    # outlived their slots until accept() failed with EMFILE).
    from station.servers.mcsp import server as server_mod

    monkeypatch.setattr(server_mod, "WRITE_S", 1.0)
    server = McspServer(tags={})
    await server.start()
    assert server._server is not None
    for listening in server._server.sockets:  # small send buffers (inherited): writes block soon, as
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # over a slow link
    fds = lambda: len(os.listdir("/proc/self/fd"))  # noqa: E731
    baseline = fds()
    loop = asyncio.get_running_loop()
    blob = codec.encode_request(codec.request("HEARTBEAT", name="Tankstelle1")) * 100_000  # valid, OK each

    async def flood(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            await loop.sock_sendall(sock, blob)  # blocks once the server stops reading: fine

    socks, senders = [], []
    try:
        for _ in range(20):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.bind(("127.0.0.2", 0))
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", server.port))
            socks.append(sock)
            senders.append(asyncio.create_task(flood(sock)))
        await until(lambda: len(server.admission) == 0 and not server._clients, 30, "every connection closed")
        # the server's side of each socket is gone: only our own 20 remain above the baseline
        await until(lambda: fds() <= baseline + len(socks), 30, "the server's sockets released")
        assert server.tally.total[NOT_READ] == 20
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        for sock in socks:
            sock.close()
        await server.stop()


async def test_an_unproven_connection_gets_three_refusals_then_is_closed_and_stations_are_served():
    # Found by a red-team run: 8 connections pipelining HEARTBEATs with a wrong secret (407, never
    # proven) held the event loop for seconds per station request. Now each such connection gets
    # three refusals, and the server yields between requests.
    server = McspServer(tags={TAG: "Apartment 3"}, stations={"Tankstelle1": "s3cret-s3cret-s3cret"})
    await server.start()
    wrong = codec.encode_request(codec.request("HEARTBEAT", name="Tankstelle1", auth="wrong")) * 2000
    counts: list[int] = []

    async def pipeline() -> None:
        while True:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
            writer.write(wrong)
            got = b""
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    got += chunk
            counts.append(got.count(b"Code: 407"))
            writer.close()

    attackers = [asyncio.create_task(pipeline()) for _ in range(8)]
    backend = station_backend(server.url, secret="s3cret-s3cret-s3cret")
    try:
        await until(lambda: len(counts) >= 16, 30, "pipelining connections closed")
        await backend.start(FakeStation())
        assert await backend.wait_ready(30)
        await run_sessions(backend, 5)
    finally:
        for task in attackers:
            task.cancel()
        await asyncio.gather(*attackers, return_exceptions=True)
        await backend.close()
        await server.stop()
    assert set(counts) == {3}, counts  # three answers each, of the 2000 asked
    assert len([r for r in server.sessions() if r.state == "closed"]) == 5


def test_heartbeats_write_the_ledger_at_most_every_30_s_and_made_up_names_are_bounded(monkeypatch):
    from station.servers.mcsp import service as server_mod

    clock = iter(f"2026-11-28T10:00:{n:02d}Z" for n in range(60))
    server = McspServer(tags={}, now=lambda: next(clock))
    beat = lambda name, status=None: server.handle(codec.request("HEARTBEAT", name=name, status=status))  # noqa: E731
    last_seen = lambda name: server.ledger.db.execute(  # noqa: E731
        "SELECT last_seen, status FROM stations WHERE name = ?", (name,)).fetchone()
    beat("Tankstelle1", "Available")
    first = tuple(last_seen("Tankstelle1"))
    beat("Tankstelle1", "Available")  # the same, seconds later: no write
    assert tuple(last_seen("Tankstelle1")) == first
    beat("Tankstelle1", "Charging")  # a new status is written at once
    assert last_seen("Tankstelle1")["status"] == "Charging" and last_seen("Tankstelle1")["last_seen"] != first[0]
    monkeypatch.setattr(server_mod, "STATIONS_SEEN_MAX", 5)
    for n in range(10):
        beat(f"Made-up-{n}")
    assert server.ledger.db.execute("SELECT COUNT(*) FROM stations").fetchone()[0] == 5
    server.ledger.close()


async def test_failed_accepts_are_counted_in_the_summary_not_logged_one_by_one():
    from station.servers.mcsp.cli import _count_accept_errors

    server = McspServer(tags={})
    loop = asyncio.get_running_loop()
    before = loop.get_exception_handler()
    try:
        _count_accept_errors(server)
        for _ in range(3):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": OSError(24, "Too many open files")})
        assert server.tally.total["accept failed: out of file descriptors"] == 3
    finally:
        loop.set_exception_handler(before)
        server.ledger.close()


async def test_a_station_without_heartbeats_reconnects_when_the_server_closed_its_quiet_connection():
    server = McspServer(tags={TAG: "Apartment 3"}, limits=ConnectionLimits(first_request_s=0.5))
    await server.start()
    # extensions off: the picture's headers only, no HEARTBEAT; it connects and says nothing
    backend = station_backend(server.url, extensions=False)
    try:
        await backend.start(FakeStation())
        assert await backend.wait_ready(10)
        await until(lambda: server.tally.total[LATE] == 1, 10, "the quiet connection closed")
        result = await backend.authorize(TAG, session(1))  # not idempotent without a Session-Key
        assert result.accepted and result.backend_session_id == "1"
    finally:
        await backend.close()
        await server.stop()


# --- the serial listener -------------------------------------------------------------------------

async def test_serial_server_drops_a_half_frame_and_survives_a_flood_of_bytes(caplog):
    caplog.set_level(logging.WARNING, logger="station.backends.mcsp")
    bridge = PtyBridge()
    server = McspServer(tags={TAG: "Apartment 3"}, serial=bridge.b)
    await server.start()
    noise = serial.Serial(bridge.a, 19200, timeout=0)  # another writer on the station's side of the line
    backend = station_backend(bridge.a)
    try:
        await backend.start(FakeStation())
        assert await backend.wait_ready(30)
        # A half frame, then silence: the station's next request must not be read as its rest.
        noise.write(HALF_FRAME)
        await asyncio.sleep(3.0)
        await run_sessions(backend, 1, first=1)
        # A flood: 64 KiB of random bytes and a line that never ends.
        rnd = random.Random(15)
        flood = bytes(rnd.randrange(256) for _ in range(65536)) + b"X" * 20_000
        await asyncio.to_thread(noise.write, flood)  # blocking: the server drains it meanwhile
        await asyncio.sleep(3.0)
        await run_sessions(backend, 2, first=2)
    finally:
        await backend.close()
        with contextlib.suppress(Exception):
            noise.close()
        await server.stop()  # the ledger stays readable
        bridge.close()
    assert [(r.state, r.energy_wh) for r in server.sessions()] == [("closed", 101), ("closed", 102), ("closed", 103)]
    # The line carried a few 400s, not one per broken line, and the log a few lines.
    assert bridge.sent("b->a").count(b"Code: 400") <= 5
    assert 1 <= len([r for r in caplog.records if r.name.endswith("tally")]) <= 5


async def test_the_2018_dialect_listener_survives_noise_and_a_line_that_never_ends(caplog):
    from station.backends.evcs.dialect import EvcsSerialBackend
    from station.servers.evcs2018 import Runevcs2018

    caplog.set_level(logging.WARNING, logger="station.backends.mcsp")
    bridge = PtyBridge()
    meter = {"kwh": 1000.0}
    server = Runevcs2018(bridge.b, meter=lambda flat: meter["kwh"])
    await server.start()
    noise = serial.Serial(bridge.a, 19200, timeout=0)
    backend = EvcsSerialBackend(bridge.a, reply_timeout_s=1.0, heartbeat_s=3600)
    tag = "D6 4F C9 3B"
    try:
        await backend.start(FakeStation())
        assert await backend.wait_ready(10)
        rnd = random.Random(2018)
        # 64 KiB of random bytes (hundreds of refused lines), then a line that never ends.
        await asyncio.to_thread(noise.write, bytes(rnd.randrange(256) for _ in range(65536)) + b"Y" * 5000)
        await asyncio.sleep(3.0)  # the line stays unfinished: the listener drops it after its gap
        for n in (1, 2):
            s = session(n, tag=tag)
            result = await backend.authorize(tag, s)
            assert result.accepted, result
            meter["kwh"] += n
            stopped = session(n, tag=tag, stop=2, backend_session_id=result.backend_session_id)
            assert (await backend.deliver(item(MessageKind.STOP, session_id=n, seq=n), stopped)).rejected is None
            await until(lambda n=n: len(server.closed) == n, 10, f"session {n} closed")
    finally:
        await backend.close()
        noise.close()
        await server.stop()
        bridge.close()
    assert [c.energy_wh for c in server.closed] == [1000, 2000]
    assert server._lines.refused > 100  # the noise was seen as hundreds of bad lines...
    assert 1 <= len([r for r in caplog.records if "runevcs" in r.getMessage()]) <= 3  # ...and logged in a few
