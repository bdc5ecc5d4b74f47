"""A whole simulated station with a charge controller (EVSE-DIN) on the emulated RS-485 line, driven by
the car on its pilot: the connector follows the car (issue 20's mapping), the offered current is the
machine's and reaches the board's setpoint register, limits pause and resume, faults of the pilot and
of the board end the session, and the daemon never writes an EEPROM register.

What is asserted comes from the board's side: the emulated board's registers and every write on the
line (EmulatedBus.writes), the emulated meter's register, and the connector's state. Nothing of the
station is mocked. Waits are generous conditions, never timing asserts (docs/benchmarks.md has the
figures).
"""

from __future__ import annotations

import asyncio

from station.core.model import CarState
from station.emulated.bus import EmulatedBus
from station.emulated.car import Car
from station.emulated.controller_server import EmulatedController, meter_follows
from station.emulated.meter_server import EmulatedMeter
from tests.stations import CARD, lcd, running_station, state_is, until

BOARD = 2
DIN = {"controller.model": "EVSE-DIN", "controller.address": BOARD, "controller.max_current_a": 16,
       "controller.poll_interval_s": 0.2}


def board_writes(st) -> list[tuple[int, int, tuple[int, ...]]]:
    return [(w.function_code, w.address, w.values) for w in st.world.bus.writes if w.device == BOARD]


def only_ram_writes(st) -> None:
    """Every write the daemon sent the board: FC16 to the RAM setpoint 1000; no EEPROM write counted."""
    assert {(fc, address) for fc, address, _ in board_writes(st)} <= {(16, 1000)}, board_writes(st)
    assert st.world.controller.eeprom_writes == {}


async def setpoint(st, amps: int, what: str = "") -> None:
    board = st.world.controller
    await until(lambda: board.setpoint == amps * board.scale, 15.0,
                f"setpoint {amps} A {what}(register 1000 = {board.setpoint})")


async def test_charges_pauses_and_resumes_from_the_pilot_states_and_bills_the_meter_s_advance(tmp_path):
    async with running_station(tmp_path, DIN) as st:
        world, board = st.world, st.world.controller
        before = world.meter_wh
        world.plug()
        await state_is(st, "Preparing")  # B without a session
        await asyncio.sleep(0.6)  # a few polls: a car without a session is offered nothing
        assert board.setpoint == 0 and board.offered_a == 0 and board.car_state is CarState.B
        await world.tap(CARD)
        await state_is(st, "Charging")  # C: the car asks, the board offers 16 A (max_current_a)
        await setpoint(st, 16)
        assert board.offered_a == 16 and board.relay_closed and world.power_w > 0
        world.car_full()
        await state_is(st, "SuspendedEV")  # B in a session, current offered
        assert board.setpoint == 16
        world.car_full(False)
        await state_is(st, "Charging")
        st.control.set_current_limit(0)
        await state_is(st, "SuspendedEVSE")  # current withheld
        await setpoint(st, 0, "while paused ")
        assert board.car_state is CarState.B and not board.relay_closed
        st.control.set_current_limit(None)
        await state_is(st, "Charging")
        await setpoint(st, 16, "resumed ")
        await asyncio.sleep(1.0)  # the car draws 16 A on three phases for a while
        world.plug(False)
        await state_is(st, "Available")  # A: the session ends (StopTransactionOnEVSideDisconnect)
        await setpoint(st, 0, "after the unplug ")
        sessions = st.store.sessions()
        assert [s.stop_reason for s in sessions] == ["EVDisconnected"]
        after = world.meter_wh
        assert sessions[0].energy_wh == after - before > 0  # billed = the meter's advance, nothing outside
    only_ram_writes(st)


async def test_an_amps_limit_reaches_the_setpoint_register_and_below_the_minimum_pauses(tmp_path):
    async with running_station(tmp_path, DIN) as st:
        world = st.world
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        st.control.set_current_limit(10)
        await setpoint(st, 10)
        assert (16, 1000, (10,)) in board_writes(st) and world.controller.offered_a == 10
        assert st.control.offered_current() == 10
        st.control.set_current_limit(5.5)  # below controller.min_current_a (6): a pause, not 5 A
        await state_is(st, "SuspendedEVSE")
        await setpoint(st, 0)
        st.control.set_current_limit(6)
        await state_is(st, "Charging")
        await setpoint(st, 6)
    only_ram_writes(st)


async def test_a_watts_limit_is_spread_over_the_phases_the_meter_sees(tmp_path):
    """6900 W: 10 A on three phases until the meter has seen the car draw on one phase only, then
    30 A there (capped at the installation's 16 A)."""
    async with running_station(tmp_path, {**DIN, "sim.car_phases": 1}) as st:
        world = st.world
        st.control.set_power_limit(6900)
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        await setpoint(st, 16, "once the meter sees one phase ")
        assert (16, 1000, (10,)) in board_writes(st)  # first 10 A: three phases assumed (charging.phases)
        reading = st.charger.reading
        assert reading is not None and [a > 0 for a in reading.current_a] == [True, False, False]


