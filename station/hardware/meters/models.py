"""kWh meter models as data: one description per model, used both ways (decode and encode).

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
separately, in tests/hardware/test_meter_maps.py, against register tables written by
hand from the manufacturer's document and served by pymodbus' own server;
docs/hardware.md names each document (title, version, table).

The shape of a map (`Field`, `MeterModel`, the request plan) is in
station/hardware/meters/mapping.py, the models themselves in
station/hardware/meters/catalogue.py; this module re-exports both, so
`models.MODELS`, `models.get_model` and `models.MeterModel` stay where callers
look for them.

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

from station.core.model import MeterReading
from station.hardware.meters.catalogue import MODEL_NAMES, MODELS, get_model
from station.hardware.meters.mapping import (
    DEFAULT_MAX_GAP,
    KINDS,
    MODBUS_MAX_READ,
    Field,
    MeterModel,
    Request,
    WordOrder,
    plan_requests,
)

__all__ = [
    "DEFAULT_MAX_GAP", "KINDS", "MODBUS_MAX_READ", "MODELS", "MODEL_NAMES", "DecodeError", "Field", "MeterModel",
    "MeterValues", "Request", "WordOrder", "decode", "encode", "energy_wh", "get_model", "phase_sum_problem",
    "plan_requests", "registered_wh",
]


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
