"""The charge controller adapters against register tables typed by hand from the manufacturers'
documents, served by pymodbus' own RTU server on a real pseudo-terminal pair.

Nothing here comes from station/hardware/controllers/models.py or the emulated board: each table
below is written from the document named above it (docs/hardware.md section 6 gives the table and
page), and the expected readings are worked out by hand. The servers are as strict as the boards:
the EVSE-DIN family refuses "write single register" (FC6) with exception 1 and keeps to its two
register blocks; every write that reaches a server is recorded, so the tests also prove which
registers the adapter writes, with which function code, and that it never writes 2000-2017.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from station.core.model import CarState, ControllerFault
from station.emulated.meter_server import PtyBridge
from station.errors import ControllerError
from station.hardware.controller import ModbusController, cli_read

ADDRESS = 3


def regs(start: int, values: list[int]) -> SimData:
    return SimData(start, values=values, datatype=DataType.REGISTERS)


def ascii2(text: str) -> int:
    """Two ASCII characters in one register, the first in the high byte (Phoenix 24000)."""
    return ord(text[0]) << 8 | (ord(text[1]) if len(text) > 1 else 0)


@contextlib.asynccontextmanager
async def served(simdata: tuple, *, refuse_fc6: bool = False,
                 refuse: dict[int, ExcCodes] | None = None) -> AsyncIterator[tuple[str, list[tuple[int, int, list]]]]:
    """pymodbus' server with `simdata` (coils, discrete inputs, holding, input) at ADDRESS on a pty
    pair; yields the client's port and the list of writes (function code, address, values)."""
    writes: list[tuple[int, int, list]] = []

    async def action(function_code, start_address, address, count, registers, set_values):
        if refuse and address in refuse and set_values is None:
            return refuse[address]
        if set_values is None:
            return None
        if refuse_fc6 and function_code == 6:
            return ExcCodes.ILLEGAL_FUNCTION  # the EVSE-DIN family implements FC16 only
        writes.append((function_code, address, list(set_values)))
        return None

    bridge = PtyBridge(asyncio.get_running_loop())
    server = ModbusSerialServer(SimDevice(id=ADDRESS, simdata=simdata, action=action), framer=FramerType.RTU,
                                port=bridge.server_path, baudrate=9600)
    await server.serve_forever(background=True)
    try:
        yield bridge.client_path, writes
    finally:
        await server.shutdown()
        bridge.close()


NO_BITS = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
NO_REGS = [SimData(0xFFF0, count=1, values=0, datatype=DataType.REGISTERS)]


# -- EVSE-DIN / EVSE-WB / SimpleEVSE-WB ---------------------------------------------------------------
# Holding registers (FC03; writes FC16 only), from the maker's register description as its own
# read script prints it (1000 actual amps, 1001 amps on the PWM output, 1002 vehicle state
# 1=ready 2=present 3=charging 4=ventilation 5=failure, 1003 cable limit, 1004 commands,
# 1005 firmware, 1006 EVSE state 1=12 V 2=PWM 3=off, 1007 status bits: b0 relay, b1 diode
# check fail, b2 vent required fail, b3 waiting for pilot release, b4 RCD test in progress,
# b5 RCD check error, 1008 error countdown; 2000 default amps after boot, 2001 Modbus, 2002
# minimum amps, 2003 analog input, 2004 save amps by button, 2005 config bits, 2006 reserved,
# 2007 PP detection limit, 2008 reserved, 2009 bootloader revision, 2010-2017 button amps).


def din(runtime: list[int], config: list[int] | None = None) -> tuple:
    """The board's two blocks: 1000-1010 and 2000-2017 (nothing between, nothing beyond)."""
    config = config or [0, 1, 5, 0, 0, 0x0208, 0, 0, 0, 3, 6, 10, 16, 25, 32, 48, 63, 80]
    runtime = runtime + [0] * (11 - len(runtime))
    return (NO_BITS, list(NO_BITS), [regs(1000, runtime), regs(2000, config)], NO_REGS)


CHARGING_16A = din([16, 16, 3, 32, 0, 18, 2, 0b000001, 0])  # car C, PWM at 16 A, relay on, 32 A cable