async def test_the_cable_s_rating_caps_the_offer(tmp_path):
    async with running_station(tmp_path, {**DIN, "controller.max_current_a": 32, "sim.cable_a": 20}) as st:
        st.world.plug()
        await st.world.tap(CARD)
        await state_is(st, "Charging")
        await setpoint(st, 20)
        assert st.charger.offered_a == 20


async def test_unplugged_with_stop_on_ev_disconnect_off_the_session_waits_without_current(tmp_path):
    async with running_station(tmp_path, DIN) as st:
        world = st.world
        st.control.tune(stop_on_ev_disconnect=False)
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        world.plug(False)
        await state_is(st, "SuspendedEV")
        await setpoint(st, 0, "unplugged ")
        assert st.charger.session is not None
        world.plug()
        await state_is(st, "Charging")
        await setpoint(st, 16, "plugged in again ")
        await world.tap(CARD)
        await state_is(st, "Finishing")  # the card ends it; Finishing until the car is unplugged
        await setpoint(st, 0)
        world.plug(False)
        await state_is(st, "Available")
        assert [s.stop_reason for s in st.store.sessions()] == ["Local"]


async def test_a_residual_current_fault_ends_the_session_and_faults_until_cleared(tmp_path):
    async with running_station(tmp_path, {**DIN, "lcd.cols": 16, "lcd.rows": 2}) as st:
        world = st.world
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        world.inject("rcd-tripped")
        await state_is(st, "Faulted")
        report = st.charger.status()
        assert (report.error_code, report.vendor_error_code) == ("GroundFailure", "ResidualCurrent")
        assert st.store.sessions()[0].stop_reason == "Other"
        await setpoint(st, 0)
        await until(lambda: "Residual current" in lcd(st), what="the LCD saying why")
        await world.tap(CARD)  # refused while Faulted
        assert st.charger.session is None and len(st.store.sessions()) == 1
        world.clear()  # the monitor reset: the car is still plugged in, waiting for a card
        await state_is(st, "Preparing")
        assert st.charger.status().error_code == "NoError"
    only_ram_writes(st)


async def test_the_car_s_diode_and_ventilation_faults_are_named(tmp_path):
    async with running_station(tmp_path, DIN) as st:
        world = st.world
        world.plug()
        world.car_diode_fault()
        await state_is(st, "Faulted")
        assert st.charger.status().vendor_error_code == "DiodeCheck"
        world.car_diode_fault(False)  # the car's own fault stays until that car leaves
        await asyncio.sleep(0.6)
        assert st.charger.state.value == "Faulted"
        world.plug(False)
        await state_is(st, "Available")
        world.car_ventilation()  # another car: it asks in D; the installed board does not permit it
        world.plug()
        await state_is(st, "Preparing")
        await world.tap(CARD)
        await state_is(st, "Faulted")
        assert st.charger.status().vendor_error_code == "VentilationRequired"
        assert [s.stop_reason for s in st.store.sessions()] == ["Other"]
        await setpoint(st, 0)
        await asyncio.sleep(0.6)  # offered nothing, the board no longer reports it; the car is the same
        assert st.charger.state.value == "Faulted"
        world.plug(False)
        await state_is(st, "Available")


async def test_a_silent_controller_is_a_fault_after_its_failures_and_recovers(tmp_path):
    async with running_station(tmp_path, {**DIN, "controller.max_failures": 2, "meter.timeout_s": 0.2}) as st:
        world = st.world
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        world.inject("controller-silent")
        await state_is(st, "Faulted", timeout=15)
        assert st.charger.status().vendor_error_code == "ControllerFailure"
        assert st.store.sessions()[0].stop_reason == "Other"
        world.clear()
        await state_is(st, "Preparing", timeout=15)
        await setpoint(st, 0)


async def test_a_lost_meter_ends_the_session_with_zero_amps(tmp_path):
    async with running_station(tmp_path, {**DIN, "meter.max_failures": 2}) as st:
        world = st.world
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        await setpoint(st, 16)
        world.inject("meter-silent")
        await state_is(st, "Faulted", timeout=20)
        assert st.charger.status().error_code == "PowerMeterFailure"
        await setpoint(st, 0, "with the meter lost ")
        assert st.store.sessions()[0].stop_reason == "Other" and not world.controller.relay_closed


async def test_a_board_that_restarts_mid_session_gets_its_setpoint_again(tmp_path):
    async with running_station(tmp_path, DIN) as st:
        world = st.world
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        await setpoint(st, 16)
        session = st.charger.session
        assert session is not None
        world.inject("controller-restart")  # RAM from EEPROM: 0 A after `controller setup`
        assert world.controller.setpoint == 0
        await setpoint(st, 16, "written again ")
        # The car may have paused while offered 0 A (SuspendedEV) and draws again at the next poll:
        # the same session goes on.
        await state_is(st, "Charging")
        assert st.charger.session is not None and st.charger.session.id == session.id
    only_ram_writes(st)


