"""Meter readings as OCPP measurands (both versions), and the sampling clocks.

Measurands: only those the meter model really measures are offered
(MeterValuesSampledData, SampledDataCtrlr.TxUpdatedMeasurands & co. reject
the rest). The station reports what its meter has as port names ("energy",
"power", "voltage", "current", "energy_phase", "frequency"); OCPP names are
accepted too. A station with a charge controller also offers Current.Offered:
the current the pilot offers the car (A per phase), from the station, not the
meter. `values()` turns a reading into (measurand, value, unit,
phase) tuples; each version writes them in its own shape (1.6: strings in
SampledValue; 2.0.1: numbers with unitOfMeasure).

Energy.Active.Import.Register is always integer Wh, like meterStart and
meterStop (which the 1.6 schemas type as integers): strict central systems
reject a fractional register value, and billing needs the register as the
meter shows it. Other values carry one decimal.

Timing:
* sampled values: every MeterValueSampleInterval seconds counted from the
  start of the transaction (context Sample.Periodic);
* clock-aligned values: at every multiple of ClockAlignedDataInterval
  counted from midnight UTC (context Sample.Clock), each stamped with the
  aligned instant itself, i.e. the start of the interval that begins there,
  not the moment the meter happened to be read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

ENERGY = "Energy.Active.Import.Register"

# port name -> OCPP measurands it provides
_PORT_NAMES = {
    "energy": {ENERGY},
    "power": {"Power.Active.Import"},
    "voltage": {"Voltage"},
    "current": {"Current.Import"},
    # Frequency only where the version can say Hz (2.0.1): the 1.6 unit enum has
    # no Hz, and a 1.6 value without a unit means Wh.
    "frequency": {"Frequency"},
    "energy_phase": set(),  # per-phase energy: reported as ENERGY with a phase
}
OFFERED = "Current.Offered"  # a charge controller's offer to the car (A per phase): the station's, not the meter's
_OCPP_NAMES = {ENERGY, "Power.Active.Import", "Voltage", "Current.Import", "Frequency", OFFERED}


class Value(NamedTuple):
    measurand: str
    value: float | int  # int Wh for the energy register
    unit: str
    phase: str | None


def ocpp_measurands(meter_measurands: Iterable[str], frequency: bool = False) -> frozenset[str]:
    """The OCPP measurands the meter provides (`frequency`: the version can carry Hz)."""
    out: set[str] = {ENERGY}  # a charging station without an energy register does not exist
    for name in meter_measurands:
        if name in _PORT_NAMES:
            out |= _PORT_NAMES[name]
        elif name in _OCPP_NAMES:
            out.add(name)
    if not frequency:
        out.discard("Frequency")
    return frozenset(out)


def _phases(n: int) -> list[str]:
    return ["L1", "L2", "L3"][:n] if n > 1 else []


def values(reading: Any, measurands: Iterable[str], offered_a: float | None = None) -> list[Value]:
    """The values of one reading (a station.core.model.MeterReading) for these measurands, in their order;
    `offered_a`: the current a charge controller offers the car (None without one)."""
    out: list[Value] = []
    for measurand in measurands:
        if measurand == ENERGY:
            out.append(Value(ENERGY, int(reading.energy_wh), "Wh", None))
        elif measurand == "Power.Active.Import" and reading.power_w is not None:
            out.append(Value(measurand, reading.power_w, "W", None))
        elif measurand == "Voltage":
            phases = _phases(len(reading.voltage_v))
            for i, v in enumerate(reading.voltage_v):
                out.append(Value(measurand, v, "V", f"{phases[i]}-N" if phases else None))
        elif measurand == "Current.Import":
            phases = _phases(len(reading.current_a))
            for i, a in enumerate(reading.current_a):
                out.append(Value(measurand, a, "A", phases[i] if phases else None))
        elif measurand == "Frequency" and reading.frequency_hz is not None:
            out.append(Value(measurand, reading.frequency_hz, "Hz", None))
        elif measurand == OFFERED and offered_a is not None:
            out.append(Value(measurand, offered_a, "A", None))
    return out


def next_aligned(now: datetime, interval_s: float) -> datetime:
    """The next multiple of `interval_s` after `now`, counted from midnight UTC."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - midnight).total_seconds()
    steps = math.floor(elapsed / interval_s + 1e-9) + 1
    return midnight + timedelta(seconds=steps * interval_s)


def next_sampled(started_mono: float, now_mono: float, interval_s: float) -> float:
    """The next multiple of `interval_s` after `now_mono`, counted from the transaction start."""
    steps = math.floor((now_mono - started_mono) / interval_s + 1e-9) + 1
    return started_mono + steps * interval_s
