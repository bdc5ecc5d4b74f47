"""Hardware behaviour that reaches the drivers, on a whole simulated station: the stop button
read by polling where edge detection fails, the strict GPIO left as a Pi would leave it."""

from __future__ import annotations

import pytest

from station.emulated import fakegpio
from tests.stations import CARD, running_station, state_is


@pytest.mark.parametrize(("library", "message"), [("RPi.GPIO", "Failed to add edge detection"),
                                                  ("rpi-lgpio", "GPIO busy")])
async def test_stop_button_works_by_polling_when_edge_detection_fails(tmp_path, caplog, library, message):
    """RPi.GPIO refuses with RuntimeError; rpi-lgpio lets lgpio.error through (not a RuntimeError): an
    earlier version caught only the first, and the station did not start under rpi-lgpio."""
    config = {"sim.stop_button_input": True, "sim.gpio_edge_detection": False, "sim.gpio_library": library}
    async with running_station(tmp_path, config) as st:
        stop_pin = st.world.pins.stop
        assert stop_pin is not None
        assert not st.hardware.inputs.edge_detection  # the polling fallback is what runs
        assert not fakegpio.has_edge_detection(stop_pin)
        assert "no edge detection" in caplog.text and message in caplog.text
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        await st.world.press_stop(hold_s=0.3)  # a finger's press: longer than the 50 ms poll
        await state_is(st, "Available")
        [s] = st.store.sessions()
        assert s.stop_reason == "Local"


async def test_stop_button_uses_edge_detection_where_it_works(tmp_path):
    async with running_station(tmp_path, {"sim.stop_button_input": True}) as st:
        assert st.hardware.inputs.edge_detection
        assert st.world.pins.stop is not None and fakegpio.has_edge_detection(st.world.pins.stop)


async def test_station_never_releases_every_pin(tmp_path):
    async with running_station(tmp_path, {"sim.stop_button_input": True, "sim.ev_connected_input": True}) as st:
        await st.world.tap(CARD)
        await state_is(st, "Preparing")
    # GPIO.cleanup() would make the contactor pin an input and forget the mode (the real one
    # does): nobody in the station, the mfrc522 library included, may call it.
    assert fakegpio.cleanup_calls == []
    assert fakegpio.getmode() == fakegpio.BCM
