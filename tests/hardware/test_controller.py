"""The charge controller on the emulated RS-485 line, beside the emulated meter: one port, two
addresses, the station's real adapters (pymodbus client) on one shared RtuBus.

The emulated board is register-level and as strict as the documents make the real one (FC6
refused, EEPROM and RAM apart, setpoint 0 = no current, the current after a restart from
EEPROM); its car plugs in, asks, draws up to the offer on 1 or 3 phases (the emulated meter
counts it), fills up, falls asleep, needs ventilation, lacks its diode; the residual current
monitor trips. Every write on the line is recorded by the bus: the daemon's adapter never
writes EEPROM, only `station controller setup` does, and never a value already there.
"""

from __future__ import annotations

import asyncio
import io

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient

from station.core.model import CarState, ControllerFault
from station.emulated.bus import EmulatedBus
from station.emulated.car import Car
from station.emulated.controller_server import EmulatedController, meter_follows
from station.emulated.meter_server import EmulatedMeter
from station.errors import ControllerError
from station.hardware import rtu
from station.hardware.controller import ModbusController
from station.hardware.controller_setup import cli_setup
from station.hardware.meter import ModbusMeter

METER, BOARD = 1, 2


class Line:
    """An emulated line with a meter and a board, and the station's side of it."""

    def __init__(self, model: str = "EVSE-DIN", *, link: str = "socket", installed: bool = True,
                 car: Car | None = None, state_dir=None, max_current_a: float = 16.0) -> None:
        self.model, self.link, self.installed, self.car = model, link, installed, car
        self.state_dir, self.max_current_a = state_dir, max_current_a

    async def __aenter__(self) -> Line:
        self.bus = EmulatedBus(self.link)  # type: ignore[arg-type]
        self.em = EmulatedMeter("SDM630", address=METER, bus=self.bus, tick_s=None)
        self.board = EmulatedController(self.model, address=BOARD, bus=self.bus, installed=self.installed,
                                        car=self.car, state_dir=self.state_dir, tick_s=None)
        self.update = meter_follows(self.board, self.em)
        port = await self.bus.start()
        await self.em.start()
        await self.board.start()
        self.rtubus = rtu.RtuBus(port, timeout_s=2.0)
        self.meter = ModbusMeter("SDM630", port, METER, bus=self.rtubus)
        self.ctl = ModbusController(self.model, port, BOARD, bus=self.rtubus, max_current_a=self.max_current_a)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ctl.close()
        await self.meter.close()
        await self.board.stop()
        await self.em.stop()
        await self.bus.stop()

    def writes_to(self, address: int) -> list[tuple[int, int, tuple[int, ...]]]:
        return [(w.function_code, w.address, w.values) for w in self.bus.writes if w.device == address]


async def test_meter_and_controller_share_one_line_with_the_silence_between_all_frames():
    async with Line(link="pty") as line:
        events: list[tuple[str, float]] = []
        assert line.bus.bridge is not None
        line.bus.bridge.tap = lambda direction, data, t: events.append((direction, t))
        for _ in range(3):
            meter_read, ctl_read = await asyncio.gather(line.meter.read(), line.ctl.read())
            assert meter_read.energy_wh == 0 and ctl_read.car_state is CarState.A
        assert line.rtubus.requests >= 3 * (3 + 1) and line.meter.bus is line.ctl.bus
    gaps, last_reply = [], None
    for direction, t in events:
        if direction == "to_client":
            last_reply = t
        elif last_reply is not None:
            gaps.append(t - last_reply)
            last_reply = None
    assert len(gaps) >= 10 and min(gaps) >= rtu.frame_silence_s(9600)  # across both devices


async def test_a_car_charges_pauses_and_resumes_and_the_meter_counts_it():
    async with Line(car=Car(phases=3, max_current_a=16)) as line:
        line.board.plug()
        r = await line.ctl.read()
        assert r.car_state is CarState.B and r.offered_a == 0 and r.cable_limit_a == 32  # plugged, nothing offered
        await line.ctl.set_current(10)
        r = await line.ctl.read()
        assert r.car_state is CarState.C and r.offered_a == 10 and r.relay_closed
        assert line.em.flowing and line.em.load_w == pytest.approx(10 * 3 * 230)
        line.em.advance(0)  # (the meter integrates with its own clock; load checked above)
        await line.ctl.set_current(0)
        r = await line.ctl.read()
        assert r.car_state is CarState.B and r.offered_a == 0 and not r.relay_closed and not line.em.flowing
        await line.ctl.set_current(16)
        assert (await line.ctl.read()).car_state is CarState.C and line.em.load_w == pytest.approx(16 * 3 * 230)
        line.board.plug(False)
        r = await line.ctl.read()
        assert r.car_state is CarState.A and not line.em.flowing


