"""Run whole stations on emulated hardware inside a test (import from tests).

    async with running_station(tmp_path, {"backend.kind": "local", ...}) as st:
        await st.world.tap("D64FC93B")

Settings are those of the product, made quicker where only waiting is saved
(poll, sampling and display intervals); nothing of the station is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from station import config as configmod
from station.daemon import Station

TAGS = {"D64FC93B": "Apartment 2", "04A2B3C4D5E6F7": "Apartment 3", "16AC936B1692E73A": "Apartment 1"}
CARD = "D64FC93B"
CARD7 = "04A2B3C4D5E6F7"
UNKNOWN = "6AC32B40"

FAST = {
    "hardware.mode": "sim",
    "rfid.poll_interval_s": 0.05,
    "rfid.absent_s": 0.3,
    "charging.meter_interval_s": 0.2,
    "charging.finishing_s": 0.3,
    "charging.message_s": 1.0,
    "meter.timeout_s": 0.2,
    "sim.load_w": 0.0,  # the car draws nothing unless a test says so
    "backend.kind": "local",
    "backend.local.tags": dict(TAGS),
    # The test machine's clock is right, as a Pi's is once NTP has synchronized it (a container's
    # kernel may not say so); tests of an unsynchronized clock set "untrusted".
    "station.system_clock": "trusted",
}


def make_config(state_dir: Path | str, overrides: dict[str, Any] | None = None) -> configmod.Config:
    values = dict(FAST)
    values["station.state_dir"] = str(state_dir)
    values.update(overrides or {})
    return configmod.defaults(values)


@contextlib.asynccontextmanager
async def running_station(state_dir: Path | str, overrides: dict[str, Any] | None = None,
                          graceful: bool = True, **kwargs: Any) -> AsyncIterator[Station]:
    station = Station(make_config(state_dir, overrides), **kwargs)
    await station.start()
    try:
        yield station
    finally:
        await station.stop(graceful=graceful)


async def until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Wait for a condition; generous timeouts, no timing asserts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def state_is(station: Station, state: str, timeout: float = 10.0) -> None:
    await until(lambda: station.charger.state.value == state and not station.charger.busy, timeout,
                f"state {state} (now {station.charger.state.value})")


def lcd(station: Station) -> str:
    """The emulated LCD's text, once the display thread has written the latest lines."""
    display = station.hardware.display
    if hasattr(display, "flush"):
        display.flush(5.0)
    return "\n".join(station.world.lcd_text())


def two_sessions_and_a_refusal(state_dir: Path | str) -> None:
    """Session 1 (42 Wh), a refused tap (id 2), session 3 (7 Wh), all delivered (journal fixtures)."""

    async def run() -> None:
        async with running_station(state_dir) as st:
            st.world.set_load(0)
            for card, wh in ((CARD, 42), (UNKNOWN, None), (CARD7, 7)):
                await st.world.tap(card)
                if wh is None:
                    await state_is(st, "Available")
                    continue
                await state_is(st, "SuspendedEV")
                st.world.consume(wh)
                await st.world.tap(card)
                await state_is(st, "Available")
            assert await st.flush(10)

    asyncio.run(run())
