"""Meter readings as OCPP 2.0.1 MeterValueType (the measurands and clocks are station/backends/ocpp/metering.py).

A 2.0.1 SampledValue carries its value as a number and its unit in
unitOfMeasure; the energy register stays integer Wh as in 1.6 (billing needs
the register as the meter shows it), everything else has one decimal.
Frequency is offered here (unitOfMeasure "Hz"), unlike in 1.6.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from station.backends.ocpp.metering import ENERGY, OFFERED, ocpp_measurands, values

__all__ = ["ENERGY", "OFFERED", "energy_value", "measurands", "meter_value", "sampled_values"]


def measurands(meter: Iterable[str]) -> frozenset[str]:
    return ocpp_measurands(meter, frequency=True)


def sampled_values(reading: Any, wanted: Iterable[str], context: str,
                   offered_a: float | None = None) -> list[dict[str, Any]]:
    """The SampledValues of one reading; `offered_a`: the current a charge controller offers the car
    (Current.Offered), None without one."""
    out: list[dict[str, Any]] = []
    for v in values(reading, wanted, offered_a):
        number: int | float = int(v.value) if v.measurand == ENERGY else round(float(v.value), 1)
        sv: dict[str, Any] = {"value": number, "context": context, "measurand": v.measurand, "location": "Outlet",
                              "unitOfMeasure": {"unit": v.unit}}
        if v.phase:
            sv["phase"] = v.phase
        out.append(sv)
    return out


def meter_value(reading: Any, wanted: Iterable[str], context: str, stamp: str,
                offered_a: float | None = None) -> dict[str, Any] | None:
    """One MeterValueType, or None when none of the wanted measurands is there."""
    sampled = sampled_values(reading, wanted, context, offered_a)
    return {"timestamp": stamp, "sampledValue": sampled} if sampled else None


def energy_value(wh: int, stamp: str, context: str, phases: tuple[int, ...] = ()) -> dict[str, Any]:
    """The energy register (and its phases, where the meter has them) at one instant."""
    sampled: list[dict[str, Any]] = [{"value": int(wh), "context": context, "measurand": ENERGY, "location": "Outlet",
                                      "unitOfMeasure": {"unit": "Wh"}}]
    if len(phases) > 1:
        for name, value in zip(("L1", "L2", "L3"), phases, strict=False):
            sampled.append({**sampled[0], "value": int(value), "phase": name})
    return {"timestamp": stamp, "sampledValue": sampled}
