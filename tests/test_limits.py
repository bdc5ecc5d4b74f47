"""Limits: bounded caches, a queue that never drops a transaction message, bounded lines and
messages on every link. (The reference server's connection policy: test_mcsp_lockout.py.)"""

from __future__ import annotations

import asyncio
import time

import pytest

from station.backends.evcs import dialect
from station.backends.mcsp import codec
from station.clock import Clock
from station.core.delivery import Deliverer
from station.core.model import DeliveryResult, MessageKind, OutboxItem, Session
from station.core.ports import Backend
from station.errors import BackendOffline
from station.servers.mcsp import McspServer
from station.store import Store
from tests.stations import until


def fast(store: Store) -> Store:
    """The journal without fsync: these tests count and order rows, they do not cut the power
    (test_station.py does), and 20,000 fsyncs would cost minutes on a slow disk."""
    store._db.execute("PRAGMA synchronous=OFF")
    return store


# --- the auth cache -------------------------------------------------------------------------

def test_auth_cache_holds_at_most_cache_max_tags_evicting_the_oldest_expiry(tmp_path):
    store = fast(Store.open(tmp_path))
    try:
        assert store.cache_max == 10_000
        store.cache_max = 50
        now = time.time()
        for n in range(60):  # expiry grows with n, except tag 0 which expires last
            store.cache_put(f"TAG{n:04d}", "Accepted", now + (10_000 if n == 0 else n))
        assert store.cache_size() == 50
        gone = [n for n in range(60) if store.cache_get(f"TAG{n:04d}", now) is None]
        assert gone == list(range(1, 11))  # the ten expiring first
        store.cache_put("TAG0001", "Accepted", now + 20_000)  # a renewed tag comes back, one other goes
        assert store.cache_size() == 50 and store.cache_get("TAG0001", now) is not None
        assert store.cache_get("TAG0011", now) is None
    finally:
        store.close()


def test_auth_cache_default_cap_holds_under_a_flood_of_tags(tmp_path):
    store = fast(Store.open(tmp_path))
    try:
        now = time.time()
        for n in range(10_050):
            store.cache_put(f"{n:08X}", "Accepted", now + 100 + n)
        assert store.cache_size() == 10_000
        assert store.cache_get(f"{10_049:08X}", now) is not None and store.cache_get(f"{49:08X}", now) is None
    finally:
        store.close()


# --- the outbox: never drops, always in order -----------------------------------------------

class Recorder(Backend):
    """The far end of the queue: records what arrives, and is unreachable on request."""

    kind = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[int, str]] = []
        self.down_every = 0  # > 0: every n-th delivery attempt finds the backend offline

    async def authorize(self, id_tag, session):  # pragma: no cover - not used here
        raise BackendOffline("not used")

    async def deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        if self.down_every and (len(self.got) + 1) % self.down_every == 0 and not getattr(self, "_failed", False):
            self._failed = True
            raise BackendOffline("link down")
        self._failed = False
        self.got.append((item.seq, item.kind.value))
        return DeliveryResult(backend_session_id=str(session.id))


async def test_a_huge_outbox_is_delivered_whole_and_in_order(tmp_path):
    store = fast(Store.open(tmp_path))
    n_sessions = 10_000  # START + STOP each: 20,000 queued messages
    try:
        def fill() -> None:
            for n in range(n_sessions):
                cur = store._db.execute(
                    "INSERT INTO sessions(key, connector_id, id_tag, state, meter_start_wh, started_at, meter_stop_wh,"
                    " stopped_at, stop_reason) VALUES (?, 1, 'D64FC93B', 'stopped', ?, '2026-11-05T09:00:00Z', ?,"
                    " '2026-11-05T10:00:00Z', 'Local')", (f"k{n}", n * 10, n * 10 + 5))
                store._enqueue(MessageKind.START, cur.lastrowid, {}, "2026-11-05T09:00:00Z")
                store._enqueue(MessageKind.STOP, cur.lastrowid, {}, "2026-11-05T10:00:00Z")
        store._write(fill)
        assert store.pending_messages() == 2 * n_sessions
        from station.backoff import Backoff

        backend = Recorder()
        backend.down_every = 997  # outages now and then: the message waits, nothing is skipped
        deliverer = Deliverer(store, backend, Clock(), backoff=Backoff(initial=0.001, cap=0.002))
        task = asyncio.create_task(deliverer.run())
        try:
            await until(lambda: store.pending_messages() == 0, 120, "the outbox to drain")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        seqs = [seq for seq, _ in backend.got]
        assert len(seqs) == 2 * n_sessions and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert [k for _, k in backend.got[:4]] == ["start", "stop", "start", "stop"]
        assert all(s.extra["delivered"] for s in store.sessions())
    finally:
        store.close()


# --- lines and messages on the links --------------------------------------------------------

def test_limits_are_declared():
    assert (codec.MAX_LINE, codec.MAX_HEADERS, codec.MAX_MESSAGE) == (256, 32, 4096)
    assert dialect.MAX_LINE == 128


def test_dialect_parser_never_buffers_more_than_a_line():
    p = dialect.LineParser()
    errors = 0
    for _ in range(1000):  # 1 MB without a line end, fed in 1 kB pieces
        p.feed(b"A" * 1024)
        try:
            p.next_line()
        except dialect.DialectError:
            errors += 1
        assert len(p._buffer) <= dialect.MAX_LINE + 1024 + 1
    p.feed(b"\r\nOK_Lader1!\r\n")
    assert p.next_line() == "OK_Lader1!"  # the rest of the long line was dropped, the next one is read
    assert errors >= 1


def test_mcsp_connection_never_buffers_more_than_a_line_or_a_message():
    conn = codec.Connection(codec.Role.SERVER)
    conn.receive_data(b"MMETERING/1.0 START\r\nContent-Length: 32\r\n")
    for n in range(40):
        conn.receive_data(f"H{n}: {'v' * 200}\r\n".encode())
    with pytest.raises(codec.RemoteProtocolError, match="longer than 4096"):
        while conn.next_event() is not codec.NEED_DATA:
            pass


async def test_server_answers_a_flood_without_line_ends_with_400_and_closes():
    server = McspServer(tags={})
    await server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"MMETERING/1.0 START\r\nContent-Length: 1\r\nName: " + b"x" * 200_000)
        try:
            await writer.drain()
        except ConnectionError:
            pass
        reply = await asyncio.wait_for(reader.read(4096), 10)
        assert reply.startswith(b"MMETERING/1.0 ERROR\r\n") and b"Code: 400" in reply and b"longer than 256" in reply
        assert await closed(reader)  # the stream is out of step
        writer.close()
    finally:
        await server.close()


async def closed(reader: asyncio.StreamReader) -> bool:
    """The server closed the connection (a reset, when it closed with our bytes unread)."""
    try:
        return await asyncio.wait_for(reader.read(100), 10) == b""
    except ConnectionResetError:
        return True