async def test_the_supervisor_s_exit_sets_zero_amps(tmp_path):
    """The pilot loop itself hangs: the supervisor gives up, and the daemon's failure path writes 0 A
    (before the stop, which would write it again)."""
    async with running_station(tmp_path, DIN, graceful=False) as st:
        world = st.world
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        await setpoint(st, 16)
        world.inject("loop-hang", "pilot")
        await until(lambda: st.failure is not None, 30.0, "the supervisor's exit")
        assert "pilot" in st.failure
        await setpoint(st, 0, "after the exit ")
        assert st.charger.session is not None  # still open: closed as PowerLoss at the next start
    only_ram_writes(st)


async def test_a_board_not_set_up_is_a_named_fault_that_refuses_sessions(tmp_path):
    """A board as it leaves the factory (Modbus control off, 32 A after its own restart): the station
    starts Faulted with the installer's fix in the reason, refuses the card and offers nothing."""
    line = EmulatedBus("socket")
    meter = EmulatedMeter("SDM630", address=1, bus=line, tick_s=None)
    board = EmulatedController("EVSE-DIN", address=BOARD, bus=line, car=Car(), tick_s=None, installed=False)
    meter_follows(board, meter)
    port = await line.start()
    await meter.start()
    await board.start()
    try:
        overrides = {**DIN, "hardware.emulate_bus": False, "meter.port": port, "meter.timeout_s": 1.0}
        async with running_station(tmp_path, overrides) as st:
            await state_is(st, "Faulted")
            report = st.charger.status()
            assert report.vendor_error_code == "ControllerSetup"
            fault = st.charger.faults.get("controller")
            assert fault is not None and "station controller setup" in fault.text and "2000" in fault.text
            board.plug()
            await st.world.tap(CARD)
            assert st.store.sessions() == [] or st.store.sessions()[0].state == "refused"
            assert st.charger.session is None
        # The board in stand-alone mode offers its own 32 A: what the fault is about. The station wrote
        # only 0 A to register 1000 and never its EEPROM.
        assert {(w.function_code, w.address, w.values) for w in line.writes if w.device == BOARD} == {(16, 1000, (0,))}
        assert board.eeprom_writes == {}
    finally:
        await board.stop()
        await meter.stop()
        await line.stop()


async def test_an_mcsp_site_cap_becomes_the_offered_current_and_the_station_reports_its_currents(tmp_path):
    """A reference server sharing a site limit of 10 A: the cap it sends is the station's current limit
    (through StationControl), written to the board; the station tells the server what it offers and
    what its car draws (Current-Offered, Current-Drawn)."""
    from station.servers.mcsp import McspServer
    from station.servers.mcsp.sharing import Sharing

    server = McspServer(tags={CARD: "Apartment 2"})
    server.share_site_limit(Sharing(10.0, min_current_a=6.0, headroom_a=1.0))
    await server.start()
    try:
        overrides = {**DIN, "backend.kind": "mcsp", "backend.mcsp.url": server.url, "backend.mcsp.heartbeat_s": 5.0}
        async with running_station(tmp_path, overrides) as st:
            assert await st.backend.wait_ready(10)
            st.world.plug()
            await st.world.tap(CARD)
            await state_is(st, "Charging", timeout=20)
            await setpoint(st, 10, "the server's cap ")
            assert st.charger.limit_a == 10
            load = server.sharing.stations[st.config.station.name]
            await until(lambda: load.reports and load.offered_a == 10 and load.drawn_a == 10, 20.0,
                        "the server knowing what the station offers and its car draws")
            await st.world.tap(CARD)
            await state_is(st, "Finishing", timeout=20)
            await until(lambda: load.offered_a == 0, 20.0, "the station reporting it offers nothing")
    finally:
        await server.close()


async def test_without_a_gpio_contactor_the_board_s_relay_switches_the_car(tmp_path):
    """contactor.enabled = false: nothing on the contactor's GPIO pin; the board's relay alone switches
    the car, and the station has no auxiliary contact to watch."""
    from station.emulated import fakegpio

    overrides = {**DIN, "contactor.enabled": False}
    async with running_station(tmp_path, overrides) as st:
        world, board = st.world, st.world.controller
        assert st.hardware.contactor.feedback() is None and world.pins.feedback is None
        before = world.meter_wh
        world.plug()
        await world.tap(CARD)
        await state_is(st, "Charging")
        await setpoint(st, 16)
        assert world.contactor_closed and board.relay_closed and world.power_w > 0
        assert fakegpio.level(st.config.contactor.pin) is None  # the pin was never set up
        await asyncio.sleep(1.0)
        await world.tap(CARD)
        await state_is(st, "Finishing")
        await until(lambda: not world.contactor_closed, what="the board's relay open")
        session = st.store.sessions()[0]
        assert session.energy_wh == world.meter_wh - before > 0
    only_ram_writes(st)
