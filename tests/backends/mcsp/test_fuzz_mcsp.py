"""Whole MCSP conversations with hostile peers, fuzzed (the codec alone is fuzzed in test_mcsp_codec.py).

* A hostile server answers the station's client over TCP with random junk interleaved with valid
  replies (OK, ERROR, stale replies, cut lines, overlong lines, silence, closed links). The station
  raises nothing but BackendOffline, finishes each call within its timeout, and never bills
  (accepts a session or confirms a delivery) unless a well-formed OK really came.
* A hostile station sends the reference server junk interleaved with valid requests. The server
  keeps serving, answers junk with `ERROR 400` and a Message, and opens sessions only for valid
  START requests.
* The 2018 serial dialect: a peer on the serial line writes junk around its `OK_Lader1!`; the
  station accepts only on an intact OK line for its number.
"""

from __future__ import annotations

import asyncio
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcsp_support import PtyBridge, item, session

from station.backends.evcs.dialect import EvcsSerialBackend
from station.backends.mcsp import codec
from station.backends.mcsp.client import McspBackend
from station.backends.mcsp.codec import CLOSED, NEED_DATA, Connection, Role
from station.backoff import Backoff
from station.core.model import AuthStatus, MessageKind
from station.errors import BackendOffline, ProtocolError
from station.servers.mcsp import McspServer

TIMEOUT_S = 0.3
SLACK_S = 3.0
TAGS = ["16AC936B1692E73A", "D64FC93B", "04A2B3C4D5E6F7"]

# Lines a confused or malicious peer might send; none is a complete valid OK.
JUNK_LINES = [b"MMETERING/9.9 OK", b"MMETERING/1.0 MAYBE", b"Session-Id: 5", b"Code: abc", b"HTTP/1.1 200 OK",
              b"\x00\xff\xfe", b"MMETERING/1.0 OK" + b" " * 300, b"Message: \xc3\xa4", b"Name " * 80, b":"]
junk = st.one_of(st.binary(min_size=1, max_size=200),
                 st.lists(st.sampled_from(JUNK_LINES), min_size=1, max_size=4).map(lambda ls: b"\r\n".join(ls) + b"\r\n"),
                 st.just(b"MMETERING/1.0 OK"))  # a cut status line, then (maybe) the link closes

reply_step = st.one_of(
    st.tuples(st.just("ok"), st.integers(1, 10**6), st.booleans()),         # valid OK, end marker or not
    st.tuples(st.just("error"), st.sampled_from([400, 401, 403, 404, 407, 409, 500, 503, 999]), st.booleans()),
    st.tuples(st.just("junk"), junk, st.booleans()),                        # junk, then close or not
    st.tuples(st.just("junk_then_ok"), junk, st.integers(1, 10**6)),
    st.tuples(st.just("stale"), st.integers(1, 10**6), st.booleans()),       # an OK for another Session-Key
    st.tuples(st.just("silence"), st.none(), st.none()),
    st.tuples(st.just("close"), st.none(), st.none()),
)


