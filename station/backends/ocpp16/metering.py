"""Meter readings as OCPP 1.6 MeterValue objects, and the sampling clocks.

Measurands: only those the meter model really measures are offered
(MeterValuesSampledData & co. reject the rest). The station reports what its
meter has as port names ("energy", "power", "voltage", "current",
"energy_phase", "frequency"); OCPP names are accepted too. A station with a
charge controller also offers Current.Offered: the current the pilot offers
the car (A per phase), from the station, not the meter.

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
from typing import Any

ENERGY = "Energy.Active.Import.Register"

# port name -> OCPP measurands it provides
_PORT_NAMES = {
    "energy": {ENERGY},
    "power": {"Power.Active.Import"},
    "voltage": {"Voltage"},
    "current": {"Current.Import"},
    # Frequency is left out: the 1.6 unit enum has no Hz, and a value without
    # a unit means Wh.
    "energy_phase": set(),  # per-phase energy: reported as ENERGY with a phase
}
OFFERED = "Current.Offered"
_OCPP_NAMES = {ENERGY, "Power.Active.Import", "Voltage", "Current.Import", OFFERED}


def ocpp_measurands(meter_measurands: Iterable[str]) -> frozenset[str]:
    out: set[str] = {ENERGY}  # a charging station without an energy register does not exist
    for name in meter_measurands:
        if name in _PORT_NAMES:
            out |= _PORT_NAMES[name]
        elif name in _OCPP_NAMES:
            out.add(name)
    return frozenset(out)


def _phases(n: int) -> list[str]:
    return ["L1", "L2", "L3"][:n] if n > 1 else []


def sampled_values(reading: Any, measurands: Iterable[str], context: str,
                   offered_a: float | None = None) -> list[dict[str, Any]]:
    """SampledValue list for one reading (a station.core.ports.MeterReading) and the current offered
    (`offered_a`: a charge controller's, None without one)."""
    out: list[dict[str, Any]] = []

    def add(measurand: str, value: float | int, unit: str, phase: str | None = None) -> None:
        text = str(int(value)) if measurand == ENERGY else f"{value:.1f}"
        sv = {"value": text, "context": context, "format": "Raw", "measurand": measurand,
              "location": "Outlet", "unit": unit}
        if phase:
            sv["phase"] = phase
        out.append(sv)

    for measurand in measurands:
        if measurand == ENERGY:
            add(ENERGY, int(reading.energy_wh), "Wh")
        elif measurand == "Power.Active.Import" and reading.power_w is not None:
            add(measurand, reading.power_w, "W")
        elif measurand == "Voltage":
            phases = _phases(len(reading.voltage_v))
            for i, v in enumerate(reading.voltage_v):
                add(measurand, v, "V", f"{phases[i]}-N" if phases else None)
        elif measurand == "Current.Import":
            phases = _phases(len(reading.current_a))
            for i, a in enumerate(reading.current_a):
                add(measurand, a, "A", phases[i] if phases else None)
        elif measurand == OFFERED and offered_a is not None:
            add(measurand, offered_a, "A")
    return out


def energy_value(wh: int, timestamp: str, context: str) -> dict[str, Any]:
    return {"timestamp": timestamp, "sampledValue": [
        {"value": str(int(wh)), "context": context, "format": "Raw", "measurand": ENERGY,
         "location": "Outlet", "unit": "Wh"}]}


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
