"""Charge controller (control pilot board) models as data: registers, what they mean, how to set them.

Theory of operation
-------------------
A model is a `ControllerModel`: its registers (address, table, memory, who may
write it), the requests of one poll (`poll`), the requests made once when the
link opens (`identify`), how the current is set (a register, and for boards
that pause with an enable coil, that coil), and what `station controller setup`
puts into its non-volatile memory. The generic adapter (station/hardware/
controller.py) works from this data; what cannot be data, how a board encodes
the pilot state and its fault bits, is one small pure function per family
(`decode_evse_din`, `decode_phoenix`), tested against tables typed from the
manufacturers' documents (tests/hardware/test_controller_maps.py).

Memory. Every register is "ram" (volatile: lost at the board's restart, free to
write as often as needed) or "eeprom" (kept across restarts; a flash or EEPROM
cell wears out after some 100 000 writes, and a wrong value there outlives the
station). `writable_at_run` is true only for "ram" registers: the adapter's one
write routine refuses anything else, so the daemon has no way to write EEPROM.
Only `station controller setup` (station/hardware/controller_setup.py) writes
the `setup` values, once, and never a value the board already holds.

Sources: docs/hardware.md section 6 names the document, version and table of
every register used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from station.core.model import CarState, ControllerFault, ControllerReading

Table = Literal["holding", "input", "coil"]
Memory = Literal["ram", "eeprom"]
READ_FC: dict[str, int] = {"holding": 3, "input": 4, "coil": 1}


@dataclass(frozen=True)
class Register:
    name: str
    address: int  # 0-based PDU address, as on the wire
    table: Table
    memory: Memory
    writable: bool = False  # the board accepts writes (at all)
    count: int = 1

    @property
    def writable_at_run(self) -> bool:
        """The daemon may write it: writable and volatile (never EEPROM)."""
        return self.writable and self.memory == "ram"


@dataclass(frozen=True)
class Read:
    """One read request: `count` registers (or coils) of `table` from `address`."""

    table: Table
    address: int
    count: int

    @property
    def function_code(self) -> int:
        return READ_FC[self.table]

    def wire_bytes(self) -> tuple[int, int]:
        """(request bytes, reply bytes) in RTU framing."""
        if self.table == "coil":
            return 8, 5 + (self.count + 7) // 8
        return 8, 5 + 2 * self.count


@dataclass(frozen=True)
class SetupStep:
    """`station controller setup`: put `value` into register `register`, unless it holds it;
    `unless_nonzero`: leave any non-zero value (a register whose documents disagree on what a
    non-zero value means; only 0 is wrong under every reading)."""

    register: str
    value: int
    why: str
    unless_nonzero: bool = False


@dataclass(frozen=True)
class ControllerModel:
    name: str  # the value of controller.model
    description: str
    family: Literal["evse-din", "phoenix"]  # which decode routine
    registers: tuple[Register, ...]
    poll: tuple[Read, ...]  # every reading
    identify: tuple[Read, ...]  # once per opened link: configuration, firmware
    current_register: str  # the volatile current setpoint
    enable_coil: str | None  # boards that pause with a coil (the setpoint has no 0)
    register_write_fc: Literal[6, 16]  # the function code the board takes for a holding register
    min_current_a: int  # what the board can signal
    max_current_a: int
    setup: tuple[SetupStep, ...]
    default_baudrate: int = 9600
    # The board may refuse a holding-register read that its document lists (exception 1 or 2)
    # and answer the same addresses as input registers: try FC4 then, and keep to it.
    holding_or_input: bool = False
    note: str = ""

    def register(self, name: str) -> Register:
        for r in self.registers:
            if r.name == name:
                return r
        raise KeyError(f"{self.name} has no register {name!r}")

    def wire_bytes(self) -> tuple[int, int]:
        """(bytes sent, bytes received) of one poll in RTU framing."""
        return sum(r.wire_bytes()[0] for r in self.poll), sum(r.wire_bytes()[1] for r in self.poll)


# --- EVSE-DIN / EVSE-WB / SimpleEVSE-WB ---------------------------------------------------------

EVSE_DIN = ControllerModel(
    name="EVSE-DIN",
    description="EVSE-DIN, EVSE-WB, SimpleEVSE-WB (one register family)",
    family="evse-din",
    registers=(
        Register("setpoint", 1000, "holding", "ram", writable=True),  # configured amps, 0 = no charging
        Register("output", 1001, "holding", "ram"),  # amps on the PWM output
        Register("vehicle_state", 1002, "holding", "ram"),  # 1 A .. 4 D, 5 failure
        Register("cable_limit", 1003, "holding", "ram"),  # proximity pilot, A
        Register("commands", 1004, "holding", "ram", writable=True),  # bit 0 turn off now, bit 1 RCD test, bit 2 clear
        Register("firmware", 1005, "holding", "ram"),
        Register("evse_state", 1006, "holding", "ram"),  # 1 steady 12 V, 2 PWM, 3 off
        Register("status", 1007, "holding", "ram"),  # status and fault bits
        Register("current_after_boot", 2000, "holding", "eeprom", writable=True),
        Register("modbus", 2001, "holding", "eeprom", writable=True),  # 0 = Modbus control off
        Register("min_current", 2002, "holding", "eeprom", writable=True),
        Register("analog_input", 2003, "holding", "eeprom", writable=True),
        Register("button_amps", 2004, "holding", "eeprom", writable=True),
        Register("config_bits", 2005, "holding", "eeprom", writable=True),
        Register("sharing_mode", 2006, "holding", "eeprom", writable=True),
        Register("pp_detection", 2007, "holding", "eeprom", writable=True),
    ),
    poll=(Read("holding", 1000, 8),),
    identify=(Read("holding", 2000, 8), Read("holding", 1005, 1)),
    current_register="setpoint",
    enable_coil=None,
    register_write_fc=16,  # "write multiple registers" only: FC6 is not implemented by the board
    min_current_a=6,
    max_current_a=80,
    setup=(
        SetupStep("current_after_boot", 0, "a board restarted without the station offers no current"),
        SetupStep("modbus", 1, "Modbus control on", unless_nonzero=True),
    ),
    note="registers 1000-1007 RAM, 2000-2017 EEPROM; writes with FC16 only",
)

# EVSE-DIN register 1002 and 1007
_DIN_STATES = {1: CarState.A, 2: CarState.B, 3: CarState.C, 4: CarState.D, 5: CarState.E}
_DIN_FAULTS = ((1, ControllerFault.DIODE_CHECK), (2, ControllerFault.VENTILATION_REQUIRED),
               (5, ControllerFault.RESIDUAL_CURRENT))
DIN_PRECISE_BIT = 1 << 7  # 2005 bit 7 (firmware 17 and later): currents in 0.01 A
DIN_PRECISE_FIRMWARE = 17


def evse_din_scale(config_bits: int | None, firmware: int | None) -> int:
    """Register units per amp: 100 when 2005 bit 7 is set on firmware 17 or later, else 1."""
    if config_bits is None or firmware is None:
        return 1
    return 100 if firmware >= DIN_PRECISE_FIRMWARE and config_bits & DIN_PRECISE_BIT else 1


def decode_evse_din(block: list[int], scale: int = 1, taken_at: float = 0.0) -> ControllerReading:
    """Registers 1000-1007 -> a reading."""
    setpoint, output, vstate, cable, _commands, firmware, evse_state, status = block[:8]
    car = _DIN_STATES.get(vstate, CarState.UNKNOWN)
    faults = {fault for bit, fault in _DIN_FAULTS if status & (1 << bit)}
    if vstate == 5 and not faults:
        faults.add(ControllerFault.OTHER)
    pwm = evse_state == 2
    return ControllerReading(
        car_state=car,
        offered_a=output / scale if pwm else 0.0,
        setpoint_a=setpoint / scale,
        cable_limit_a=float(cable) if cable else None,
        faults=frozenset(faults),
        relay_closed=bool(status & 1),
        firmware=str(firmware),
        detail=f"1002={vstate} 1006={evse_state} 1007=0x{status:04x}",
        taken_at=taken_at,
    )


# --- Phoenix Contact EV-CC-AC1-M3 -----------------------------------------------------------------

EV_CC_AC1_M3 = ControllerModel(
    name="EV-CC-AC1-M3",
    description="Phoenix Contact EV Charge Control Basic EV-CC-AC1-M3",
    family="phoenix",
    registers=(
        Register("firmware", 1031, "input", "eeprom", count=3),  # letter + major, version, minor
        Register("enable_mode", 4000, "holding", "eeprom", writable=True),  # 3 = enabled by coil 20000
        Register("enable", 20000, "coil", "ram", writable=True),  # charging enabled (PWM on)
        Register("max_current", 22000, "holding", "ram", writable=True),  # 6-63 A
        Register("system_status", 24000, "holding", "ram"),  # IEC 61851 state, 2 ASCII characters
        Register("proximity", 24001, "holding", "ram"),  # cable: 13/20/32/63 A, 0 open, FFFF error
        Register("duty_cycle", 24002, "holding", "ram"),  # %
        Register("pilot_current", 24003, "holding", "ram"),  # A signalled on CP
        Register("error_status", 24025, "holding", "ram"),  # error bits
    ),
    poll=(Read("holding", 24000, 4), Read("holding", 24025, 1), Read("coil", 20000, 1)),
    identify=(Read("holding", 4000, 1), Read("input", 1031, 3), Read("holding", 22000, 1)),
    current_register="max_current",
    enable_coil="enable",
    register_write_fc=6,
    min_current_a=6,
    max_current_a=63,
    setup=(SetupStep("enable_mode", 3, "charging is enabled by the station (coil 20000) and by nothing else"),),
    holding_or_input=True,
    note="status 24000.. are holding registers in the manual's table (evcc reads them as input registers)",
)

_PHX_FAULTS = ((2, ControllerFault.CABLE), (3, ControllerFault.CABLE), (4, ControllerFault.PILOT),
               (5, ControllerFault.UNAVAILABLE), (6, ControllerFault.OTHER), (7, ControllerFault.OTHER),
               (8, ControllerFault.OTHER), (11, ControllerFault.VENTILATION_REQUIRED),
               (12, ControllerFault.CONTACTOR), (13, ControllerFault.DIODE_CHECK),
               (15, ControllerFault.RESIDUAL_CURRENT))


def phoenix_state(word: int) -> tuple[CarState, bool]:
    """Register 24000 ("A1" .. "D2", "E", "F": letter in the high byte) -> (state, PWM on)."""
    letter, second = chr(word >> 8 & 0xFF), word & 0xFF
    try:
        state = CarState(letter)
    except ValueError:
        state = CarState.UNKNOWN
    return state, second == ord("2")


def phoenix_firmware(regs: list[int]) -> str:
    """1031 (letter in the high byte, major version in the low byte), 1032, 1033 -> "V1.2.3"."""
    letter = chr(regs[0] >> 8 & 0xFF)
    letter = letter if letter.isalpha() else "?"
    return f"{letter}{regs[0] & 0xFF}.{regs[1]}.{regs[2]}"


def decode_phoenix(status: list[int], errors: int, enabled: bool, setpoint: float | None,
                   firmware: str | None = None, taken_at: float = 0.0) -> ControllerReading:
    """Registers 24000-24003, 24025 and coil 20000 -> a reading."""
    state, pwm = phoenix_state(status[0])
    proximity, _duty, pilot_a = status[1], status[2], status[3]
    faults = {fault for bit, fault in _PHX_FAULTS if errors & (1 << bit)}
    if proximity == 0xFFFF:
        faults.add(ControllerFault.CABLE)
    return ControllerReading(
        car_state=state,
        offered_a=float(pilot_a) if pwm else 0.0,
        setpoint_a=(setpoint if enabled else 0.0) if setpoint is not None else None,
        cable_limit_a=float(proximity) if proximity not in (0, 0xFFFF) else None,
        faults=frozenset(faults),
        firmware=firmware,
        detail=f"24000={chr(status[0] >> 8 & 0xFF)}{chr(status[0] & 0xFF) if status[0] & 0xFF >= 0x20 else ''} "
               f"24025=0x{errors:04x} 20000={int(enabled)}",
        taken_at=taken_at,
    )


MODELS: dict[str, ControllerModel] = {m.name: m for m in (EVSE_DIN, EV_CC_AC1_M3)}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def get_model(name: str) -> ControllerModel:
    """The model of that name (any case)."""
    for key, model in MODELS.items():
        if key.lower() == name.strip().lower():
            return model
    raise KeyError(f"unknown charge controller model {name!r}; known: {', '.join(MODELS)}")