async def test_the_car_draws_at_most_its_own_limit_and_the_cable_limits_the_offer():
    async with Line(car=Car(phases=1, max_current_a=13), max_current_a=32) as line:
        line.board.cable_a = 20
        line.board.plug()
        await line.ctl.set_current(32)
        r = await line.ctl.read()
        assert r.offered_a == 20 and r.cable_limit_a == 20  # the cable's rating wins
        assert line.em.load_phases == 1 and line.em.load_w == pytest.approx(13 * 230)  # the car's on-board limit


async def test_a_full_battery_and_a_sleeping_car_stop_asking():
    async with Line(car=Car(capacity_wh=1000, stored_wh=999)) as line:
        line.board.plug()
        await line.ctl.set_current(16)
        assert (await line.ctl.read()).car_state is CarState.C
        line.board.tick(line.board._last_t + 60)  # a minute at 11 kW fills the last Wh
        assert line.board.car.full and (await line.ctl.read()).car_state is CarState.B and not line.em.flowing
        line.board.car.stored_wh = 0
        line.board.car.asleep = True
        line.board.car_changed()
        r = await line.ctl.read()
        assert r.car_state is CarState.B and r.offered_a == 16  # offered, but the car does not answer
        assert not line.ctl.can_wake and await line.ctl.wake() is False


@pytest.mark.parametrize("fault", ["diode", "ventilation", "rcd"])
async def test_faults_stop_the_current_and_are_reported(fault):
    async with Line() as line:
        line.board.plug()
        await line.ctl.set_current(16)
        assert (await line.ctl.read()).relay_closed
        if fault == "diode":
            line.board.car.diode_fault = True
            line.board.car_changed()
        elif fault == "ventilation":
            line.board.car.ventilation = True  # the installed board does not permit state D
            line.board.car_changed()
        else:
            line.board.trip_rcd()
        r = await line.ctl.read()
        expected = {"diode": ControllerFault.DIODE_CHECK, "ventilation": ControllerFault.VENTILATION_REQUIRED,
                    "rcd": ControllerFault.RESIDUAL_CURRENT}[fault]
        assert r.faulted and expected in r.faults and r.offered_a == 0 and not r.relay_closed
        assert not line.em.flowing


async def test_a_restarted_board_offers_what_its_eeprom_says():
    async with Line() as line:  # installed: 2000 = 0
        line.board.plug()
        await line.ctl.set_current(16)
        line.board.restart()
        r = await line.ctl.read()
        assert r.setpoint_a == 0 and r.offered_a == 0 and not line.em.flowing  # never charges without the station
    async with Line(installed=False) as line:  # factory: 2000 = 32, Modbus off
        line.board.plug()
        r = await line.ctl.read()
        assert r.offered_a == 32 and line.em.load_w == pytest.approx(16 * 3 * 230)  # the car takes its 16 A
        assert line.ctl.setup_problem and "32 A" in line.ctl.setup_problem


async def test_the_strict_board_refuses_fc6_and_bad_values():
    async with Line() as line:
        client = AsyncModbusSerialClient(line.bus.port, framer=FramerType.RTU, timeout=2.0)
        await client.connect()
        try:
            assert (await client.write_register(1000, 10, device_id=BOARD)).exception_code == 1  # illegal function
            assert (await client.write_registers(1000, [3], device_id=BOARD)).exception_code == 3  # below 2002
            assert (await client.write_registers(1001, [3], device_id=BOARD)).exception_code == 2  # read-only
            assert (await client.read_holding_registers(1500, count=1, device_id=BOARD)).exception_code == 2
            assert (await client.write_registers(1000, [10], device_id=BOARD)).isError() is False
        finally:
            client.close()
        assert line.board.setpoint == 10


async def test_the_daemon_never_writes_eeprom(tmp_path):
    """Everything the adapter does, including recovering from a silent board and a restarted one:
    every write on the line is an FC16 to register 1000, and the board's EEPROM was never written."""
    async with Line(state_dir=tmp_path) as line:
        line.board.plug()
        for amps in (0, 6, 16, 100, 5, 10.5, 0):
            await line.ctl.set_current(amps)
            await line.ctl.read()
            await line.meter.read()
        line.board.set_silent(True)
        with pytest.raises(ControllerError):
            await line.ctl.read()
        line.board.set_silent(False)
        line.board.restart()
        await line.ctl.read()
        await line.ctl.set_current(8)
        writes = line.writes_to(BOARD)
    assert writes and all(fc == 16 and address == 1000 for fc, address, _values in writes)
    assert line.board.eeprom_writes == {}
    assert [v for _fc, _a, (v,) in writes] == [0, 6, 16, 16, 0, 10, 0, 8]


