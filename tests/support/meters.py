"""Running `station meter read` against an emulated meter (for the meter and RTU tests)."""

from __future__ import annotations

import asyncio
import threading

from station.emulated.meter_server import EmulatedMeter


def run_cli_against(model: str, args: list[str], fault: str | None = None, link: str = "pty") -> int:
    """`station meter read ... --port <emulated>` with the emulated meter in its own thread and loop."""
    from station import cli

    ready = threading.Event()
    box: dict = {}

    async def serve() -> None:
        em = EmulatedMeter(model, initial_wh=4321, tick_s=None, link=link)
        em.set_fault(fault)  # type: ignore[arg-type]
        box["port"] = await em.start()
        box["loop"] = asyncio.get_running_loop()
        box["stop"] = asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await em.stop()

    t = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    t.start()
    assert ready.wait(10)
    try:
        return cli.main(["meter", "read", "--port", box["port"], *args])
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        t.join(10)
