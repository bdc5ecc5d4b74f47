"""The emulated charge controller: a control-pilot board at the register level, with a car on its pilot.

Theory of operation
-------------------
`EmulatedController` is a device on the emulated RS-485 line (station/emulated/
bus.py), beside the emulated meter at another address, so the station's real
`ModbusController` (pymodbus client) talks to it as to the board. It plays one
of two boards, register for register as their documents describe them
(docs/hardware.md section 6), and is as strict as they are:

* EVSE-DIN family: holding registers 1000-1010 (RAM) and 2000-2017 (EEPROM),
  nothing else (illegal address). Writes only with FC16: FC6 is answered
  "illegal function". 1000 takes 0 or 2002..80 A (in 0.01 A with 2005 bit 7),
  other values "illegal value"; the read-only RAM registers refuse writes.
  A restart (`restart()`) loads 1000 from 2000, the current after boot.
  With 2001 = 0 (Modbus control off) the board runs stand-alone and offers
  2000's current when a car is plugged in (an assumption: the documents say
  only that the board's own inputs then control it); `station controller
  setup` is what prevents both.
* Phoenix Contact EV-CC-AC1-M3: input 1031-1033 (firmware), holding 4000
  (retentive), 22000 (volatile, 6-63 A), 24000-24005 and 24025 (status), coil
  20000 (enable; only with 4000 = 3; 0 after a restart).

EEPROM (and the Phoenix controller's retentive registers) live in
`<state_dir>/sim-controller.json`, written atomically, with a count of writes
per register: a test can prove the station never wrote one. Every write
request on the line is also in `EmulatedBus.writes`.

The board's logic, from its registers and the car (station/emulated/car.py):
it signals PWM (offers current) while a car is plugged in, the setpoint is at
least the minimum and nothing is wrong; the offer is the setpoint, limited by
the cable's rating (proximity pilot); it closes its relay (the contactor)
while the car asks (state C, or D where ventilation is permitted); a car with
no pilot diode, a car asking for ventilation where that is not permitted, and
a tripped residual current monitor (`trip_rcd()`) are faults: no PWM, relay
open, fault bits set (the RCD until `clear_rcd()` or the board's clear
command). `on_change(board)` is called after every change, so the world can
make the emulated meter follow what the car draws; `tick()` fills the
battery, and a full battery stops asking.

Fault injection: `set_silent(True)` (the board stops answering).
Construct inside a running event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice

from station.core.model import CarState, ControllerFault
from station.emulated.bus import EmulatedBus
from station.emulated.car import NOMINAL_V, Car
from station.hardware.controllers.models import ControllerModel, get_model

log = logging.getLogger("station.sim.controller")

STATE_FILE = "sim-controller.json"
FIRMWARE = 18
PHOENIX_FIRMWARE = (ord("V") << 8 | 1, 4, 2)
DIP_CURRENT_A = 16  # the Phoenix controller's 22000 after a restart (its DIP switches)
# The boards as they leave the factory (the documents' defaults) ...
FACTORY = {
    "evse-din": {2000: 32, 2001: 0, 2002: 5, 2003: 0, 2004: 0, 2005: 0x0208, 2006: 0, 2007: 0, 2008: 0, 2009: 3,
                 2010: 6, 2011: 10, 2012: 16, 2013: 25, 2014: 32, 2015: 48, 2016: 63, 2017: 80},
    "phoenix": {4000: 1, 4010: 0},
}
# ... and as `station controller setup` leaves them, for a simulated station that was installed
# (ventilation not permitted: this station has none).
INSTALLED = {
    "evse-din": {**FACTORY["evse-din"], 2000: 0, 2001: 1, 2005: 0x0200},
    "phoenix": {4000: 3, 4010: 0},
}
_DIN_STATE = {CarState.A: 1, CarState.B: 2, CarState.C: 3, CarState.D: 4}


class EmulatedController:
    """An emulated control-pilot board with a car. Construct inside a running loop."""

    def __init__(self, model: str | ControllerModel = "EVSE-DIN", *, address: int = 2, bus: EmulatedBus | None = None,
                 link: Literal["socket", "pty", "tcp"] = "socket", state_dir: str | os.PathLike[str] | None = None,
                 car: Car | None = None, cable_a: int = 32, installed: bool = True,
                 tick_s: float | None = 1.0, clock: Callable[[], float] = time.monotonic,
                 voltage_v: float = NOMINAL_V) -> None:
        self.model: ControllerModel = get_model(model) if isinstance(model, str) else model
        self.family = self.model.family
        self.address = address
        self.car = car or Car()
        self.cable_a = cable_a
        self.voltage_v = voltage_v
        self.on_change: Callable[[EmulatedController], None] | None = None
        self._clock, self._tick_s, self._last_t = clock, tick_s, clock()
        self._state_path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        defaults = INSTALLED if installed else FACTORY
        self.eeprom: dict[int, int] = dict(defaults[self.family])
        self.eeprom_writes: dict[int, int] = {}
        self._load_state()
        self.silent = False
        self.rcd_tripped = False
        self.restarts = 0
        self.requests = 0
        self.setpoint = 0  # EVSE-DIN 1000 (register units); Phoenix 22000 (A)
        self.commands = 0  # EVSE-DIN 1004
        self.enable = False  # Phoenix coil 20000
        self.restart(count=False)
        self._own_bus = bus is None
        self.bus = bus or EmulatedBus(link)
        self.bus.attach(self)
        self.port = ""
        self._ticker: asyncio.Task | None = None
        self._save()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> str:
        self.port = await self.bus.start()
        if self._tick_s:
            self._ticker = asyncio.create_task(self._tick_loop(self._tick_s), name="sim-controller tick")
        log.info("emulated %s at address %d on %s", self.model.name, self.address, self.port)
        return self.port

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None
        if self._own_bus:
            await self.bus.stop()

    async def __aenter__(self) -> EmulatedController:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.tick()

    def restart(self, count: bool = True) -> None:
        """The board restarts (power cut, watchdog): RAM from EEPROM, faults it latched cleared."""
        if self.family == "evse-din":
            self.setpoint = self.eeprom[2000] * self.scale
        else:
            self.setpoint, self.enable = DIP_CURRENT_A, False
        self.commands = 0
        self.rcd_tripped = False
        if count:
            self.restarts += 1
            log.info("emulated %s restarted", self.model.name)
            self._changed()

    # -- the car and the faults ---------------------------------------------------------------------
    def plug(self, plugged: bool = True) -> None:
        self.car.plugged = plugged
        self._changed()

    def car_changed(self) -> None:
        """Call after changing `car` directly (asleep, ventilation, diode_fault, phases...)."""
        self._changed()

    def trip_rcd(self) -> None:
        """The residual current monitor trips."""
        self.rcd_tripped = True
        self._changed()

    def clear_rcd(self) -> None:
        self.rcd_tripped = False
        self._changed()

    def set_silent(self, silent: bool = True) -> None:
        self.silent = silent

    def tick(self, now: float | None = None) -> None:
        """Fill the battery with what the car drew since the last tick."""
        now = self._clock() if now is None else now
        dt, self._last_t = now - self._last_t, now
        draw = self.draw_a
        if dt > 0 and draw > 0:
            was_full = self.car.full
            self.car.charge(self.car.power_w(draw, self.voltage_v) * dt / 3600)
            if self.car.full and not was_full:
                log.info("emulated car: battery full")
                self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    # -- what the board does ------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        """EVSE-DIN register units per amp (0.01 A with 2005 bit 7 on firmware 17+)."""
        if self.family != "evse-din":
            return 1
        return 100 if FIRMWARE >= 17 and self.eeprom[2005] & 0x80 else 1

    @property
    def requested_a(self) -> float:
        """The current the board would offer a car that asks (before cable and faults)."""
        if self.family == "evse-din":
            if self.eeprom[2001] == 0:  # Modbus control off: stand-alone, 2000's current
                return float(self.eeprom[2000])
            return 0.0 if self.commands & 1 else self.setpoint / self.scale
        mode = self.eeprom[4000]
        enabled = mode == 0 or (mode == 3 and self.enable)  # 1, 2: input EN, not wired here
        return float(self.setpoint) if enabled else 0.0

    @property
    def minimum_a(self) -> float:
        return float(self.eeprom[2002]) if self.family == "evse-din" else 6.0

    @property
    def ventilation_permitted(self) -> bool:
        return bool(self.eeprom[2005] & 0x08) if self.family == "evse-din" else bool(self.eeprom.get(4010))

    @property
    def faults(self) -> frozenset[ControllerFault]:
        out = set()
        if self.rcd_tripped:
            out.add(ControllerFault.RESIDUAL_CURRENT)
        if self.car.plugged and self.car.diode_fault:
            out.add(ControllerFault.DIODE_CHECK)
        if (self.car.plugged and self.car.ventilation and self.car.wants_current and not self.ventilation_permitted
                and self.requested_a >= self.minimum_a):
            out.add(ControllerFault.VENTILATION_REQUIRED)
        return frozenset(out)

    @property
    def pwm(self) -> bool:
        return self.car.plugged and not self.faults and self.requested_a >= self.minimum_a

    @property
    def offered_a(self) -> float:
        return min(self.requested_a, float(self.cable_a)) if self.pwm else 0.0

    @property
    def car_state(self) -> CarState:
        return self.car.pilot_state(self.offered_a)

    @property
    def relay_closed(self) -> bool:
        return self.pwm and self.car_state in (CarState.C, CarState.D)

    @property
    def draw_a(self) -> float:
        """Amps per phase the car draws through the board's relay."""
        return self.car.draw_a(self.offered_a, self.relay_closed)

    # -- registers -----------------------------------------------------------------------------------
    def registers(self) -> dict[int, int]:
        """Every holding or input register the board shows now (by address)."""
        if self.family == "evse-din":
            faults = self.faults
            status = ((1 if self.relay_closed else 0) | (2 if ControllerFault.DIODE_CHECK in faults else 0)
                      | (4 if ControllerFault.VENTILATION_REQUIRED in faults else 0)
                      | (32 if ControllerFault.RESIDUAL_CURRENT in faults else 0))
            regs = {1000: self.setpoint, 1001: int(self.offered_a * self.scale),
                    1002: 5 if faults else _DIN_STATE.get(self.car_state, 1),
                    1003: self.cable_a if self.car.plugged else 0, 1004: self.commands, 1005: FIRMWARE,
                    1006: 3 if faults else (2 if self.pwm else 1), 1007: status, 1008: 0, 1009: 0, 1010: 0}
            regs.update(self.eeprom)
            return regs
        faults = self.faults
        if ControllerFault.RESIDUAL_CURRENT in faults:
            letter, digit = "F", "0"
        elif ControllerFault.DIODE_CHECK in faults:
            letter, digit = "E", "0"
        else:
            letter, digit = self.car_state.value, "2" if self.pwm else "1"
        errors = ((1 << 15 if ControllerFault.RESIDUAL_CURRENT in faults else 0)
                  | (1 << 13 if ControllerFault.DIODE_CHECK in faults else 0)
                  | (1 << 11 if ControllerFault.VENTILATION_REQUIRED in faults else 0))
        signal = min(self.setpoint, self.cable_a)
        return {1031: PHOENIX_FIRMWARE[0], 1032: PHOENIX_FIRMWARE[1], 1033: PHOENIX_FIRMWARE[2],
                4000: self.eeprom[4000], 22000: self.setpoint,
                24000: ord(letter) << 8 | ord(digit), 24001: self.cable_a if self.car.plugged else 0,
                24002: round(signal / 0.6), 24003: signal, 24004: 0, 24005: 1 << 3 if self.relay_closed else 0,
                24025: errors}

    def simdevice(self) -> SimDevice:
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]

        def block(start: int, end: int) -> SimData:
            return SimData(start, count=end - start, values=0, datatype=DataType.REGISTERS)

        if self.family == "evse-din":
            holding = [block(1000, 1011), block(2000, 2018)]
            return SimDevice(id=self.address, simdata=(bits, list(bits), holding, [block(0xFFF0, 0xFFF1)]),
                             action=self._action)
        coils = [SimData(20000, values=[False] * 16, datatype=DataType.BITS)]
        holding = [block(4000, 4001), block(4010, 4011), block(22000, 22001), block(24000, 24006), block(24025, 24026)]
        return SimDevice(id=self.address, simdata=(coils, list(bits), holding, [block(1031, 1034)]),
                         action=self._action)

    def on_reply(self, frame: bytes) -> bytes:
        self.requests += 1
        return b"" if self.silent else frame

    async def _action(self, function_code: int, start_address: int, address: int, count: int, registers: list[int],
                      set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        self.tick()
        if set_values is not None:
            result = self._write(function_code, address, [int(v) for v in set_values])
            if result is not None:
                return result
            self._changed()
        if function_code in (1, 5):  # coils: bit addressing, 16 to a register
            if self.family == "phoenix":
                registers[0] = 1 if self.enable else 0
            return None
        now = self.registers()
        for i in range(len(registers)):
            value = now.get(start_address + i)
            if value is not None:
                registers[i] = value
        return None

    def _write(self, function_code: int, address: int, values: list[int]) -> ExcCodes | None:
        if self.family == "evse-din":
            return self._write_din(function_code, address, values)
        return self._write_phoenix(function_code, address, values)

    def _write_din(self, function_code: int, address: int, values: list[int]) -> ExcCodes | None:
        if function_code != 16:
            return ExcCodes.ILLEGAL_FUNCTION  # FC6 ("write single register") is not implemented
        for offset, value in enumerate(values):
            reg = address + offset
            if reg == 1000:
                if value != 0 and not self.eeprom[2002] * self.scale <= value <= 80 * self.scale:
                    return ExcCodes.ILLEGAL_VALUE
                self.setpoint = value
            elif reg == 1004:
                if value & 4:
                    self.rcd_tripped = False  # clear RCD error
                self.commands = value & 1  # bit 0 stays (turn off now); 1 and 2 are one-shot commands
            elif 2000 <= reg <= 2017:
                self._write_eeprom(reg, value)
            else:
                return ExcCodes.ILLEGAL_ADDRESS  # read-only
        return None

    def _write_phoenix(self, function_code: int, address: int, values: list[int]) -> ExcCodes | None:
        if function_code == 5:
            if address != 20000:
                return ExcCodes.ILLEGAL_ADDRESS
            self.enable = bool(values[0])
            return None
        if function_code not in (6, 16):
            return ExcCodes.ILLEGAL_FUNCTION
        for offset, value in enumerate(values):
            reg = address + offset
            if reg == 22000:
                if not 6 <= value <= 63:
                    return ExcCodes.ILLEGAL_VALUE
                self.setpoint = value
            elif reg in (4000, 4010):
                if not 0 <= value <= (3 if reg == 4000 else 1):
                    return ExcCodes.ILLEGAL_VALUE
                self._write_eeprom(reg, value)
            else:
                return ExcCodes.ILLEGAL_ADDRESS
        return None

    def _write_eeprom(self, reg: int, value: int) -> None:
        self.eeprom[reg] = value
        self.eeprom_writes[reg] = self.eeprom_writes.get(reg, 0) + 1
        log.info("emulated %s: EEPROM register %d = %d (write %d)", self.model.name, reg, value,
                 self.eeprom_writes[reg])
        self._save()

    # -- persistence ------------------------------------------------------------------------------------
    def _load_state(self) -> None:
        if self._state_path is None or not self._state_path.exists():
            return
        try:
            data = json.loads(self._state_path.read_text())
            if data.get("model") != self.model.name:
                return  # another board before: this one starts as configured
            self.eeprom.update({int(k): int(v) for k, v in data["eeprom"].items()})
            self.eeprom_writes = {int(k): int(v) for k, v in data.get("writes", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise RuntimeError(f"{self._state_path}: unreadable emulated controller state: {exc}") from exc

    def _save(self) -> None:
        if self._state_path is None:
            return
        path = self._state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump({"model": self.model.name, "eeprom": self.eeprom, "writes": self.eeprom_writes}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def meter_follows(board: EmulatedController, meter: object,
                  contactor: Callable[[], bool] = lambda: True) -> Callable[[], None]:
    """Make the emulated meter count what the car draws through the board's relay (and through
    `contactor()`, a contactor in series that the station drives itself, if any). Returns the
    update function, to call when that contactor changes; the board calls it after every change."""
    from station.emulated.meter_server import EmulatedMeter

    assert isinstance(meter, EmulatedMeter)

    def update(_board: EmulatedController | None = None) -> None:
        amps = board.draw_a if contactor() else 0.0
        phases = min(board.car.phases, meter.model.phases)
        if amps > 0:
            meter.set_load(amps * phases * meter.voltage_v, phases=phases)
        meter.set_flowing(amps > 0)

    board.on_change = update
    update()
    return update
