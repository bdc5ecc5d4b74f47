"""kWh meter models as data: one description per model, used both ways.

Theory of operation
-------------------
A meter model is a `MeterModel`: the Modbus function code, the word order of
its 32/64-bit values, and one `Field` per quantity (address, raw type, scale).
No model has code of its own. Two generic routines work from that data:

* `decode(model, blocks)` turns the registers read from a real meter into a
  `MeterReading` (station/hardware/meter.py);
* `encode(model, values)` turns the emulated meter's state into registers
  (station/emulated/meter_server.py).

Because both ends share this one description, a test of "the real pymodbus
client against the emulated meter" cannot find a wrong map: a misreading
would also have been put into the emulator. So every map below is checked
separately, in tests/test_meter_maps.py, against register tables written by
hand from the manufacturer's document and served by pymodbus' own server;
docs/hardware.md names each document (title, version, table).

The request plan (`MeterModel.plan`; `core_plan` for energy and total power
only, the cheap poll) is computed from the map: the fields'
register ranges sorted by address and merged into as few reads as possible.
Two ranges are merged when the gap between them is at most `max_gap`
registers (reading a gap costs 2 bytes per register; a separate request costs
8 request bytes + 5 reply overhead bytes + two 3.5-character silences + the
meter's turnaround, at 9600 baud easily 30-60 byte times, so gaps up to 16
registers are cheaper read than skipped) and the merged read stays within
the model's own limit (`max_read`: the Eastron and Carlo Gavazzi documents
allow fewer than the 125 registers of the Modbus specification). Registers
inside a gap are read and ignored.

Energy is converted to integer Wh without float error: integer registers are
multiplied by an exact integer factor (0.01 kWh -> x10, 0.1 kWh -> x100);
float32 kWh registers are rounded once, `round(kwh * 1000)`. A float32 holds
every integer Wh exactly only below 16 384 kWh (above that its step is
2 Wh or more); the real meter has the same limit, and the plausibility margin
(`resolution_wh`) accounts for it.

ABB meters mark a quantity they do not have with all bits set (unsigned) or
0x7FFF... (signed); `decode` turns such a value into None (or an error for the
energy register, which a reading cannot do without).

Registers are converted with `struct` (big-endian bytes in each word, the
word order per model), not with pymodbus: this module is imported by the
configuration loader for the model names, and pymodbus costs 60 ms to import.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Literal

from station.core.model import MeterReading

MODBUS_MAX_READ = 125  # registers per read request (FC3/FC4), Modbus application protocol v1.1b
DEFAULT_MAX_GAP = 16  # registers; see the module docstring for the reasoning

# Raw register type -> (struct format, width in registers, signed, is float)
KINDS: dict[str, tuple[str, int, bool, bool]] = {
    "uint16": ("H", 1, False, False),
    "int16": ("h", 1, True, False),
    "uint32": ("I", 2, False, False),
    "int32": ("i", 2, True, False),
    "uint64": ("Q", 4, False, False),
    "float32": ("f", 2, True, True),
}

WordOrder = Literal["big", "little"]


@dataclass(frozen=True)
class Field:
    """One quantity in the register map.

    `scale` converts the raw number into the station's unit: W, V, A, Hz, and
    Wh for energy (so a register in 0.01 kWh has scale 10, a float in kWh has
    scale 1000, a float in kW has scale 1000, a voltage in 0.1 V scale 1/10).
    """

    address: int
    kind: str
    scale: Fraction = Fraction(1)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown register kind {self.kind!r}")
        if not 0 <= self.address <= 0xFFFF:
            raise ValueError(f"register address {self.address} out of range")

    @property
    def width(self) -> int:
        return KINDS[self.kind][1]

    @property
    def end(self) -> int:
        """One past the last register of this field."""
        return self.address + self.width


@dataclass(frozen=True)
class Request:
    """One read request of the plan: `count` registers from `address`."""

    address: int
    count: int

    @property
    def end(self) -> int:
        return self.address + self.count

    def covers(self, f: Field) -> bool:
        return self.address <= f.address and f.end <= self.end

    @property
    def wire_bytes(self) -> tuple[int, int]:
        """(request bytes, reply bytes) of this read in Modbus RTU framing.

        Request: address, function, start (2), count (2), CRC (2) = 8.
        Reply: address, function, byte count, 2 per register, CRC (2).
        """
        return 8, 5 + 2 * self.count


@dataclass(frozen=True)
class MeterModel:
    name: str  # the value of config key meter.model
    description: str
    function_code: Literal[3, 4]  # 3 holding registers, 4 input registers
    word_order: WordOrder  # "big": high word first; "little": low word first
    phases: int
    max_power_w: float  # rating: phases x 230 V x Imax; the plausibility limit
    energy: Field  # total import, Wh
    voltage: tuple[Field, ...]  # V per phase
    current: tuple[Field, ...]  # A per phase
    power: Field | None = None  # total active power, W
    power_phase: tuple[Field, ...] = ()  # W per phase
    energy_phase: tuple[Field, ...] = ()  # import Wh per phase, where the meter has it
    frequency: Field | None = None  # Hz
    no_value_markers: bool = False  # ABB: all-ones / 0x7FFF.. means "no value"
    max_gap: int = DEFAULT_MAX_GAP
    max_read: int = MODBUS_MAX_READ  # registers per request the meter accepts (its document)
    note: str = ""  # where the map comes from
    default_parity: str | None = None  # factory setting where known, for the `meter read` hint

    # -- derived -------------------------------------------------------------------
    def all_fields(self) -> list[Field]:
        out = [self.energy, *self.voltage, *self.current, *self.power_phase, *self.energy_phase]
        if self.power is not None:
            out.append(self.power)
        if self.frequency is not None:
            out.append(self.frequency)
        return out

    @cached_property
    def plan(self) -> tuple[Request, ...]:
        """The reads that fetch every field: adjacent ranges merged (see module doc)."""
        return plan_requests(self.all_fields(), self.max_gap, self.max_read)

    @property
    def total_power_field(self) -> Field | None:
        return self.power if self.power is not None else (self.power_phase[0] if len(self.power_phase) == 1 else None)

    @cached_property
    def core_plan(self) -> tuple[Request, ...]:
        """The reads for energy and total power only: the cheap poll while charging."""
        fields = [self.energy] + ([self.total_power_field] if self.total_power_field else [])
        return plan_requests(fields, self.max_gap, self.max_read)

    @property
    def measurands(self) -> frozenset[str]:
        m = {"energy", "voltage", "current"}
        if self.power is not None:
            m.add("power")
        if self.power_phase:
            m.add("power_phase")
        if self.energy_phase:
            m.add("energy_phase")
        if self.frequency is not None:
            m.add("frequency")
        return frozenset(m)

    @property
    def resolution_wh(self) -> int:
        """The energy register's step in Wh, for the plausibility margin.

        Integer registers: their unit. float32 kWh: 10 Wh, the meters' display
        step, which also covers the float32 step up to 65 536 kWh.
        """
        if KINDS[self.energy.kind][3]:
            return 10
        return max(1, int(self.energy.scale))

    def wire_bytes(self, full: bool = True) -> tuple[int, int]:
        """(bytes sent, bytes received) in RTU framing for one reading (full or core)."""
        plan = self.plan if full else self.core_plan
        tx = sum(r.wire_bytes[0] for r in plan)
        rx = sum(r.wire_bytes[1] for r in plan)
        return tx, rx


def plan_requests(
    fields: Sequence[Field], max_gap: int = DEFAULT_MAX_GAP, max_read: int = MODBUS_MAX_READ
) -> tuple[Request, ...]:
    """Group register ranges into as few reads as possible.

    Ranges are sorted by address; a range joins the current read when the gap
    to it is at most `max_gap` registers and the read stays within `max_read`
    registers. Overlapping or duplicate fields are fine.
    """
    spans = sorted({(f.address, f.end) for f in fields})
    groups: list[list[int]] = []
    for start, end in spans:
        if groups:
            g = groups[-1]
            gap = start - g[1]
            if gap <= max_gap and max(end, g[1]) - g[0] <= max_read:
                g[1] = max(g[1], end)
                continue
        if end - start > max_read:
            raise ValueError(f"field at {start} wider than one read")
        groups.append([start, end])
    return tuple(Request(s, e - s) for s, e in groups)


# -- raw <-> value ---------------------------------------------------------------------


def _no_value_marker(kind: str) -> int:
    """ABB's "no value": all ones for unsigned, the largest positive for signed."""
    _fmt, width, signed, _float = KINDS[kind]
    bits = 16 * width
    return (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1


def words_to_number(kind: str, regs: Sequence[int], word_order: WordOrder) -> int | float:
    """The number in a field's registers (each word big-endian, words in `word_order`)."""
    fmt, width, _signed, _float = KINDS[kind]
    if len(regs) != width:
        raise ValueError(f"a {kind} needs {width} registers, got {len(regs)}")
    words = list(regs) if word_order == "big" else list(reversed(regs))
    raw = b"".join(int(w).to_bytes(2, "big") for w in words)
    value: int | float = struct.unpack(">" + fmt, raw)[0]
    return value


def number_to_words(kind: str, number: int | float, word_order: WordOrder) -> list[int]:
    """The registers holding `number` as `kind` (the inverse of `words_to_number`)."""
    fmt, width, _signed, _float = KINDS[kind]
    raw = struct.pack(">" + fmt, number)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, 2 * width, 2)]
    return words if word_order == "big" else words[::-1]


