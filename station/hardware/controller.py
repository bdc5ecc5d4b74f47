"""The charge controller adapter: a control-pilot board on Modbus RTU, through pymodbus 3.16.

Theory of operation
-------------------
`ModbusController` implements the `ChargeController` port for any model in
station/hardware/controllers/models.py. It sends its requests through an
`RtuBus` (station/hardware/rtu.py), usually the kWh meter's: one port, one
request at a time on the line, the 3.5-character silence kept between the
meter's frames and the controller's.

Reading. The first request on a link reads the model's `identify` registers
(configuration and firmware), then every `read()` sends the model's `poll`
and decodes it with the model family's function into a `ControllerReading`.
What `identify` finds wrong with the board's own settings (it would offer
current after a restart of its own; Modbus control is off; the Phoenix
controller's enable is not under Modbus control) is kept in `setup_problem`
and logged once: `station controller setup` fixes it.

Writing. `set_current(amps)` clamps to the installation (`max_current_a`
never exceeded, below `min_current_a` nothing) and writes only the model's
volatile current register (and, for boards that pause with a coil, that
coil), with the one function code the board takes for it (the EVSE-DIN
family implements "write multiple registers", FC16, and not FC6). All writes
go through `_write`, which refuses any register whose memory is not RAM: the
daemon has no way to write a board's EEPROM. A current is rounded down to the
board's step, never up.

Failures raise `ControllerError` (kinds as for the meter: port, timeout, crc,
garbled, exception, decode) and close the bus's client, as the meter does, so
that no late reply is ever taken for the next answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from station.core.model import ControllerReading
from station.errors import ControllerError
from station.hardware import rtu
from station.hardware.controllers.models import (
    ControllerModel,
    Read,
    Register,
    decode_evse_din,
    decode_phoenix,
    evse_din_scale,
    get_model,
    phoenix_firmware,
)

log = logging.getLogger(__name__)


@dataclass
class ControllerStats:
    readings: int = 0
    failures: int = 0
    writes: int = 0
    requests: int = 0
    bytes_sent: int = 0


class ModbusController:
    """A charge controller of a known model on a Modbus line. Implements ChargeController."""

    can_wake = False  # neither family has a register that interrupts the pilot (docs/hardware.md 6)

    def __init__(self, model: str | ControllerModel, port: str = "", address: int = 1, *,
                 bus: rtu.RtuBus | None = None, min_current_a: float = 6.0, max_current_a: float = 16.0,
                 baudrate: int = 9600, parity: str = "N", stopbits: int = 1, timeout_s: float = 0.5,
                 turnaround_s: float = 0.0, rs485_rts: bool = False, rs485_rts_level_for_tx: bool = True) -> None:
        self.model_data: ControllerModel = get_model(model) if isinstance(model, str) else model
        m = self.model_data
        self.model: str = m.name
        if not 1 <= address <= 247:
            raise ValueError(f"Modbus address {address} out of range 1..247")
        if not m.min_current_a <= min_current_a <= max_current_a <= m.max_current_a:
            raise ValueError(f"{m.name}: currents must satisfy {m.min_current_a} <= min_current_a ({min_current_a:g}) "
                             f"<= max_current_a ({max_current_a:g}) <= {m.max_current_a} A")
        self.address = address
        self.min_current_a, self.max_current_a = float(min_current_a), float(max_current_a)
        self.bus = bus or rtu.RtuBus(port, baudrate=baudrate, parity=parity, stopbits=stopbits, timeout_s=timeout_s,
                                     turnaround_s=turnaround_s, rs485_rts=rs485_rts,
                                     rs485_rts_level_for_tx=rs485_rts_level_for_tx)
        self.stats = ControllerStats()
        self.firmware: str | None = None
        self.setup_problem: str | None = None
        self.config: dict[str, int] = {}  # identify's registers by name (setup and `controller read`)
        self.last_set_a: float | None = None  # what set_current last wrote
        self._identified = False
        self._scale = 1  # register units per amp (EVSE-DIN firmware 17+: 100 with 2005 bit 7)
        self._setpoint: float | None = None  # Phoenix: 22000 as read or written (volatile)
        self._input_tables: set[int] = set()  # holding reads the board wanted as input registers
        self._lock = asyncio.Lock()

    port = rtu.bus_setting("port")

    @property
    def what(self) -> str:
        return f"charge controller {self.model} at address {self.address} on {self.port}"

    # -- requests --------------------------------------------------------------------------------
    async def _call(self, op: Any, function_code: int, count: int, request: str) -> Any:
        rr = await self.bus.call(op, device_id=self.address, function_code=function_code, count=count,
                                 what=self.what, request=request, error=ControllerError,
                                 device="charge controller", silence_hint=self._silence_hint(), stats=self.stats)
        if rr.isError():
            code = getattr(rr, "exception_code", None)
            raise ControllerError(f"{self.what}: exception code {code} to {request}", kind="exception",
                                  code=code if isinstance(code, int) else None, hint=self._exception_hint(code))
        return rr

    async def _read(self, r: Read) -> list[int]:
        table = "input" if r.table == "holding" and r.address in self._input_tables else r.table
        request = f"a read of {r.count} {table} {'coils' if table == 'coil' else 'registers'} at {r.address}"

        async def op(client: Any) -> Any:
            if table == "coil":
                return await client.read_coils(r.address, count=r.count, device_id=self.address)
            if table == "input":
                return await client.read_input_registers(r.address, count=r.count, device_id=self.address)
            return await client.read_holding_registers(r.address, count=r.count, device_id=self.address)

        fc = {"coil": 1, "input": 4, "holding": 3}[table]
        try:
            rr = await self._call(op, fc, r.count, request)
        except ControllerError as exc:
            if exc.code in (1, 2) and table == "holding" and self.model_data.holding_or_input:
                log.info("%s refused %s (code %s): reading it as input registers", self.what, request, exc.code)
                self._input_tables.add(r.address)
                return await self._read(r)
            raise
        values = [int(b) for b in rr.bits[:r.count]] if table == "coil" else list(rr.registers)
        if len(values) < r.count:
            raise ControllerError(f"{self.what}: asked {request}, got {len(values)} values", kind="garbled")
        return values

    async def _write(self, reg: Register, value: int) -> None:
        """The one way the adapter writes: volatile registers only (never EEPROM)."""
        if not reg.writable_at_run:
            raise ControllerError(f"{self.what}: register {reg.address} ({reg.name}) is not written at run time "
                                  f"({reg.memory})", kind="other")
        m = self.model_data
        if reg.table == "coil":
            fc, request = 5, f"a write of coil {reg.address} = {value}"

            async def op(client: Any) -> Any:
                return await client.write_coil(reg.address, bool(value), device_id=self.address)
        elif m.register_write_fc == 16:
            fc, request = 16, f"a write (FC16) of register {reg.address} = {value}"

            async def op(client: Any) -> Any:
                return await client.write_registers(reg.address, [value], device_id=self.address)
        else:
            fc, request = 6, f"a write (FC6) of register {reg.address} = {value}"

            async def op(client: Any) -> Any:
                return await client.write_register(reg.address, value, device_id=self.address)
        await self._call(op, fc, 1, request)
        self.stats.writes += 1

    # -- identify --------------------------------------------------------------------------------
    async def _identify(self) -> None:
        m = self.model_data
        blocks = [await self._read(r) for r in m.identify]
        config: dict[str, int] = {}
        for r, block in zip(m.identify, blocks, strict=True):
            for i, value in enumerate(block):
                for reg in m.registers:
                    if reg.address == r.address + i and reg.table != "coil":
                        config[reg.name] = value
        self.config = config
        problems: list[str] = []
        if m.family == "evse-din":
            self.firmware = str(config.get("firmware"))
            self._scale = evse_din_scale(config.get("config_bits"), config.get("firmware"))
            after_boot, modbus = config.get("current_after_boot"), config.get("modbus")
            if after_boot:
                problems.append(f"after a restart of its own the board offers {after_boot / self._scale:g} A without "
                                "the station (register 2000)")
            if modbus == 0:
                problems.append("Modbus control is off (register 2001 = 0)")
        else:
            self.firmware = phoenix_firmware(blocks[1])
            self._setpoint = float(blocks[2][0])
            if config.get("enable_mode") != 3:
                problems.append(f"charging is not enabled by Modbus alone (register 4000 = {config.get('enable_mode')}, "
                                "wanted 3): the controller may charge without the station")
        self.setup_problem = "; ".join(problems) + ": run `station controller setup`" if problems else None
        if self.setup_problem:
            log.warning("%s: %s", self.what, self.setup_problem)
        self._identified = True

    async def _ensure_identified(self) -> None:
        if not self._identified:
            await self._identify()

    def _fail(self) -> None:
        self.stats.failures += 1
        self._identified = False  # a board that restarted meanwhile is identified anew
        self.bus.drop()

    # -- the port ---------------------------------------------------------------------------------
    async def read(self) -> ControllerReading:
        """One reading, or ControllerError."""
        m = self.model_data
        async with self._lock:
            try:
                await self._ensure_identified()
                blocks = [await self._read(r) for r in m.poll]
                reading = self._decode(blocks)
            except ControllerError:
                self._fail()
                raise
            self.stats.readings += 1
            return reading

    def _decode(self, blocks: list[list[int]]) -> ControllerReading:
        now = time.monotonic()
        if self.model_data.family == "evse-din":
            return decode_evse_din(blocks[0], self._scale, taken_at=now)
        return decode_phoenix(blocks[0], blocks[1][0], bool(blocks[2][0]), self._setpoint, self.firmware, taken_at=now)

    def clamp(self, amps: float) -> float:
        """What `set_current(amps)` offers: at most max_current_a, rounded down to whole amps (a
        board's step; never more than asked), and nothing when that is below min_current_a."""
        if math.isnan(amps):
            return 0.0  # (infinity: no limit, so the installation's maximum)
        value = float(math.floor(min(amps, self.max_current_a)))
        return value if value >= self.min_current_a else 0.0

    async def set_current(self, amps: float) -> float:
        """Offer `amps` per phase (clamped by `clamp`); 0 = no charging. Returns what was set."""
        value = self.clamp(amps)
        m = self.model_data
        async with self._lock:
            try:
                await self._ensure_identified()
                if m.enable_coil is None:
                    await self._write(m.register(m.current_register), int(value * self._scale))
                elif value == 0:
                    await self._write(m.register(m.enable_coil), 0)
                else:
                    await self._write(m.register(m.current_register), int(value))
                    self._setpoint = value
                    await self._write(m.register(m.enable_coil), 1)
            except ControllerError:
                self._fail()
                raise
        self.last_set_a = value
        return value

    async def wake(self) -> bool:
        return False

    async def close(self) -> None:
        self.bus.drop()

    # -- hints -------------------------------------------------------------------------------------
    def _silence_hint(self) -> str:
        b = self.bus
        if self.port.startswith(("tcp://", "socket://")):
            return f"check the gateway's serial settings and the controller's address ({self.address})"
        return (f"check the wiring (A to A, B to B), the controller's address {self.address} (it must differ from "
                f"the meter's), baud rate {b.baudrate}, parity {b.parity}")

    def _exception_hint(self, code: object) -> str:
        if code == 1:
            return f"the controller refused the function: is it a {self.model}?"
        if code == 2:
            return f"the controller has no such register: is it a {self.model}, with Modbus enabled?"
        if code == 3:
            return "the controller refused the value"
        return f"is it a {self.model}?"


# -- `station controller read` -----------------------------------------------------------------------


def reading_json(ctl: ModbusController, r: ControllerReading) -> dict:
    """The JSON document of `station controller read --json`."""
    doc = {"model": ctl.model, "address": ctl.address, **r.to_json(),
           "registers": {name: value for name, value in sorted(ctl.config.items())}}
    if ctl.setup_problem:
        doc["setup_problem"] = ctl.setup_problem
    return doc


def reading_table(ctl: ModbusController, r: ControllerReading) -> str:
    m = ctl.model_data

    def amps(x: float | None) -> str:
        return "-" if x is None else f"{x:g} A"

    lines = [
        f"Controller {m.name} ({m.description})",
        f"Link       {ctl.port}  address {ctl.address}",
        f"Firmware   {r.firmware or '-'}",
        f"Car        {r.car_state.value}" + (" (plugged in)" if r.car_state.plugged else ""),
        f"Offered    {amps(r.offered_a)}   setpoint {amps(r.setpoint_a)}   cable {amps(r.cable_limit_a)}",
        f"Faults     {', '.join(sorted(f.value for f in r.faults)) or 'none'}",
        f"Registers  {r.detail}",
    ]
    if ctl.config:
        lines.append("Settings   " + "  ".join(f"{k}={v}" for k, v in sorted(ctl.config.items())))
    return "\n".join(lines)


async def cli_read(model: str, port: str, address: int, baudrate: int = 9600, parity: str = "N", as_json: bool = False,
                   *, stopbits: int = 1, timeout_s: float = 1.0, rs485_rts: bool = False, out: TextIO | None = None,
                   err: TextIO | None = None) -> int:
    """`station controller read`: one reading, printed; reads only, never writes. Exit code 0 or 1.
    With `as_json` everything goes to `out` as one JSON document, errors too."""
    out, err = out or sys.stdout, err or sys.stderr

    def fail(text: str, kind: str, hint: str) -> int:
        if as_json:
            print(json.dumps({"error": text, "kind": kind, "hint": hint}), file=out)
        else:
            print(f"error: {text}" + (f"\n  {hint}" if hint else ""), file=err)
        return 1

    try:
        m = get_model(model)
        ctl = ModbusController(m, port, address, baudrate=baudrate, parity=parity, stopbits=stopbits,
                               timeout_s=timeout_s, rs485_rts=rs485_rts, min_current_a=m.min_current_a,
                               max_current_a=m.min_current_a)
    except (KeyError, ValueError) as exc:
        return fail(str(exc.args[0] if exc.args else exc), "usage", "")
    try:
        reading = await ctl.read()
    except ControllerError as exc:
        return fail(str(exc), exc.kind, exc.hint)
    finally:
        await ctl.close()
    if as_json:
        print(json.dumps(reading_json(ctl, reading)), file=out)
    else:
        if ctl.setup_problem:
            print(f"warning: {ctl.setup_problem}", file=err)
        print(reading_table(ctl, reading), file=out)
    return 0
