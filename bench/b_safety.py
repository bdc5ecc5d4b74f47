"""Benchmark: how fast the station notices a failing contactor, meter, reader or loop.

A whole station (station.daemon.Station, product defaults: contactor settle
0.5 s, meter every 1 s with 3 failures to a fault, idle poll once a second)
runs in this process on emulated hardware. Each trial injects one fault the
way a scenario step does (station.sim.world.SimWorld.inject) at a random
moment, and takes the time until the station shows it: the connector
Faulted (for the contactor and the meter) or the supervisor's verdict (for a
dead thread or a hung loop, which end the process under systemd). A blocked
event loop is timed on a real `station simulate` process, from the log line
of the injection to the process's exit.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Result, sim_env
from bench.stations import CARD, station_config, wait_until

CASES = (
    ("welded_idle", "contactor welded while Available", "contactor-welded", "idle"),
    ("dropped_charging", "contactor drops out while Charging", "contactor-open", "charging"),
    ("meter_silent_charging", "meter stops answering while Charging", "meter-silent", "charging"),
    ("reader_dead", "RFID reader thread dies", "reader-dead", "idle"),
    ("meter_loop_hang", "meter loop hangs", "loop-hang:meter", "charging"),
    ("poll_loop_hang", "poll loop (inputs, contactor) hangs", "loop-hang:poll", "charging"),
)


async def _trial(kind: str, when: str, seed: int) -> float:
    from station.daemon import Station

    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        station = Station(station_config(Path(tmp), {"backend.kind": "local",
                                                    "backend.local.tags": {CARD: "A"}, "sim.load_w": 7400.0}))
        await station.start()
        try:
            c, world = station.charger, station.world
            if when == "charging":
                await world.tap(CARD)
                await wait_until(lambda: c.state.value == "Charging", 20, "Charging")
            await asyncio.sleep(1.0 + rnd.random())  # any phase of the poll and meter cycles
            fault, _, loop = kind.partition(":")
            t0 = time.monotonic()
            world.inject(fault, loop or "meter")
            if fault in ("reader-dead", "loop-hang"):
                await wait_until(lambda: station.failure is not None, 120, "the supervisor's verdict")
            else:
                await wait_until(lambda: c.state.value == "Faulted" and not c.busy, 60, "Faulted")
            return time.monotonic() - t0
        finally:
            await station.stop(graceful=False)


def _event_loop_block() -> float:
    """`station simulate` with a scenario that blocks the event loop: injection to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp) / "block.toml"
        scenario.write_text('[[step]]\naction = "wait"\nseconds = 1\n\n'
                            '[[step]]\naction = "fault"\nkind = "loop-hang"\nloop = "event-loop"\n')
        proc = subprocess.Popen([sys.executable, "-m", "station", "simulate", "--scenario", str(scenario),
                                 "--state-dir", str(Path(tmp) / "state")], cwd=ROOT, env=sim_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        t0 = None
        for line in proc.stderr:
            if "the event loop blocks" in line:
                t0 = time.monotonic()
        proc.wait(120)
        if t0 is None or proc.returncode != 70:
            raise RuntimeError(f"event-loop block: exit {proc.returncode}, injection seen: {t0 is not None}")
        return time.monotonic() - t0


def run(quick: bool) -> Result:
    trials = 2 if quick else 5
    figures: dict[str, Any] = {}
    for name, _title, kind, when in CASES:
        times = [asyncio.run(_trial(kind, when, seed)) for seed in range(trials)]
        figures[name] = {"median_s": round(sorted(times)[len(times) // 2], 2), "max_s": round(max(times), 2),
                         "trials": trials}
    blocks = [_event_loop_block() for _ in range(1 if quick else 3)]
    figures["event_loop_block"] = {"median_s": round(sorted(blocks)[len(blocks) // 2], 2),
                                   "max_s": round(max(blocks), 2), "trials": len(blocks)}
    notes = [f"{title}: median {figures[name]['median_s']} s, max {figures[name]['max_s']} s"
             for name, title, _k, _w in CASES]
    notes.append(f"event loop blocked (LoopWatch, process exits 70): median {figures['event_loop_block']['median_s']} s")
    return Result("safety", "Fault detection times", figures, notes)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    for line in run("--quick" in sys.argv).notes:
        print(line)