async def test_evse_din_reads_a_charging_car():
    async with served(CHARGING_16A, refuse_fc6=True) as (port, writes):
        ctl = ModbusController("EVSE-DIN", port, ADDRESS, timeout_s=2.0, max_current_a=32)
        try:
            r = await ctl.read()
        finally:
            await ctl.close()
    assert r.car_state is CarState.C and r.car_state.requesting and r.car_state.plugged
    assert r.offered_a == 16 and r.setpoint_a == 16 and r.cable_limit_a == 32
    assert r.faults == frozenset() and not r.faulted and r.relay_closed is True
    assert r.firmware == "18" and ctl.firmware == "18"
    assert ctl.setup_problem is None  # 2000 = 0, 2001 = 1
    assert writes == []  # reading writes nothing


@pytest.mark.parametrize("runtime, state, faults", [
    ([0, 0, 1, 0, 0, 18, 1, 0], CarState.A, set()),  # ready, steady 12 V
    ([10, 10, 2, 20, 0, 18, 2, 0], CarState.B, set()),  # car present, PWM offered, not drawing
    ([10, 10, 4, 20, 0, 18, 2, 1], CarState.D, set()),  # charging with ventilation
    ([10, 0, 5, 20, 0, 18, 3, 0b000010], CarState.E, {ControllerFault.DIODE_CHECK}),
    ([10, 0, 5, 20, 0, 18, 3, 0b000100], CarState.E, {ControllerFault.VENTILATION_REQUIRED}),
    ([10, 0, 5, 20, 0, 18, 3, 0b100000], CarState.E, {ControllerFault.RESIDUAL_CURRENT}),
    ([10, 0, 5, 20, 0, 18, 3, 0b011000], CarState.E, {ControllerFault.OTHER}),  # recovery delay, RCD test: no named fault
])
async def test_evse_din_states_and_fault_bits(runtime, state, faults):
    async with served(din(runtime)) as (port, _writes):
        ctl = ModbusController("EVSE-DIN", port, ADDRESS, timeout_s=2.0)
        try:
            r = await ctl.read()
        finally:
            await ctl.close()
    assert r.car_state is state and set(r.faults) == faults
    assert r.faulted == (state is CarState.E)
    expected_offer = runtime[1] if runtime[6] == 2 else 0  # 1001 only while the PWM runs (1006 = 2)
    assert r.offered_a == expected_offer


async def test_evse_din_sets_the_current_with_fc16_on_register_1000_only():
    async with served(CHARGING_16A, refuse_fc6=True) as (port, writes):
        ctl = ModbusController("EVSE-DIN", port, ADDRESS, timeout_s=2.0, min_current_a=6, max_current_a=16)
        try:
            assert await ctl.set_current(10) == 10
            assert await ctl.set_current(10.9) == 10  # rounded down: never more than asked
            assert await ctl.set_current(0) == 0
            assert await ctl.set_current(5.9) == 0  # below the minimum: nothing, not 5.9 A
            assert await ctl.set_current(100) == 16  # never above the installation's rating
        finally:
            await ctl.close()
    assert writes == [(16, 1000, [10]), (16, 1000, [10]), (16, 1000, [0]), (16, 1000, [0]), (16, 1000, [16])]


def test_the_offer_is_whole_amps_between_the_minimum_and_the_maximum():
    ctl = ModbusController("EVSE-DIN", "/dev/null", ADDRESS, min_current_a=6.5, max_current_a=16.5)
    assert [ctl.clamp(a) for a in (0, 6.4, 6.7, 7.2, 16.4, 17, float("nan"), float("inf"))] == \
        [0, 0, 0, 7, 16, 16, 0, 16]  # 6.7 rounds down to 6, below the minimum: nothing; inf: no limit
    with pytest.raises(ValueError):
        ModbusController("EV-CC-AC1-M3", "/dev/null", ADDRESS, max_current_a=80)  # more than it can signal


async def test_the_strict_board_refuses_fc6_and_the_adapter_never_sends_it():
    async with served(CHARGING_16A, refuse_fc6=True) as (port, writes):
        client = AsyncModbusSerialClient(port, framer=FramerType.RTU, timeout=2.0)
        await client.connect()
        try:
            rr = await client.write_register(1000, 8, device_id=ADDRESS)  # what a careless driver sends
            assert rr.isError() and rr.exception_code == 1  # illegal function
            rr = await client.write_registers(1000, [8], device_id=ADDRESS)
            assert not rr.isError()
        finally:
            client.close()
        assert writes == [(16, 1000, [8])]
        ctl = ModbusController("EVSE-DIN", port, ADDRESS, timeout_s=2.0)
        try:
            await ctl.set_current(12)
        finally:
            await ctl.close()
    assert writes[-1] == (16, 1000, [12])


