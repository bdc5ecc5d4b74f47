"""The station's MCSP client against the reference server, a picture-only server, misbehaving
servers, over TCP, TLS and a serial (pseudo-terminal) link."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from mcsp_support import SECRET, FakeStation, PtyBridge, item, session, tls_server
from pki_support import mcsp_pki

from station.backends.mcsp import client as client_mod
from station.backends.mcsp import codec
from station.backends.mcsp.client import ERROR_RULES, McspBackend, rule_for
from station.backends.mcsp.codec import Connection, Reply, Request, Role
from station.backoff import Backoff
from station.core.model import AuthStatus, ConnectorStatus, MessageKind, StatusReport
from station.errors import BackendOffline
from station.servers.mcsp import McspServer
from tests.stations import until

TAG = "16AC936B1692E73A"
T = Path(__file__).resolve().parents[2] / "transcripts"


def backend(url: str, **kw) -> McspBackend:
    kw.setdefault("timeout_s", 3.0)
    kw.setdefault("heartbeat_s", 3600.0)
    kw.setdefault("backoff", Backoff(initial=0.05, cap=0.2))
    return McspBackend(url, "Tankstelle1", **kw)


@pytest.fixture
async def server():
    srv = McspServer(tags={TAG: "Apartment 3", "D64FC93B": "Apartment 5"})
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def started(server):
    """A started backend (link keeper running) on the reference server, and its station double."""
    station = FakeStation()
    b = backend(server.url)
    await b.start(station)
    assert await b.wait_ready(10)
    yield b, station
    await b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the normal path ----------------------------------------------------------------------

async def test_authorize_opens_the_session_and_stop_delivers_exact_energy(server, started):
    b, station = started
    s = session(start=10_000)
    result = await b.authorize(TAG, s)
    assert result.accepted and result.backend_session_id == "1"
    requests = len(server.requests)
    s.backend_session_id = result.backend_session_id
    assert (await b.deliver(item(MessageKind.START), s)).backend_session_id == "1"
    assert len(server.requests) == requests  # no second START for a session authorize opened
    stopped = session(start=10_000, stop=11_500, backend_session_id="1")
    assert (await b.deliver(item(MessageKind.STOP), stopped)).backend_session_id == "1"
    [rec] = server.sessions()
    assert (rec.energy_wh, rec.meter_start_wh, rec.meter_stop_wh, rec.session_key, rec.stop_reason) == \
        (1500, 10_000, 11_500, s.key, "Local")
    assert (rec.start_time, rec.end_time) == (stopped.started_at, stopped.stopped_at)


async def test_heartbeat_sets_the_station_clock_and_carries_status(server, started):
    b, station = started
    assert station.clock_sets and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", station.clock_sets[0])
    assert station.links[-1] is True
    await b.send_status(StatusReport(1, ConnectorStatus.CHARGING))
    for _ in range(200):
        row = server.ledger.db.execute("SELECT status FROM stations").fetchone()
        if row and row[0] == "Charging":
            break
        await asyncio.sleep(0.02)
    assert row[0] == "Charging"
    assert server.requests[-1].get("Status") == "Charging"


async def test_the_link_keeper_is_a_supervised_critical_loop_that_beats_while_idle(server, monkeypatch):
    monkeypatch.setattr(client_mod, "BEAT_S", 0.02)  # the wait slice, so the test need not wait 5 s
    station = FakeStation()
    b = backend(server.url)  # heartbeat_s = 3600: after the first HEARTBEAT it only waits
    await b.start(station)
    try:
        assert await b.wait_ready(10)
        await until(lambda: station.beats.get("mcsp-link", 0) >= 10, 10, "the link keeper beating while it waits")
        assert [r.action for r in server.requests] == ["HEARTBEAT"]  # beats, not pings
        assert "mcsp-link" in station.supervisor.loops() and station.supervisor.check() is None
        b._task.cancel()  # a link keeper that ends is a failure the watchdog sees
        await until(lambda: station.supervisor.check() is not None, 10, "the supervisor noticing")
        assert station.supervisor.check() == "mcsp-link: cancelled"
    finally:
        await b.close()


async def test_refusal_carries_the_servers_message_for_the_lcd(started):
    b, _ = started
    result = await b.authorize("FFFFFFFF", session(tag="FFFFFFFF"))
    assert result.status is AuthStatus.INVALID and result.message == "Key is not registered"


async def test_a_repeated_start_or_end_never_creates_a_second_session(server, started):
    b, _ = started
    s = session(start=500)
    first = await b.authorize(TAG, s)
    again = await b.deliver(item(MessageKind.START), s)  # as after a crash: same session key, sent again
    assert again.backend_session_id == first.backend_session_id
    stopped = session(start=500, stop=900)  # no Session-Id known: found by Session-Key
    for _ in range(3):
        assert (await b.deliver(item(MessageKind.STOP), stopped)).rejected is None
    assert [(r.id, r.energy_wh, r.state) for r in server.sessions()] == [(1, 400, "closed")]


# --- what each error code does on the station ------------------------------------------------

CODES = sorted(ERROR_RULES) + [418, 599, None]


def _error(code):
    return Reply("ERROR") if code is None else codec.error(code, f"message {code}")


@pytest.mark.parametrize("code", CODES)
async def test_error_code_at_authorize(server, started, code):
    b, station = started
    server.fail_next.append(_error(code))
    rule = rule_for(code)
    if rule.auth is None:
        with pytest.raises(BackendOffline, match=str(code)):
            await b.authorize(TAG, session())
        assert station.notices[-1] == f"MCSP: {code} message {code}"  # shown, then the offline policy decides
    else:
        result = await b.authorize(TAG, session())
        assert result.status is rule.auth and not result.accepted
        assert result.message == (f"message {code}" if code else "Refused by the server")
    assert server.sessions() == []


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("kind", [MessageKind.START, MessageKind.STOP])
async def test_error_code_at_delivery(server, started, code, kind):
    b, _ = started
    server.fail_next.append(_error(code))
    s = session(stop=20_000) if kind is MessageKind.STOP else session()
    if rule_for(code).retry:
        with pytest.raises(BackendOffline):
            await b.deliver(item(kind), s)
        # offered again later: the server is fine now and records it once
        result = await b.deliver(item(kind), s)
        assert result.rejected is None or kind is MessageKind.STOP  # STOP of a never-started session: 404
    else:
        result = await b.deliver(item(kind), s)
        assert result.rejected is not None and (str(code) in result.rejected or code is None)


def test_error_rules_cover_the_spec_table():
    assert {c: (r.auth is None, r.retry) for c, r in ERROR_RULES.items()} == {
        400: (False, False), 401: (False, False), 403: (False, False), 404: (False, False), 405: (False, False),
        407: (True, True), 409: (False, False), 500: (True, True), 503: (True, True)}
    assert rule_for(409).auth is AuthStatus.CONCURRENT_TX and rule_for(403).auth is AuthStatus.BLOCKED


async def test_404_on_end_is_rejected_for_good(started):
    b, _ = started
    result = await b.deliver(item(MessageKind.STOP), session(stop=20_000, backend_session_id="77"))
    assert result.rejected == "404 Unknown session"


async def test_stop_of_a_refused_start_is_not_sent(server, started):
    b, _ = started
    s = session(stop=2, extra={"rejected": "start: 401 Key is not registered"})
    result = await b.deliver(item(MessageKind.STOP), s)
    assert "refused this session's START" in result.rejected and server.requests[-1].action == "HEARTBEAT"


async def test_heartbeat_off_when_the_server_does_not_know_it(server):
    server.fail_next.append(codec.error(405, "Action not supported"))
    b = backend(server.url)
    await b.start(FakeStation())
    try:
        assert await b.wait_ready(10)
        assert b.heartbeats is False
    finally:
        await b.close()


# --- outages, drops, timeouts ----------------------------------------------------------------

async def test_unreachable_server_raises_backend_offline_and_late_sessions_keep_order_and_times():
    port = free_port()
    station = FakeStation()
    b = backend(f"tcp://127.0.0.1:{port}")
    await b.start(station)
    s1 = session(1, start=1000, stop=2500, authorized_offline=True)
    s2 = session(2, tag="D64FC93B", start=2500, stop=2600, authorized_offline=True,
                 started_at="2026-11-05T11:00:00.000Z", stopped_at="2026-11-05T11:30:00.000Z")
    with pytest.raises(BackendOffline):
        await b.authorize(TAG, session(3))
    with pytest.raises(BackendOffline):
        await b.deliver(item(MessageKind.START), s1)
    assert station.links.count(True) == 0
    srv = McspServer(tags={TAG: "A3", "D64FC93B": "A5"}, port=port)
    await srv.start()
    try:
        for s in (s1, s2):  # what the deliverer does once the link is back: in order
            start = await b.deliver(item(MessageKind.START), s)
            s.backend_session_id = start.backend_session_id
            assert (await b.deliver(item(MessageKind.STOP), s)).rejected is None
        recs = srv.sessions()
        assert [(r.tag, r.start_time, r.end_time, r.energy_wh, r.offline) for r in recs] == [
            (TAG, s1.started_at, s1.stopped_at, 1500, True), ("D64FC93B", s2.started_at, s2.stopped_at, 100, True)]
        assert await b.wait_ready(10)
    finally:
        await b.close()
        await srv.close()


class Dropper:
    """A server on the reference logic that cuts the link in the middle of its next replies."""

    def __init__(self, inner: McspServer, drop: dict[str, int]) -> None:
        self.inner, self.drop = inner, drop
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _conn(self, reader, writer):
        conn = Connection(Role.SERVER)
        try:
            while True:
                ev = conn.next_event()
                if ev is codec.NEED_DATA:
                    data = await reader.read(4096)
                    conn.receive_data(data)
                    continue
                if ev is codec.CLOSED:
                    return
                data = conn.send(self.inner.handle(ev))  # the server acts...
                if ev.action in self.drop:
                    writer.write(data[: self.drop.pop(ev.action)])  # ...and the reply is lost part way
                    await writer.drain()
                    return
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def close(self):
        self.server.close()


async def test_server_dropping_mid_reply_is_retried_without_billing_twice():
    inner = McspServer(tags={TAG: "A3"})
    # START: cut after the status line (an OK without its Session-Id); END: inside the status line
    dropper = Dropper(inner, {"START": 24, "END": 12})
    b = backend(await dropper.start())  # not started: no heartbeat, each failure is on a fresh link
    try:
        s = session(start=100)
        with pytest.raises(BackendOffline, match="link broke"):
            await b.deliver(item(MessageKind.START), s)
        assert b.last_reply is None
        assert [r.state for r in inner.sessions()] == ["open"]  # the server did act
        assert (await b.deliver(item(MessageKind.START), s)).backend_session_id == "1"
        stopped = session(start=100, stop=1600, backend_session_id="1")
        with pytest.raises(BackendOffline):
            await b.deliver(item(MessageKind.STOP), stopped)
        assert (await b.deliver(item(MessageKind.STOP), stopped)).rejected is None
        assert [(r.id, r.energy_wh) for r in inner.sessions()] == [(1, 1500)]
        assert [r.action for r in inner.requests] == ["START", "START", "END", "END"]
    finally:
        await b.close()
        await dropper.close()


async def test_a_stale_connection_is_replaced_at_once(server):
    b = backend(server.url)
    assert (await b.authorize(TAG, session(1))).accepted
    port = server.port
    await server.stop()  # the server restarts: our connection is dead
    restarted = McspServer(tags={TAG: "A3"}, port=port)
    await restarted.start()
    try:
        stopped = session(1, stop=20_000, backend_session_id="1")
        # the restarted (empty) server does not know session 1, but the point is: an answer,
        # obtained on a fresh connection without BackendOffline
        assert (await b.deliver(item(MessageKind.STOP), stopped)).rejected == "404 Unknown session"
    finally:
        await b.close()
        await restarted.close()


async def _scripted(handler) -> tuple[asyncio.AbstractServer, str]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    return srv, f"tcp://127.0.0.1:{srv.sockets[0].getsockname()[1]}"


async def test_no_reply_times_out_as_offline():
    async def silent(reader, writer):
        await reader.read(4096)
        await asyncio.sleep(30)

    srv, url = await _scripted(silent)
    b = backend(url, timeout_s=0.5)
    try:
        with pytest.raises(BackendOffline, match="no reply"):
            await b.authorize(TAG, session())
    finally:
        await b.close()
        srv.close()


async def test_a_late_reply_for_another_session_is_skipped():
    async def late_then_right(reader, writer):
        conn = Connection(Role.SERVER)
        conn.receive_data(await reader.read(4096))
        req = conn.next_event()
        writer.write(codec.encode_reply(codec.ok(session_id=99, session_key="f" * 32)))
        writer.write(codec.encode_reply(codec.ok(session_id=5, session_key=req.get("Session-Key"))))
        await writer.drain()
        await reader.read()

    srv, url = await _scripted(late_then_right)
    b = backend(url)
    try:
        assert (await b.authorize(TAG, session())).backend_session_id == "5"
    finally:
        await b.close()
        srv.close()


async def test_cut_error_reply_is_not_taken_for_a_refusal():
    async def cut(reader, writer):
        await reader.read(4096)
        writer.write(b"MMETERING/1.0 ERROR\r\nMessage: Key is not registered\r\n")
        writer.close()

    srv, url = await _scripted(cut)
    b = backend(url)
    try:
        with pytest.raises(BackendOffline):
            await b.authorize(TAG, session())
    finally:
        await b.close()
        srv.close()


# --- a server written from the picture alone -------------------------------------------------

class PictureServer:
    """Knows only what the README's picture shows: START and END, Content-Length counting the
    header lines, `OK` + `Session-Id` or `ERROR` + Message + `Code: 401`, no end marker. Strict:
    anything else closes the connection."""

    def __init__(self, keys: set[str]) -> None:
        self.keys, self.next_id, self.open = keys, 23, {}
        self.received = b""
        self.sent = b""
        self.ended: list[str] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _conn(self, reader, writer):
        async def line() -> str:
            raw = await reader.readline()
            if not raw:
                raise EOFError
            self.received += raw
            return raw.decode("ascii").rstrip("\r\n")

        try:
            while True:
                m = re.fullmatch(r"MMETERING/1\.0 (START|END|[A-Z]+)", await line())
                if not m:
                    return
                n = re.fullmatch(r"Content-Length: (\d+)", await line())
                if not n:
                    return
                fields = {}
                for _ in range(int(n.group(1))):
                    name, value = (await line()).split(": ", 1)
                    fields[name] = value.rstrip()
                if m.group(1) == "START" and fields.get("Key") in self.keys:
                    self.open[str(self.next_id)] = fields["Key"]
                    reply = f"MMETERING/1.0 OK\r\nSession-Id: {self.next_id}\r\n"
                    self.next_id += 1
                elif m.group(1) == "END" and self.open.get(fields.get("Session-Id")) == fields.get("Key"):
                    self.ended.append(fields["Session-Id"])
                    reply = "MMETERING/1.0 OK\r\n"
                else:
                    reply = "MMETERING/1.0 ERROR\r\nMessage: Key is not registered\r\nCode: 401\r\n"
                self.sent += reply.encode()
                writer.write(reply.encode())
                await writer.drain()
        except (EOFError, ValueError, ConnectionError):
            return
        finally:
            writer.close()

    def close(self):
        self.server.close()


async def test_picture_conversations_byte_for_byte_through_the_client():
    picture = PictureServer({TAG})
    b = backend(await picture.start(), extensions=False)
    await b.start(FakeStation())
    try:
        s = session(1, start=1000)
        result = await b.authorize(TAG, s)
        assert result.accepted and result.backend_session_id == "23"
        stopped = session(1, start=1000, stop=2000, backend_session_id="23")
        assert (await b.deliver(item(MessageKind.STOP), stopped)).rejected is None
        refused = await b.authorize(TAG[::-1], session(2, tag=TAG[::-1]))
        assert refused.status is AuthStatus.INVALID and refused.message == "Key is not registered"
        success = b"".join((T / f"picture-success.{n}").read_bytes() for n in ("1.station", "3.station"))
        error_req = (T / "picture-error.1a.station").read_bytes().replace(TAG.encode(), TAG[::-1].encode())
        assert picture.received == success + error_req
        assert picture.sent == b"".join((T / f).read_bytes() for f in (
            "picture-success.2.server", "picture-success.4.server", "picture-error.2a.server"))
        assert picture.ended == ["23"]
    finally:
        await b.close()
        picture.close()


async def test_full_station_works_with_a_picture_only_server():
    """Extension headers and HEARTBEAT on: the picture server ignores what it does not know."""
    picture = PictureServer({TAG})
    station = FakeStation()
    b = backend(await picture.start())
    await b.start(station)
    try:
        assert await b.wait_ready(10)
        s = session(1, start=1000)
        assert (await b.authorize(TAG, s)).backend_session_id == "23"
        stopped = session(1, start=1000, stop=2000, backend_session_id="23")
        assert (await b.deliver(item(MessageKind.STOP), stopped)).rejected is None
        assert picture.ended == ["23"]
        assert b"Session-Key: " + s.key.encode() in picture.received
    finally:
        await b.close()
        picture.close()


# --- serial -------------------------------------------------------------------------------

async def test_session_over_a_serial_link_delivers_exact_energy():
    bridge = PtyBridge()
    srv = McspServer(tags={TAG: "Apartment 3"}, serial=bridge.b)
    await srv.start()
    station = FakeStation()
    b = backend(bridge.a)
    await b.start(station)
    try:
        assert await b.wait_ready(10) and station.clock_sets
        s = session(start=7_000)
        result = await b.authorize(TAG, s)
        stopped = session(start=7_000, stop=8_500, backend_session_id=result.backend_session_id)
        assert (await b.deliver(item(MessageKind.STOP), stopped)).rejected is None
        assert [(r.energy_wh, r.state) for r in srv.sessions()] == [(1500, "closed")]
        assert b"MMETERING/1.0 START\r\nContent-Length: " in bridge.sent("a->b")
    finally:
        await b.close()
        await srv.close()
        bridge.close()


async def test_missing_serial_device_is_offline(tmp_path):
    b = backend(str(tmp_path / "ttyUSB9"))
    with pytest.raises(BackendOffline, match="cannot reach"):
        await b.authorize(TAG, session())


# --- TLS and the station secret -----------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return mcsp_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls(pki):
    srv = await tls_server(pki, tags={TAG: "A3"})
    yield srv
    await srv.close()


async def test_tls_with_pinned_ca_and_secret(tls, pki):
    assert tls.url.startswith("tls://")
    b = backend(tls.url, ca_file=str(pki / "ca.pem"), secret=SECRET)
    try:
        assert (await b.authorize(TAG, session())).accepted
        assert tls.requests[-1].get("Auth") == SECRET
    finally:
        await b.close()


async def test_tls_refuses_a_server_of_another_ca(tls, pki):
    station = FakeStation()
    b = backend(tls.url, ca_file=str(pki / "other-ca.pem"), secret=SECRET)
    await b.start(station)
    try:
        with pytest.raises(BackendOffline):
            await b.authorize(TAG, session())
        assert any("TLS failed" in n for n in station.notices)
        assert tls.requests == []
    finally:
        await b.close()


async def test_wrong_or_missing_secret_is_407_and_offline(tls, pki):
    station = FakeStation()
    b = backend(tls.url, ca_file=str(pki / "ca.pem"))
    b.station = station
    try:
        with pytest.raises(BackendOffline, match="407"):
            await b.authorize(TAG, session())
        assert station.notices == ["MCSP: 407 Station not authenticated"]
        with pytest.raises(BackendOffline, match="407"):
            await b.deliver(item(MessageKind.STOP), session(stop=20_000))
    finally:
        await b.close()


# --- sessions that authorize opened but never started ------------------------------------

async def test_abandoned_session_is_closed_with_zero_energy(server, tmp_path):
    from station.store import Store

    store = Store.open(tmp_path)
    try:
        b = backend(server.url, store=store)
        s = store.create_session("e" * 32, 1, TAG, 4_000)
        assert (await b.authorize(TAG, s)).accepted
        assert store.get_json("mcsp.opened") == {s.key: "1"}
        store.finish_authorization(s.id, "aborted", "no car plugged in")
        await b._close_abandoned()
        [rec] = server.sessions()
        assert (rec.state, rec.energy_wh, rec.stop_reason) == ("closed", 0, "Other")
        assert store.get_json("mcsp.opened") == {}
        await b.close()
    finally:
        store.close()


def test_request_headers_picture_first_then_extensions():
    b = backend("tcp://127.0.0.1:1", secret="x" * 16)
    s = session(start=1, stop=3, start_phase_wh=(1, 0, 0), stop_phase_wh=(2, 1, 0), meter_stop_estimated=True,
                backend_session_id="9")
    names = [n for n, _ in b._end_request(s, "9").headers]
    assert names[:3] == ["Name", "Session-Id", "Key"] and names[-1] == "Auth"
    req = b._end_request(s, "9")
    assert (req.get("Energy"), req.get("Meter-Stop-Phases"), req.get("Meter-Estimated")) == ("2", "2,1,0", "yes")
    assert codec.request_problem(req) is None
    start = b._start_request(TAG, session(started_at="mono:abc:12.5", authorized_offline=True), live=False)
    assert start.get("Time") is None and start.get("Offline") == "yes"  # no date for an unresolved stamp
    assert isinstance(start, Request)