def raw_to_number(model: MeterModel, f: Field, regs: Sequence[int]) -> int | float | None:
    """The raw number in the field's registers, or None for a "no value" marker."""
    _fmt, width, signed, is_float = KINDS[f.kind]
    if len(regs) != width:
        raise ValueError(f"field at {f.address:#x} needs {width} registers, got {len(regs)}")
    if model.no_value_markers and not is_float:
        words = list(regs) if model.word_order == "big" or width == 1 else list(reversed(regs))
        unsigned = 0
        for w in words:
            unsigned = (unsigned << 16) | w
        if unsigned == _no_value_marker(f.kind):
            return None
    return words_to_number(f.kind, regs, model.word_order)


def number_to_raw(model: MeterModel, f: Field, number: int | float) -> list[int]:
    return number_to_words(f.kind, number, model.word_order)


def float32_decimal(x: float) -> Fraction:
    """The shortest decimal that is the same float32 as `x` (e.g. 6.9, not 6.900000095).

    A meter computes 230.1 V and stores the nearest float32; this recovers the
    230.1, so that scaling (kW -> W) and printing show the meter's value
    rather than float32 noise.
    """
    packed = struct.pack(">f", x)
    for digits in range(6, 10):
        text = f"{x:.{digits}g}"
        if struct.pack(">f", float(text)) == packed:
            return Fraction(text)
    return Fraction(x)