async def test_evse_din_in_hundredths_of_an_amp():
    # 2005 bit 7 on firmware 17 and later: 1000 and 1001 in 0.01 A.
    config = [0, 1, 5, 0, 0, 0x0208 | 0x80, 0, 0, 0, 3, 6, 10, 16, 25, 32, 48, 63, 80]
    async with served(din([1650, 1650, 3, 32, 0, 18, 2, 1], config)) as (port, writes):
        ctl = ModbusController("EVSE-DIN", port, ADDRESS, timeout_s=2.0, max_current_a=20)
        try:
            r = await ctl.read()
            await ctl.set_current(10.5)
        finally:
            await ctl.close()
    assert r.offered_a == 16.5 and r.setpoint_a == 16.5
    assert writes == [(16, 1000, [1000])]  # 10 A (whole amps), in hundredths


async def test_evse_din_setup_problems_are_reported():
    factory = [32, 0, 5, 0, 0, 0x0208, 0, 0, 0, 3, 6, 10, 16, 25, 32, 48, 63, 80]  # 32 A after boot, Modbus off
    async with served(din([0, 0, 1, 0, 0, 18, 1, 0], factory)) as (port, _writes):
        ctl = ModbusController("EVSE-DIN", port, ADDRESS, timeout_s=2.0)
        try:
            await ctl.read()
        finally:
            await ctl.close()
    assert ctl.setup_problem is not None
    assert "32 A" in ctl.setup_problem and "2001" in ctl.setup_problem and "station controller setup" in ctl.setup_problem


async def test_an_exception_reply_is_a_controller_error_with_its_code():
    async with served(CHARGING_16A, refuse={1000: ExcCodes.DEVICE_BUSY}) as (port, _writes):
        ctl = ModbusController("EVSE-DIN", port, ADDRESS, timeout_s=2.0)
        try:
            with pytest.raises(ControllerError) as exc:
                await ctl.read()
        finally:
            await ctl.close()
    assert exc.value.kind == "exception" and exc.value.code == 6 and "exception code 6" in str(exc.value)


async def test_a_board_that_does_not_answer_is_a_timeout():
    async with served(CHARGING_16A) as (port, _writes):
        ctl = ModbusController("EVSE-DIN", port, ADDRESS + 1, timeout_s=0.3)  # nobody at that address
        try:
            with pytest.raises(ControllerError) as exc:
                await ctl.read()
        finally:
            await ctl.close()
    assert exc.value.kind in ("timeout", "exception")  # pymodbus 3.16.1 answers code 4 for unknown ids


# -- Phoenix Contact EV-CC-AC1-M3 ------------------------------------------------------------------------
# User manual 106377_en_04, 9.2 Table 9-2 "Register assignment" (pages 54-62): input 1031
# firmware (identification letter in the MSB, major version in the LSB), 1032 version, 1033 minor;
# holding 4000 enable-charging configuration (3: enabled by coil 20000); coil 20000 enable (1 =
# charging process enabled); holding 22000 maximum charging current 6-63 A (volatile); holding
# 24000 system status, 2 x ASCII (A1 .. D2, E, F); 24001 proximity (13/20/32/63 A, 0 open, FFFF
# error); 24002 duty cycle %; 24003 CP current in A; 24025 error status (bit 2 13 A cable
# rejected, 3 invalid PP, 4 invalid CP, 5 status F, 11 status D rejected, 12 contactor error,
# 13 no diode, 15 EV-RCM residual current).