async def test_phoenix_board_on_the_line():
    async with Line("EV-CC-AC1-M3") as line:
        line.board.plug()
        r = await line.ctl.read()
        assert r.car_state is CarState.B and r.offered_a == 0 and line.ctl.setup_problem is None
        await line.ctl.set_current(12)
        r = await line.ctl.read()
        assert r.car_state is CarState.C and r.offered_a == 12 and line.em.flowing
        await line.ctl.set_current(0)
        assert (await line.ctl.read()).offered_a == 0 and not line.em.flowing
        line.board.trip_rcd()
        r = await line.ctl.read()
        assert r.car_state is CarState.F and ControllerFault.RESIDUAL_CURRENT in r.faults
        line.board.restart()  # 20000 back to 0: a restarted controller does not charge
        line.board.clear_rcd()
        assert (await line.ctl.read()).offered_a == 0
    assert all(w.address in (20000, 22000) for w in line.bus.writes)
    assert line.board.eeprom_writes == {}


async def test_setup_writes_only_what_is_wrong_and_refuses_to_rewrite(tmp_path):
    async with Line(installed=False, state_dir=tmp_path) as line:
        port = line.bus.port
        out = io.StringIO()
        assert await cli_setup("EVSE-DIN", port, BOARD, out=out) == 0
        assert "2000 (current_after_boot): 32 -> 0" in out.getvalue() and "2001 (modbus): 0 -> 1" in out.getvalue()
        assert line.board.eeprom[2000] == 0 and line.board.eeprom[2001] == 1
        assert line.board.eeprom_writes == {2000: 1, 2001: 1}
        again = io.StringIO()
        assert await cli_setup("EVSE-DIN", port, BOARD, out=again) == 0
        assert "nothing written" in again.getvalue()
        assert line.board.eeprom_writes == {2000: 1, 2001: 1}  # not rewritten
        line.board.eeprom[2001] = 7  # (a board whose 2001 is its address) stays as it is
        assert await cli_setup("EVSE-DIN", port, BOARD, out=io.StringIO()) == 0
        assert line.board.eeprom[2001] == 7 and line.board.eeprom_writes == {2000: 1, 2001: 1}
        assert all(w.function_code == 16 for w in line.bus.writes)
    # the EEPROM is kept across a restart of the emulator (the state file)
    async with Line(installed=False, state_dir=tmp_path) as line:
        assert line.board.eeprom[2000] == 0 and line.board.eeprom_writes == {2000: 1, 2001: 1}


async def test_phoenix_setup_puts_the_enable_under_modbus_control():
    async with Line("EV-CC-AC1-M3", installed=False) as line:
        assert await cli_setup("EV-CC-AC1-M3", line.bus.port, BOARD, out=io.StringIO()) == 0
        assert line.board.eeprom[4000] == 3 and line.board.eeprom_writes == {4000: 1}
        assert [(w.function_code, w.address) for w in line.bus.writes] == [(6, 4000)]


async def test_the_station_command_reads_and_sets_up_a_board(capsys):
    import json

    from station.cli import main

    async with Line(installed=False) as line:
        port = line.bus.port
        loop = asyncio.get_running_loop()
        code = await loop.run_in_executor(None, main, ["controller", "read", "--model", "evse-din", "--port", port,
                                                       "--address", str(BOARD), "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 0 and doc["car_state"] == "A" and "setup_problem" in doc and line.bus.writes == []
        code = await loop.run_in_executor(None, main, ["controller", "setup", "--model", "EVSE-DIN", "--port", port,
                                                       "--address", str(BOARD)])
        assert code == 0 and "2 setting(s) written" in capsys.readouterr().out
        code = await loop.run_in_executor(None, main, ["controller", "read", "--model", "EVSE-DIN", "--port", port,
                                                       "--address", str(BOARD)])
        assert code == 0 and "Car        A" in capsys.readouterr().out
        code = await loop.run_in_executor(None, main, ["controller", "read", "--model", "EVSE-DIN", "--port", port,
                                                       "--address", "9", "--timeout", "0.3", "--json"])
        assert code == 1 and json.loads(capsys.readouterr().out)["kind"] in ("timeout", "exception")
