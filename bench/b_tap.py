"""Benchmark 2: card tap to contactor, with each backend on loopback.

A whole station (station.daemon.Station, product defaults: reader at 10 Hz,
meter at 1 s) runs in this process on emulated hardware. For each tap, at a
random moment relative to the poll cycle, the emulated card is put on the
reader (`chip.present`, t0) and the time the contactor output switches is
taken from the emulated GPIO's history (`fakegpio.history`, monotonic
stamps written inside `GPIO.output`). The card is then taken away, and a
second tap stops the session (tap to contactor open is reported too).

The latency is split with timestamps of the station's own log records
(captured by a handler, nothing patched): t0 -> "card tapped" (the reader
thread saw it: at most one poll interval plus one card read) and "card
tapped" -> contactor (the charger: two meter reads, two journal commits with
fsync, the backend's authorization round trip).
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Result, summary_ms
from bench.stations import CARD, backend_rig, station_config, stop_station, wait_until


class _Stamps(logging.Handler):
    """Monotonic time of the first log record matching each prefix after `arm()`."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: dict[str, float] = {}

    def arm(self) -> None:
        self.seen = {}

    def emit(self, record: logging.LogRecord) -> None:
        now = time.monotonic()
        msg = record.msg if isinstance(record.msg, str) else ""
        for key in ("card tapped", "session %d started", "session %d stopped"):
            if msg.startswith(key) and key not in self.seen:
                self.seen[key] = now


def _contactor_change_after(t0: float, pin: int, level: int) -> float | None:
    from station.emulated import fakegpio

    for at, p, lv in list(fakegpio.history):
        if p == pin and lv == level and at >= t0:
            return at
    return None


async def _taps(kind: str, n: int, state_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    from station.daemon import Station

    stamps = _Stamps()
    watched = [logging.getLogger("station.hardware.rfid"), logging.getLogger("station.core.charger")]
    for lg in watched:
        lg.setLevel(logging.INFO)
        lg.addHandler(stamps)
    try:
        async with backend_rig(kind) as (overrides, server):
            cfg = station_config(state_dir, {**overrides, **extra})
            station = Station(cfg)
            await station.start()
            try:
                if not await station.backend.wait_ready(20):
                    raise RuntimeError(f"{kind} backend did not come online")
                return await _tap_loop(station, cfg, n, stamps)
            finally:
                await stop_station(station)
    finally:
        for lg in watched:
            lg.removeHandler(stamps)


async def _tap_loop(station: Any, cfg: Any, n: int, stamps: _Stamps) -> dict[str, Any]:
    chip = station.world.chip
    pin = cfg.contactor.pin
    closed_level = 0 if cfg.contactor.active_low else 1
    uid = bytes.fromhex(CARD)
    charger = station.charger
    poll = cfg.rfid.poll_interval_s
    rng = random.Random(6)
    start_lat, detect, process, stop_lat = [], [], [], []
    for _ in range(n):
        await wait_until(lambda: charger.state.value == "Available" and not charger.busy, 20, "Available")
        await asyncio.sleep(rng.uniform(0.05, 0.05 + poll))  # a random phase against the poll cycle
        stamps.arm()
        t0 = time.monotonic()
        chip.present(uid)
        await wait_until(lambda t0=t0: _contactor_change_after(t0, pin, closed_level) is not None, 20, "contactor closed")
        t1 = _contactor_change_after(t0, pin, closed_level)
        start_lat.append(t1 - t0)
        if "card tapped" in stamps.seen:
            detect.append(stamps.seen["card tapped"] - t0)
            process.append(t1 - stamps.seen["card tapped"])
        chip.remove()
        await asyncio.sleep(cfg.rfid.absent_s + 3 * poll)  # the card has left
        await wait_until(lambda: charger.state.value in ("Charging", "SuspendedEV", "SuspendedEVSE") and not charger.busy,
                         20, "in session")
        await asyncio.sleep(rng.uniform(0, poll))
        t2 = time.monotonic()
        chip.present(uid)
        await wait_until(lambda t2=t2: _contactor_change_after(t2, pin, 1 - closed_level) is not None, 20,
                         "contactor open")
        stop_lat.append(_contactor_change_after(t2, pin, 1 - closed_level) - t2)
        chip.remove()
        await asyncio.sleep(cfg.rfid.absent_s + 3 * poll)
    return {
        "tap_to_contactor_closed": summary_ms(start_lat),
        "tap_to_reader_detect": summary_ms(detect),
        "detect_to_contactor_closed": summary_ms(process),
        "tap_to_contactor_open": summary_ms(stop_lat),
        "poll_interval_ms": poll * 1000,
    }


def run(quick: bool) -> Result:
    from bench.stations import import_central_system, import_strict_peer

    res = Result("tap", "Tap to contactor (p50/p95/max), product defaults, loopback backends")
    n = 3 if quick else 25
    # Quick mode only shortens the wait for the card to count as gone between taps; it is
    # not on the measured path (tap -> contactor).
    extra = {"rfid.absent_s": 0.2} if quick else {}
    for kind in ("local", "mcsp", "ocpp", "ocpp201"):
        if kind == "ocpp" and import_central_system() is None:
            res.figures[kind] = {"skipped": "scripts/harness/ocpp_csms.py not importable"}
            continue
        if kind == "ocpp201" and import_strict_peer() is None:
            res.figures[kind] = {"skipped": "no node or scripts/harness/peers/install.sh not run"}
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-tap-{kind}-") as tmp:
            try:
                res.figures[kind] = asyncio.run(_taps(kind, n, Path(tmp), extra))
            except Exception as exc:  # noqa: BLE001 - one backend failing must not hide the others
                res.figures[kind] = {"error": f"{type(exc).__name__}: {exc}"}
    res.notes.append(
        "t0 = emulated card put on the reader at a random phase of the 100 ms poll cycle; end = the contactor "
        "GPIO output changing (fakegpio.history). 'detect' = the reader thread logging the tap.")
    return res