class HostileServer:
    """Reads the station's requests with the codec and answers each by the next script step."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.turn = 0
        self.oks_sent: list[str] = []  # Session-Ids of the well-formed OK replies written
        self.server: asyncio.AbstractServer | None = None
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        assert self.server is not None
        self.server.close()

    def _ok(self, req: codec.Request, sid: int, marker: bool, key: str | None = None) -> bytes:
        headers = {"session_id": sid}
        if key or req.get("Session-Key"):
            headers["session_key"] = key or req.get("Session-Key")
        return codec.encode_reply(codec.ok(**headers), end_marker=marker)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        conn = Connection(Role.SERVER)
        try:
            while True:
                event = conn.next_event()
                if event is NEED_DATA:
                    conn.receive_data(await reader.read(4096))
                    continue
                if event is CLOSED:
                    return
                req = event
                kind, a, b = self.script[self.turn % len(self.script)]
                self.turn += 1
                if kind == "ok":
                    writer.write(self._ok(req, a, b))
                    self.oks_sent.append(str(a))
                elif kind == "error":
                    writer.write(codec.encode_reply(codec.error(a, "refused"), end_marker=b))
                elif kind == "junk":
                    writer.write(a)
                    if b:
                        await writer.drain()
                        writer.close()
                        return
                elif kind == "junk_then_ok":
                    writer.write(a + self._ok(req, b, True))
                    self.oks_sent.append(str(b))  # may or may not be taken: the junk comes first
                elif kind == "stale":
                    writer.write(self._ok(req, a, b, key="another-session-key"))
                elif kind == "close":
                    writer.close()
                    return
                await writer.drain()
                conn = Connection(Role.SERVER)  # the station may send its next request at once
        except (ConnectionError, ProtocolError, OSError):
            return


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=st.lists(reply_step, min_size=1, max_size=6), calls=st.lists(st.sampled_from(["start", "stop", "ping"]),
       min_size=1, max_size=4))
def test_a_hostile_server_never_makes_the_station_crash_or_bill(script, calls):
    async def run() -> None:
        peer = HostileServer(script)
        await peer.start()
        b = McspBackend(peer.url, "Tankstelle1", timeout_s=TIMEOUT_S, settle_s=0.05, heartbeat_s=3600,
                        backoff=Backoff(initial=0.01, cap=0.05))
        try:
            for n, call in enumerate(calls, 1):
                before = len(peer.oks_sent)
                began = time.monotonic()
                try:
                    if call == "start":
                        result = await b.authorize(TAGS[n % 3], session(n, tag=TAGS[n % 3]))
                        if result.status is AuthStatus.ACCEPTED:  # only on a real OK, with its Session-Id
                            assert result.backend_session_id in peer.oks_sent[before:]
                    elif call == "stop":
                        done = await b.deliver(item(MessageKind.STOP, n), session(n, stop=10_500, backend_session_id="7"))
                        if not done.rejected:
                            assert len(peer.oks_sent) > before
                    else:
                        await b._ping()
                except BackendOffline as exc:
                    assert str(exc)  # a clear reason
                # two attempts (a stale link is retried once), each bounded by the timeout
                assert time.monotonic() - began < 2 * TIMEOUT_S + SLACK_S
        finally:
            await b.close()
            await peer.close()

    asyncio.run(run())


# --- a hostile station against the reference server -----------------------------------------

def valid_request(kind: str, n: int) -> bytes:
    tag = TAGS[n % 3]
    if kind == "start":
        return codec.encode_request(codec.request("START", name="Tankstelle1", key=tag, session_key=f"k{n}",
                                                  meter_start=100))
    if kind == "end":
        return codec.encode_request(codec.request("END", name="Tankstelle1", key=tag, session_key=f"k{n}",
                                                  meter_start=100, meter_stop=150))
    return codec.encode_request(codec.request("HEARTBEAT", name="Tankstelle1"))


chunk = st.one_of(st.tuples(st.sampled_from(["start", "end", "heartbeat"]), st.integers(0, 5)).map(lambda t: ("valid", t)),
                  junk.map(lambda j: ("junk", j)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(connections=st.lists(st.lists(chunk, min_size=1, max_size=6), min_size=1, max_size=3))
def test_a_hostile_station_never_crashes_the_server_nor_opens_sessions(connections):
    async def run() -> None:
        server = McspServer(tags={t: "Apartment" for t in TAGS})
        await server.start()
        started: set[str] = set()
        try:
            for chunks in connections:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                for what, value in chunks:
                    if what == "valid":
                        kind, n = value
                        writer.write(valid_request(kind, n))
                        if kind == "start":
                            started.add(TAGS[n % 3])
                    else:
                        writer.write(value)
                try:
                    await writer.drain()
                    writer.write_eof()
                except (ConnectionError, OSError):
                    pass
                data = b""
                try:
                    while chunk_ := await asyncio.wait_for(reader.read(65536), 10):
                        data += chunk_
                except (ConnectionError, OSError):
                    pass
                writer.close()
                # Every reply is a well-formed MCSP reply; a broken request gets a 400 with a reason.
                conn = Connection(Role.STATION)
                conn.receive_data(data)
                conn.receive_data(b"")
                while (ev := conn.next_event()) is not CLOSED:
                    assert ev is not NEED_DATA
                    assert ev.status in ("OK", "ERROR") and (ev.ok or ev.code is not None)
                    if ev.code == 400:
                        assert (ev.message or "").startswith("Malformed request")
            # Only valid STARTs open sessions, and the server still serves.
            assert {r.tag for r in server.sessions()} <= started
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(valid_request("heartbeat", 0))
            assert (await asyncio.wait_for(reader.read(4096), 10)).startswith(b"MMETERING/1.0 OK")
            writer.close()
        finally:
            await server.close()

    asyncio.run(run())


# --- the 2018 serial dialect -----------------------------------------------------------------

dialect_junk = st.one_of(st.binary(max_size=80), st.sampled_from([b"OK_Lader2!\r\n", b"ERROR10_Lader2!\r\n",
                         b"OK_Lader1", b"OK_Lader1!!\r\n", b"ok_lader1!\r\n", b"x" * 300 + b"\r\n", b"\x00OK_Lader1!\r\n"]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=dialect_junk, after=dialect_junk, ok=st.booleans())
def test_serial_junk_around_the_reply_never_bills(before, after, ok):
    async def run() -> None:
        bridge = PtyBridge()
        import serial

        peer = serial.Serial(bridge.b, 19200, timeout=0.05)
        b = EvcsSerialBackend(bridge.a, reply_timeout_s=0.4, meter_read_s=0.4, heartbeat_s=3600)
        try:
            async def answer() -> None:
                got = b""
                while b"Tag ID" not in got:
                    got += await asyncio.to_thread(peer.read, 256)
                peer.write(before + (b"\r\nOK_Lader1!\r\n" if ok else b"") + after)

            responder = asyncio.create_task(answer())
            began = time.monotonic()
            try:
                result = await b.authorize("D64FC93B", session(1, tag="D64FC93B"))
            except BackendOffline:
                result = None
            await asyncio.wait_for(responder, 10)
            # Bounded: at most two tries, each its wait for the reply and the zero-energy END's.
            assert time.monotonic() - began < 2 * (0.4 + 0.4) + SLACK_S
            if result is not None and result.status is AuthStatus.ACCEPTED:
                assert ok  # accepted only on an intact OK line for station 1
            if ok:
                assert result is not None and result.status is AuthStatus.ACCEPTED
        finally:
            await b.close()
            peer.close()
            bridge.close()

    asyncio.run(run())


# --- a whole station against a hostile server ------------------------------------------------

async def test_a_whole_station_survives_a_hostile_server(tmp_path, caplog):
    """Every kind of bad answer in turn, while a car charges twice: the station keeps working,
    follows its offline policy, and keeps every session (delivered or still queued)."""
    import logging

    from tests.stations import CARD, running_station, state_is

    caplog.set_level(logging.INFO)
    script = [("junk", b"\x00\xffMMETERING/1.0 OK\r\n", False), ("silence", None, None),
              ("stale", 9, True), ("junk", b"MMETERING/1.0 OK", True), ("error", 500, False),
              ("junk_then_ok", b"Code: abc\r\n", 3), ("close", None, None)]
    peer = HostileServer(script)
    await peer.start()
    overrides = {"backend.kind": "mcsp", "station.name": "Tankstelle1", "backend.mcsp.url": peer.url,
                 "backend.mcsp.timeout_s": TIMEOUT_S, "backend.mcsp.heartbeat_s": 5.0,
                 "backend.offline_policy": "cached+local"}
    try:
        async with running_station(tmp_path, overrides) as st:
            for _ in range(2):
                await st.world.tap(CARD)
                await state_is(st, "SuspendedEV", 20)  # accepted (locally, if the server never says OK)
                st.world.consume(300)
                await st.world.tap(CARD)
                await state_is(st, "Available", 20)
            sessions = st.store.sessions()
            assert [s.energy_wh for s in sessions] == [300, 300]
            delivered = sum(1 for s in sessions if s.extra["delivered"])
            assert delivered + sum(1 for m in st.store.messages() if m.kind is MessageKind.STOP) == 2
            assert st.status_line()  # still answering
    finally:
        await peer.close()
    unexpected = [r for r in caplog.records if r.exc_info and r.name.startswith("station")]
    assert unexpected == [], [r.getMessage() for r in unexpected]
