"""Benchmark 6: offline replay of queued transaction messages.

The journal of a station whose backend was down is prepared through the
store's own API (`create_session`, `activate` with its START queued,
`stop` with its STOP queued; N messages = N/2 sessions, ISO timestamps),
with `synchronous=OFF` on the preparing connection only, to save time.
Then a whole station (station.daemon.Station, sim hardware, product
durability: WAL + synchronous=FULL) starts on that journal with the
backend reachable, and its deliverer sends the queue.

Rate = messages / (last confirmation - first request at the backend).
Order is checked twice: at the station (the order `backend.deliver` is
called, wrapped for counting) and, for MCSP, at the server (the START/END
requests with their Session-Key, in arrival order, against the journal's
order). The local backend has no wire: its rate is the floor set by the
journal (two reads and one fsync'ed commit per message).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result
from bench.stations import CARD, backend_rig, station_config, stop_station, wait_until


def prepare(state_dir: Path, messages: int) -> list[tuple[str, str]]:
    """Queue `messages` START/STOP messages; returns the expected (action, session key) order."""
    from station.core.model import MessageKind  # noqa: F401 - the store's kinds
    from station.store import Store

    store = Store.open(state_dir)
    store._db.execute("PRAGMA synchronous=OFF")  # this connection only: quick preparation
    expected: list[tuple[str, str]] = []
    try:
        for i in range(messages // 2):
            key = f"{i:08d}" + "b" * 24
            start_wh, stop_wh = 1000 + 10 * i, 1005 + 10 * i
            started = f"2026-11-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z"
            s = store.create_session(key, 1, CARD, start_wh)
            store.activate(s.id, start_wh, started, (), None, None, True,
                           {"id_tag": CARD, "meter_start_wh": start_wh, "timestamp": started, "reservation_id": None},
                           start_delivered=False)
            store.stop(s.id, stop_wh, started, "Local", (), False, {"reason": "Local"})
            expected += [("START", key), ("END", key)]
    finally:
        store.close()
    return expected


async def _replay(kind: str, messages: int, state_dir: Path) -> dict[str, Any]:
    from station.daemon import Station

    t_prep = time.monotonic()
    expected = prepare(state_dir, messages)
    prep_s = time.monotonic() - t_prep
    async with backend_rig(kind) as (overrides, server):
        first_at: list[float] = []
        station_order: list[tuple[str, int]] = []
        if server is not None:
            handle = server.handle

            def timed(req):
                if not first_at and req.action in ("START", "END"):
                    first_at.append(time.monotonic())
                return handle(req)

            server.handle = timed
        cfg = station_config(state_dir, {**overrides, "rfid.enabled": True})
        station = Station(cfg)
        await station.start()
        try:
            deliver = station.backend.deliver

            async def counted(item, session):
                if not first_at:
                    first_at.append(time.monotonic())
                station_order.append((item.kind.value, session.id))
                return await deliver(item, session)

            station.backend.deliver = counted
            station.deliverer.wake()
            await wait_until(lambda: station.store.pending_messages() == 0, 600, "an empty outbox")
            done = time.monotonic()
        finally:
            await stop_station(station)
        elapsed = done - first_at[0]
        result = {
            "messages": messages,
            "seconds": round(elapsed, 3),
            "msg_per_s": round(messages / elapsed, 1),
            "station_order_kept": [s for _, s in station_order] == sorted(s for _, s in station_order)
            and len(station_order) == messages,
            "prepare_s": round(prep_s, 1),
        }
        if kind == "mcsp":
            got = [(r.action, r.get("Session-Key")) for r in server.requests if r.action in ("START", "END")]
            result["server_requests"] = len(got)
            result["server_order_kept"] = got == expected
            result["server_sessions_closed"] = sum(1 for s in server.sessions() if s.state == "closed")
        return result


def run(quick: bool) -> Result:
    res = Result("replay", "Offline replay of queued transaction messages")
    sizes = (1000,) if quick else (1000, 10000)
    for kind in ("local", "mcsp"):
        for n in sizes:
            with tempfile.TemporaryDirectory(prefix=f"bench-replay-{kind}-") as tmp:
                try:
                    res.figures[f"{kind}_{n}"] = asyncio.run(_replay(kind, n, Path(tmp)))
                except Exception as exc:  # noqa: BLE001
                    res.figures[f"{kind}_{n}"] = {"error": f"{type(exc).__name__}: {exc}"}
    res.notes.append("Journal on the machine's disk (the state directory is a temporary directory on /tmp), "
                     "WAL with synchronous=FULL: one fsync per confirmed message.")
    return res
