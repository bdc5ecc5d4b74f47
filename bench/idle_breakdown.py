"""Where the idle daemon's CPU goes: ablation runs and wake-up floors (profiling for issue 6).

    python -m bench.idle_breakdown [--window 30]

Per-call costs here are tiny and the cost is in waking up often, which a
sampling or tracing profiler distorts; so each part is switched off in
turn (a config key, or the charger's input poll period for the inputs
loop) and the idle CPU of the station process (bench.b_process.cpu_run's
window: /proc utime+stime, emulators separated) compared with the
baseline. The floors are bare Python doing only the wake-ups: a thread
waking at 10 Hz (Event.wait) with one 0.5 ms sleep inside, and an asyncio
loop with one task sleeping 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PYTHON, Result, sim_env  # noqa: E402

VARIANTS = {
    "baseline (product defaults)": ({}, None),
    "reader off (rfid.enabled = false)": ({"rfid.enabled": False}, None),
    "inputs polled at 1 Hz instead of 20 Hz": ({}, 1.0),
    "meter every 10 s instead of 1 s": ({"charging.meter_interval_s": 10.0}, None),
    "reader off, inputs 1 Hz, meter 10 s": ({"rfid.enabled": False, "charging.meter_interval_s": 10.0}, 1.0),
}

FLOOR_THREAD = """
import threading, time
ev = threading.Event()
def run():
    while not ev.wait(0.1):
        time.sleep(0.0005)
t = threading.Thread(target=run); t.start()
time.sleep(1); c0 = time.process_time(); time.sleep(%(w)s); c1 = time.process_time(); ev.set(); t.join()
print((c1 - c0) * 60 / %(w)s)
"""

FLOOR_LOOP = """
import asyncio, time
async def main():
    async def tick(p):
        while True:
            await asyncio.sleep(p)
    tasks = [asyncio.create_task(tick(p)) for p in %(periods)s]
    await asyncio.sleep(1); c0 = time.process_time(); await asyncio.sleep(%(w)s); c1 = time.process_time()
    print((c1 - c0) * 60 / %(w)s)
asyncio.run(main())
"""


def floor(code: str) -> float:
    out = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=sim_env(), timeout=300)
    return round(float(out.stdout.strip()), 4)


async def variants(window: float) -> dict[str, dict]:
    from bench import b_process

    out = {}
    for label, (config, input_poll) in VARIANTS.items():
        extra = ["--input-poll-s", str(input_poll)] if input_poll else []
        out[label] = await b_process.cpu_run("local", window, settle_s=2.0, config_extra=config, proc_args=extra,
                                             charging=False)
    return out


def measure(w: float) -> dict:
    result = {"floors_cpu_s_per_min": {
        "thread waking at 10 Hz (Event.wait)": floor(FLOOR_THREAD.replace("time.sleep(0.0005)", "pass") % {"w": w}),
        "thread waking at 10 Hz with a 0.5 ms sleep": floor(FLOOR_THREAD % {"w": w}),
        "asyncio loop, one task sleeping 50 ms (20 Hz)": floor(FLOOR_LOOP % {"w": w, "periods": [0.05]}),
        "asyncio loop, tasks at 20, 4, 1, 0.5 Hz (the charger's and daemon's timers)":
            floor(FLOOR_LOOP % {"w": w, "periods": [0.05, 0.25, 1.0, 2.0]}),
    }}
    runs = asyncio.run(variants(w))
    result["variants"] = {k: {"station_own_cpu_s_per_min": v["idle"]["station_own_cpu_s_per_min"],
                              "pct_of_one_core": v["idle"]["station_own_pct_of_one_core"],
                              "chip_emulator_cpu_s_per_min": v["idle"]["chip_emulator_cpu_s_per_min"],
                              "by_thread": v["idle"]["cpu_s_per_min_by_thread"]} for k, v in runs.items()}
    result["window_s"] = w
    return result


def run(quick: bool) -> Result:
    res = Result("idle", "Where the idle CPU goes: ablation and wake-up floors (local backend)")
    if quick:
        res.skipped = "full mode only (about 4 minutes): python -m bench --only idle"
        return res
    res.figures = measure(30.0)
    res.notes += [
        "Each variant is one station process (bench.station_proc, meter emulator in its own process), idle for "
        "30 s; /proc resolution is 10 ms per tick, so differences under about 0.03 s/min are noise.",
        "Floors are bare `python -c` processes doing nothing but the wake-ups.",
    ]
    return res


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--window", type=float, default=30.0)
    a = p.parse_args()
    print(json.dumps(measure(a.window), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