def _value(model: MeterModel, f: Field, regs: Sequence[int]) -> float | None:
    raw = raw_to_number(model, f, regs)
    if raw is None:
        return None
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        return float(float32_decimal(raw) * f.scale)
    return float(raw * f.scale)


def energy_wh(model: MeterModel, f: Field, regs: Sequence[int]) -> int | None:
    """Integer Wh from an energy field, exactly (see module doc)."""
    raw = raw_to_number(model, f, regs)
    if raw is None:
        return None
    if isinstance(raw, float):
        if not math.isfinite(raw) or raw < 0:
            return None
        return round(float32_decimal(raw) * f.scale)
    return int(raw * f.scale)  # exact: Fraction arithmetic, truncated if the unit were below 1 Wh


def value_to_raw(model: MeterModel, f: Field, value: float) -> list[int]:
    """Registers for a measured value (W, V, A, Hz): rounded to the register's step."""
    _fmt, _w, signed, is_float = KINDS[f.kind]
    if is_float:
        return number_to_raw(model, f, float(value) / float(f.scale))
    raw = round(Fraction(value) / f.scale)
    if not signed and raw < 0:
        raw = 0
    return number_to_raw(model, f, int(raw))


def energy_to_raw(model: MeterModel, f: Field, wh: int) -> list[int]:
    """Registers for an energy count in Wh: integer registers count whole units (floor)."""
    if KINDS[f.kind][3]:
        return number_to_raw(model, f, wh / float(f.scale))
    return number_to_raw(model, f, int(Fraction(wh) // f.scale))


def registered_wh(model: MeterModel, f: Field, wh: int) -> int:
    """What a meter of this model shows for an exact count of `wh` (after its own rounding)."""
    regs = energy_to_raw(model, f, wh)
    out = energy_wh(model, f, regs)
    assert out is not None
    return out


# -- whole readings ----------------------------------------------------------------------


class DecodeError(ValueError):
    """The registers do not make a reading (e.g. the energy register says "no value")."""


def slice_field(plan: Sequence[Request], blocks: Sequence[Sequence[int]], f: Field) -> list[int]:
    for req, regs in zip(plan, blocks, strict=False):
        if req.covers(f):
            off = f.address - req.address
            return list(regs[off : off + f.width])
    raise KeyError(f"no request of the plan covers register {f.address:#x}")


def decode(
    model: MeterModel, blocks: Sequence[Sequence[int]], taken_at: float = 0.0, *, full: bool = True
) -> MeterReading:
    """A MeterReading from the register blocks of `model.plan` (or `model.core_plan` when
    `full` is False: energy and total power only, the rest left empty), in plan order."""
    plan = model.plan if full else model.core_plan
    if len(blocks) != len(plan):
        raise DecodeError(f"expected {len(plan)} register blocks, got {len(blocks)}")
    for req, regs in zip(plan, blocks, strict=True):
        if len(regs) != req.count:
            raise DecodeError(f"read at {req.address:#x}: expected {req.count} registers, got {len(regs)}")

    def v(f: Field | None) -> float | None:
        return None if f is None else _value(model, f, slice_field(plan, blocks, f))

    energy = energy_wh(model, model.energy, slice_field(plan, blocks, model.energy))
    if energy is None:
        raise DecodeError("the meter reports no value for the import energy register")
    if energy < 0:  # a signed register (EM24, ABB) with its top bit set: noise, never a count
        raise DecodeError(f"the import energy register reads {energy} Wh; an energy counter is never negative")
    if not full:
        return MeterReading(energy_wh=energy, power_w=v(model.total_power_field), taken_at=taken_at)
    phase_energy = [energy_wh(model, f, slice_field(plan, blocks, f)) for f in model.energy_phase]
    if any(e is not None and e < 0 for e in phase_energy):
        raise DecodeError(f"a phase energy register reads {min(e for e in phase_energy if e is not None)} Wh; "
                          "an energy counter is never negative")
    return MeterReading(
        energy_wh=energy,
        power_w=v(model.power),
        voltage_v=tuple(v(f) for f in model.voltage),  # type: ignore[misc]
        current_a=tuple(v(f) for f in model.current),  # type: ignore[misc]
        power_phase_w=tuple(v(f) for f in model.power_phase),  # type: ignore[misc]
        energy_phase_wh=tuple(phase_energy),  # type: ignore[arg-type]
        frequency_hz=v(model.frequency),
        taken_at=taken_at,
    )


@dataclass
class MeterValues:
    """What an (emulated) meter measures, in station units; input of `encode`."""

    energy_wh: int
    energy_phase_wh: tuple[int, ...] = ()
    power_w: float = 0.0
    power_phase_w: tuple[float, ...] = ()
    voltage_v: tuple[float, ...] = ()
    current_a: tuple[float, ...] = ()
    frequency_hz: float = 50.0


def encode(model: MeterModel, values: MeterValues) -> dict[int, int]:
    """Register address -> word for every field of the model (gaps not included)."""
    out: dict[int, int] = {}

    def put(f: Field, regs: list[int]) -> None:
        for i, w in enumerate(regs):
            out[f.address + i] = w

    put(model.energy, energy_to_raw(model, model.energy, values.energy_wh))
    for f, wh in zip(model.energy_phase, values.energy_phase_wh, strict=False):
        put(f, energy_to_raw(model, f, wh))
    for f, x in zip(model.voltage, values.voltage_v, strict=False):
        put(f, value_to_raw(model, f, x))
    for f, x in zip(model.current, values.current_a, strict=False):
        put(f, value_to_raw(model, f, x))
    for f, x in zip(model.power_phase, values.power_phase_w, strict=False):
        put(f, value_to_raw(model, f, x))
    if model.power is not None:
        put(model.power, value_to_raw(model, model.power, values.power_w))
    if model.frequency is not None:
        put(model.frequency, value_to_raw(model, model.frequency, values.frequency_hz))
    return out


# -- the models ----------------------------------------------------------------------------

F = Fraction
_V230 = 230.0
_ONE = Fraction(1)


def _floats(*addresses: int, scale: Fraction = _ONE) -> tuple[Field, ...]:
    return tuple(Field(a, "float32", scale) for a in addresses)


def _ints(kind: str, *addresses: int, scale: Fraction) -> tuple[Field, ...]:
    return tuple(Field(a, kind, scale) for a in addresses)


# Each map: the manufacturer's document is named in `note` and, with table and page, in
# docs/hardware.md. Addresses are the 0-based PDU addresses sent on the wire.

SDM630 = MeterModel(
    name="SDM630",
    description="Eastron SDM630 Modbus v2, 3 phases, 100 A direct",
    function_code=4,
    word_order="big",
    phases=3,
    max_power_w=3 * _V230 * 100,
    energy=Field(0x48, "float32", F(1000)),  # 30073 Total Import kWh
    energy_phase=_floats(0x15A, 0x15C, 0x15E, scale=F(1000)),  # 30347.. L1-L3 import kWh
    voltage=_floats(0x00, 0x02, 0x04),
    current=_floats(0x06, 0x08, 0x0A),
    power_phase=_floats(0x0C, 0x0E, 0x10),
    power=Field(0x34, "float32"),  # 30053 Total system power
    frequency=Field(0x46, "float32"),  # 30071
    max_read=80,  # "restricted to 40 parameters or less" (two registers each)
    default_parity="N",
    note="Eastron SDM630 Modbus Smart Meter Modbus Protocol Implementation V2 (input registers, FC04).",
)

SDM72DM = MeterModel(
    name="SDM72D-M",
    description="Eastron SDM72D-M v2, 3 phases, 100 A direct",
    function_code=4,
    word_order="big",
    phases=3,
    max_power_w=3 * _V230 * 100,
    energy=Field(0x48, "float32", F(1000)),  # 30073 Total Import kWh
    # The SDM72D-M v2 map has no per-phase energy registers (0x15A.. are SDM630 only).
    voltage=_floats(0x00, 0x02, 0x04),
    current=_floats(0x06, 0x08, 0x0A),
    power_phase=_floats(0x0C, 0x0E, 0x10),
    power=Field(0x34, "float32"),
    frequency=Field(0x46, "float32"),
    max_read=60,  # "restricted to 30 parameters or less"
    note="Eastron SDM72D-M(-2) user manual, part 3 Modbus protocol (input registers, FC04).",
)

SDM120 = MeterModel(
    name="SDM120",
    description="Eastron SDM120-Modbus / SDM230-Modbus, 1 phase, 45 A direct",
    function_code=4,
    word_order="big",
    phases=1,
    max_power_w=1 * _V230 * 45,
    energy=Field(0x48, "float32", F(1000)),  # 30073 Import active energy
    voltage=_floats(0x00),
    current=_floats(0x06),
    # 0x34 (total system power) does not exist on the SDM120: the phase power is the total.
    power=Field(0x0C, "float32"),
    power_phase=_floats(0x0C),
    frequency=Field(0x46, "float32"),
    max_read=80,
    note="Eastron SDM120-Modbus / SDM230-Modbus protocol (input registers, FC04).",
)

ABB_B23 = MeterModel(
    name="ABB-B23",
    description="ABB B23/B24 (B-series), 3 phases, 65 A direct",
    function_code=3,
    word_order="big",
    phases=3,
    max_power_w=3 * _V230 * 65,
    energy=Field(0x5000, "uint64", F(10)),  # Active import kWh, 0.01 kWh
    energy_phase=_ints("uint64", 0x5460, 0x5464, 0x5468, scale=F(10)),  # L1-L3 import, 0.01 kWh
    voltage=_ints("uint32", 0x5B00, 0x5B02, 0x5B04, scale=F(1, 10)),  # 0.1 V
    current=_ints("uint32", 0x5B0C, 0x5B0E, 0x5B10, scale=F(1, 100)),  # 0.01 A
    power=Field(0x5B14, "int32", F(1, 100)),  # 0.01 W
    power_phase=_ints("int32", 0x5B16, 0x5B18, 0x5B1A, scale=F(1, 100)),
    frequency=Field(0x5B2C, "uint16", F(1, 100)),  # 0.01 Hz
    no_value_markers=True,
    note="ABB B23/B24 User Manual 2CMC485003M0201 rev. A, 9.3 Mapping Tables (holding registers, FC03).",
)

WE514 = MeterModel(
    name="WE-514",
    description="Orno OR-WE-514/515, 1 phase, 80 A direct",
    function_code=3,
    word_order="big",
    phases=1,
    max_power_w=1 * _V230 * 80,
    energy=Field(0xA000, "uint32", F(10)),  # total active energy, 0.01 kWh
    voltage=(Field(0x131, "uint16", F(1, 100)),),  # 0.01 V
    current=(Field(0x139, "uint32", F(1, 1000)),),  # 0.001 A
    power=Field(0x140, "uint32", F(1)),  # 0.001 kW = W
    power_phase=(Field(0x140, "uint32", F(1)),),
    frequency=Field(0x130, "uint16", F(1, 100)),  # 0.01 Hz
    default_parity="E",
    note="Orno 'Register description OR-WE-514 & OR-WE-515' (holding registers, FC03).",
)

WE516 = MeterModel(
    name="WE-516",
    description="Orno OR-WE-516/517, 3 phases, 80 A direct",
    function_code=3,
    word_order="big",
    phases=3,
    max_power_w=3 * _V230 * 80,
    energy=Field(0x108, "float32", F(1000)),  # forward (import) active energy, kWh
    energy_phase=_floats(0x10A, 0x10C, 0x10E, scale=F(1000)),  # L1-L3 forward kWh
    voltage=_floats(0x0E, 0x10, 0x12),
    current=_floats(0x16, 0x18, 0x1A),
    power=Field(0x1C, "float32", F(1000)),  # kW
    power_phase=_floats(0x1E, 0x20, 0x22, scale=F(1000)),  # kW
    frequency=Field(0x14, "float32"),
    default_parity="E",  # see docs/hardware.md: one driver says odd
    note="Orno OR-WE-516 register list (OR-WE-516_rejestry) (holding registers, FC03).",
)

# Carlo Gavazzi wrote two different maps for meters sold as "EM24". The current one (EM24
# DIN AV with the E1 protocol, the same layout as EM300/ET300/EM340/EM530) has kWh(+) TOT
# at 0x34; the older "EM24-DIN PFA, PFB & X models" map has it at 0x3E, and there 0x42 is
# kWh(+) PARTIAL, a counter the user resets from the front panel. Never bill from 0x42.
EM24 = MeterModel(
    name="EM24",
    description="Carlo Gavazzi EM24 DIN, current map (kWh TOT at 0x34), 3 phases, 65 A direct",
    function_code=4,
    word_order="little",  # INT32 with the low word first
    phases=3,
    max_power_w=3 * _V230 * 65,
    energy=Field(0x34, "int32", F(100)),  # kWh(+) TOT, 0.1 kWh
    energy_phase=_ints("int32", 0x40, 0x42, 0x44, scale=F(100)),  # kWh(+) L1-L3, 0.1 kWh
    voltage=_ints("int32", 0x00, 0x02, 0x04, scale=F(1, 10)),  # 0.1 V
    current=_ints("int32", 0x0C, 0x0E, 0x10, scale=F(1, 1000)),  # mA
    power_phase=_ints("int32", 0x12, 0x14, 0x16, scale=F(1, 10)),  # 0.1 W
    power=Field(0x28, "int32", F(1, 10)),  # W sys, 0.1 W
    frequency=Field(0x33, "int16", F(1, 10)),  # 0.1 Hz
    max_read=50,  # as the EM300-series document of the same map
    default_parity="N",
    note="Carlo Gavazzi EM24_E1 communication protocol v0 rev 1.3, table 2.3.1 (input registers, FC04).",
)

EM24_OLD = MeterModel(
    name="EM24-OLD",
    description="Carlo Gavazzi EM24-DIN, older map (kWh TOT at 0x3E), 3 phases, 65 A direct",
    function_code=4,
    word_order="little",
    phases=3,
    max_power_w=3 * _V230 * 65,
    energy=Field(0x3E, "int32", F(100)),  # kWh(+) TOT, 0.1 kWh (0x42 is the resettable PARTIAL)
    energy_phase=_ints("int32", 0x46, 0x48, 0x4A, scale=F(100)),  # kWh(+) L1-L3, 0.1 kWh
    voltage=_ints("int32", 0x00, 0x02, 0x04, scale=F(1, 10)),
    current=_ints("int32", 0x0C, 0x0E, 0x10, scale=F(1, 1000)),
    power_phase=_ints("int32", 0x12, 0x14, 0x16, scale=F(1, 10)),
    power=Field(0x28, "int32", F(1, 10)),
    frequency=Field(0x37, "int16", F(1, 10)),  # 0.1 Hz
    max_read=11,  # "at most 11 registers per read" in this document
    default_parity="N",
    note="Carlo Gavazzi 'EM24-DIN PFA, PFB & X models Communication Protocol' v4 rev 0, table 2.3-1.",
)

MODELS: dict[str, MeterModel] = {
    m.name: m for m in (SDM630, SDM72DM, SDM120, ABB_B23, WE514, WE516, EM24, EM24_OLD)
}
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def get_model(name: str) -> MeterModel:
    """The model of that name; case and the separator are forgiven ("sdm630", "abb_b23")."""
    m = MODELS.get(name)
    if m is not None:
        return m
    wanted = _folded(name)
    for model in MODELS.values():
        if _folded(model.name) == wanted:
            return model
    raise KeyError(f"unknown meter model {name!r}; known: {', '.join(MODELS)}")


def _folded(name: str) -> str:
    return name.upper().replace("_", "-").replace(" ", "-")


# -- the start-up check: a total far from the sum of its phases means a wrong map -------------


def phase_sum_problem(model: MeterModel, reading: MeterReading) -> str | None:
    """A sentence when the import total and the sum of the per-phase import counters
    disagree by more than the meters' own rounding allows; None when they agree or the
    model has no per-phase energy.

    A meter keeps its total and its phase counters apart, each rounded to the
    register's step, so they differ by a few steps at most. A wrong map (the EM24's
    resettable partial counter, another model's layout, a wrong word order) makes
    them differ by far more.
    """
    phases = reading.energy_phase_wh
    if not model.energy_phase or len(phases) != len(model.energy_phase) or any(p is None for p in phases):
        return None
    total, summed = reading.energy_wh, sum(phases)
    allowed = max(len(phases) * model.resolution_wh + model.resolution_wh, 0.02 * max(total, summed), 100)
    if abs(total - summed) <= allowed:
        return None
    return (
        f"meter {model.name}: the import total {total / 1000:.3f} kWh (register {model.energy.address:#06x}) is far "
        f"from the sum of its phases {summed / 1000:.3f} kWh "
        f"({', '.join(f'{p / 1000:.3f}' for p in phases)}): wrong meter.model or a different register map?"
    )
