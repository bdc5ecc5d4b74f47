"""Meter readings as OCPP 1.6 MeterValue objects (the measurands and clocks are station/backends/ocpp/metering.py).

A 1.6 SampledValue carries its value as a string: the energy register as
integer Wh, everything else with one decimal; format Raw, location Outlet,
the unit from the 1.6 enum (Wh, W, V, A).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from station.backends.ocpp.metering import ENERGY, OFFERED, next_aligned, next_sampled, ocpp_measurands, values

__all__ = ["ENERGY", "OFFERED", "energy_value", "next_aligned", "next_sampled", "ocpp_measurands", "sampled_values"]


def sampled_values(reading: Any, measurands: Iterable[str], context: str,
                   offered_a: float | None = None) -> list[dict[str, Any]]:
    """SampledValue list for one reading (a station.core.model.MeterReading) and the current offered
    (`offered_a`: a charge controller's, None without one)."""
    out: list[dict[str, Any]] = []
    for v in values(reading, measurands, offered_a):
        text = str(int(v.value)) if v.measurand == ENERGY else f"{v.value:.1f}"
        sv = {"value": text, "context": context, "format": "Raw", "measurand": v.measurand,
              "location": "Outlet", "unit": v.unit}
        if v.phase:
            sv["phase"] = v.phase
        out.append(sv)
    return out


def energy_value(wh: int, timestamp: str, context: str) -> dict[str, Any]:
    return {"timestamp": timestamp, "sampledValue": [
        {"value": str(int(wh)), "context": context, "format": "Raw", "measurand": ENERGY,
         "location": "Outlet", "unit": "Wh"}]}