def phoenix(status: str, *, cable: int = 32, duty: int = 27, pilot_a: int = 16, errors: int = 0,
            enabled: bool = True, enable_mode: int = 3, as_input: bool = False) -> tuple:
    coils = [SimData(20000, values=[enabled] + [False] * 15, datatype=DataType.BITS)]
    holding = [regs(4000, [enable_mode]), regs(22000, [pilot_a]),
               regs(24025, [errors])]
    inputs = [regs(1031, [ord("V") << 8 | 1, 4, 2])]
    status_block = regs(24000, [ascii2(status), cable, duty, pilot_a, 0, 0])
    if as_input:
        inputs.append(status_block)  # how evcc reads them (as input registers)
        holding = [regs(4000, [enable_mode]), regs(22000, [pilot_a])]
        inputs.append(regs(24025, [errors]))
    else:
        holding.append(status_block)
    return (coils, list(NO_BITS), holding, inputs)


async def test_phoenix_reads_a_charging_car():
    async with served(phoenix("C2")) as (port, writes):
        ctl = ModbusController("EV-CC-AC1-M3", port, ADDRESS, timeout_s=2.0, max_current_a=32)
        try:
            r = await ctl.read()
        finally:
            await ctl.close()
    assert r.car_state is CarState.C and r.offered_a == 16 and r.setpoint_a == 16 and r.cable_limit_a == 32
    assert not r.faulted and ctl.firmware == "V1.4.2" and ctl.setup_problem is None
    assert writes == []


@pytest.mark.parametrize("status, errors, state, offered, faults", [
    ("A1", 0, CarState.A, 0, set()),
    ("B1", 0, CarState.B, 0, set()),  # PWM off: nothing offered
    ("B2", 0, CarState.B, 16, set()),
    ("C1", 0, CarState.C, 0, set()),
    ("D2", 0, CarState.D, 16, set()),
    ("E0", 1 << 13, CarState.E, 0, {ControllerFault.DIODE_CHECK}),
    ("F0", 1 << 15, CarState.F, 0, {ControllerFault.RESIDUAL_CURRENT}),
    ("B1", 1 << 11, CarState.B, 0, {ControllerFault.VENTILATION_REQUIRED}),
    ("F", 1 << 12, CarState.F, 0, {ControllerFault.CONTACTOR}),
])
async def test_phoenix_states_and_error_bits(status, errors, state, offered, faults):
    async with served(phoenix(status, errors=errors)) as (port, _writes):
        ctl = ModbusController("EV-CC-AC1-M3", port, ADDRESS, timeout_s=2.0)
        try:
            r = await ctl.read()
        finally:
            await ctl.close()
    assert r.car_state is state and r.offered_a == offered and set(r.faults) == faults


async def test_phoenix_sets_the_current_in_22000_and_pauses_with_coil_20000():
    async with served(phoenix("B1", enabled=False)) as (port, writes):
        ctl = ModbusController("EV-CC-AC1-M3", port, ADDRESS, timeout_s=2.0, max_current_a=20)
        try:
            assert await ctl.set_current(20) == 20
            assert await ctl.set_current(0) == 0
            assert await ctl.set_current(3) == 0
        finally:
            await ctl.close()
    assert writes == [(6, 22000, [20]), (5, 20000, [True]), (5, 20000, [False]), (5, 20000, [False])]
    assert all(address != 4000 for _fc, address, _v in writes)  # the retentive configuration stays


async def test_phoenix_status_as_input_registers_where_the_board_wants_them():
    async with served(phoenix("C2", as_input=True)) as (port, _writes):
        ctl = ModbusController("EV-CC-AC1-M3", port, ADDRESS, timeout_s=2.0)
        try:
            r = await ctl.read()
            r2 = await ctl.read()
        finally:
            await ctl.close()
    assert r.car_state is CarState.C and r2.offered_a == 16


async def test_phoenix_enable_not_under_modbus_control_is_a_setup_problem():
    async with served(phoenix("A1", enable_mode=1)) as (port, _writes):
        ctl = ModbusController("EV-CC-AC1-M3", port, ADDRESS, timeout_s=2.0)
        try:
            await ctl.read()
        finally:
            await ctl.close()
    assert ctl.setup_problem is not None and "4000 = 1" in ctl.setup_problem


async def test_controller_read_json(capsys):
    import json

    async with served(CHARGING_16A) as (port, writes):
        code = await cli_read("evse-din", port, ADDRESS, as_json=True, timeout_s=2.0)
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and writes == []
    assert doc["car_state"] == "C" and doc["offered_a"] == 16 and doc["registers"]["current_after_boot"] == 0
