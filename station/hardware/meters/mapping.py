"""The shape of a meter's register map: fields, models and the request plan.

A meter model is a `MeterModel`: the Modbus function code, the word order of
its 32/64-bit values, and one `Field` per quantity (address, raw type, scale).
No model has code of its own; station/hardware/meters/models.py decodes and
encodes registers from this data, and station/hardware/meters/catalogue.py
holds the models themselves.

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
inside a gap are read and ignored, so a model whose meter refuses reads of
registers it lacks (the SDM72D-M version 1: exception code 2) sets `max_gap`
to 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from typing import Literal

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
    # The same meter sold with another register map (EM24 / EM24-OLD, SDM72D-M-V1 / -V2):
    # `station meter read` tries these when this map fails.
    other_versions: tuple[str, ...] = ()

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
        m = {"energy"}
        if self.voltage:
            m.add("voltage")
        if self.current:
            m.add("current")
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

