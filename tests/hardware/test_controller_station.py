"""A whole simulated station with a charge controller on the emulated line: the hardware is built and
wired (meter and controller on one line), no current is offered at start (even when the board's RAM
still holds the last run's current, as after a kill -9), nor to a car plugged in without a session,
nor after the station stops; and `hardware.emulate_bus = false` reads real RS-485 devices while the
reader, GPIO and LCD stay emulated. The core's driving of the board is in test_controller_wiring.py.
"""

from __future__ import annotations

import asyncio

import pytest

from station.core.model import CarState
from station.emulated.bus import EmulatedBus
from station.emulated.car import Car
from station.emulated.controller_server import EmulatedController, meter_follows
from station.emulated.meter_server import EmulatedMeter
from station.hardware.controller import ModbusController
from tests.stations import running_station, state_is, until

WITH_CONTROLLER = {"controller.model": "EVSE-DIN", "controller.address": 2, "controller.max_current_a": 16}


async def test_a_station_with_a_controller_offers_nothing_at_start_and_at_stop(tmp_path):
    async with running_station(tmp_path, WITH_CONTROLLER) as st:
        ctl = st.hardware.controller
        board = st.world.controller
        assert isinstance(ctl, ModbusController) and ctl.bus is st.hardware.meter.bus  # one line
        assert board.setpoint == 0
        st.world.plug()
        await state_is(st, "Preparing")  # a car without a session: waiting for a card, offered nothing
        r = await ctl.read()
        assert r.car_state is CarState.B and r.offered_a == 0 and st.world.pilot_text().startswith("state B")
        board.setpoint = 16  # the board's RAM says 16 A (someone else wrote it): the car would charge
        board.car_changed()
        # The station reads the setpoint at its next poll and writes its own 0 A back.
        await until(lambda: board.setpoint == 0 and board.car_state is CarState.B, what="0 A written back")
        assert st.charger.session is None and st.charger.state.value == "Preparing"
    assert board.setpoint == 0  # and the station's stop set 0 A
    writes = [(w.function_code, w.address, w.values) for w in st.world.bus.writes if w.device == 2]
    assert len(writes) >= 4 and set(writes) == {(16, 1000, (0,))}  # start, the core's first, the fix, the stop
    assert board.eeprom_writes == {}
    board_state = tmp_path / "sim-controller.json"
    assert board_state.exists()


async def test_a_restart_after_a_kill_sets_zero_before_anything_else(tmp_path):
    """After a kill -9 the board keeps its RAM (it did not lose power): still offering the last
    session's 16 A to a car that is plugged in and charging. The restarted station sets 0 A while
    it builds its hardware, before the core, the backend or a tap."""
    line = EmulatedBus("pty")
    meter = EmulatedMeter("SDM630", address=1, bus=line, tick_s=None)
    board = EmulatedController("EVSE-DIN", address=2, bus=line, car=Car(), tick_s=None)
    meter_follows(board, meter)
    port = await line.start()
    await meter.start()
    await board.start()
    try:
        board.setpoint = 16
        board.plug()
        assert board.car_state is CarState.C and meter.flowing  # charging without anyone's session
        overrides = {**WITH_CONTROLLER, "hardware.emulate_bus": False, "meter.port": port, "meter.timeout_s": 1.0}
        async with running_station(tmp_path, overrides) as st:
            assert st.hardware.controller is not None
            assert board.setpoint == 0 and board.car_state is CarState.B and not meter.flowing
            assert [(w.function_code, w.address, w.values) for w in line.writes][:1] == [(16, 1000, (0,))]
    finally:
        await board.stop()
        await meter.stop()
        await line.stop()


async def test_the_real_rs485_devices_in_simulation(tmp_path):
    """hardware.emulate_bus = false: the station reads devices on meter.port that the simulator did
    not make (here an emulated line of the test's own, on a pseudo-terminal, standing in for a USB
    adapter with a meter and a board on it)."""
    line = EmulatedBus("pty")
    meter = EmulatedMeter("SDM630", address=1, bus=line, initial_wh=123_456, tick_s=None)
    board = EmulatedController("EVSE-DIN", address=2, bus=line, car=Car(), tick_s=None)
    meter_follows(board, meter)
    port = await line.start()
    await meter.start()
    await board.start()
    try:
        overrides = {**WITH_CONTROLLER, "hardware.emulate_bus": False, "meter.port": port, "meter.timeout_s": 1.0}
        async with running_station(tmp_path, overrides) as st:
            assert st.world.meter is None and st.world.controller is None and st.world.meter_port == ""
            await until(lambda: st.charger.reading is not None and st.charger.reading.energy_wh == 123_456,
                        what="the real meter's reading")
            board.plug()
            r = await st.hardware.controller.read()
            assert r.car_state is CarState.B and board.setpoint == 0
            assert st.world.lcd_text()  # the LCD is still the emulated one
            assert st.world.meter_wh == 123_456
        assert board.setpoint == 0
    finally:
        await board.stop()
        await meter.stop()
        await line.stop()
        await asyncio.sleep(0)


async def test_the_terminal_view_shows_the_pilot(tmp_path):
    from station.sim.tui import render

    async with running_station(tmp_path, WITH_CONTROLLER) as st:
        st.world.plug()
        text = render(st, color=False)
    assert "pilot      state B, offered 0 A" in text


async def test_the_worlds_controller_faults_and_car(tmp_path):
    from station.core.model import ControllerFault
    from station.errors import ControllerError

    async with running_station(tmp_path, {**WITH_CONTROLLER, "sim.car_phases": 1, "sim.cable_a": 20}) as st:
        world, ctl = st.world, st.hardware.controller
        world.plug()
        assert world.car.phases == 1 and world.controller.cable_a == 20
        world.inject("rcd-tripped")
        assert ControllerFault.RESIDUAL_CURRENT in (await ctl.read()).faults
        world.car_diode_fault()
        assert ControllerFault.DIODE_CHECK in (await ctl.read()).faults
        world.car_diode_fault(False)
        world.clear()
        assert not (await ctl.read()).faulted
        world.inject("controller-silent")
        with pytest.raises(ControllerError):
            await ctl.read()
        world.clear()
        world.controller.setpoint = 10
        world.inject("controller-restart")
        assert (await ctl.read()).setpoint_a == 0  # from its EEPROM: 0 after setup
