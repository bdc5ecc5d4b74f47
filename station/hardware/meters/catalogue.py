"""The catalogue: every meter model the station knows, as data (`meter.model` names).

Each map names the manufacturer's document in `note`; docs/hardware.md gives
title, version, table and page, and tests/hardware/test_meter_maps.py checks each map
against a table typed by hand from that document. Addresses are the 0-based
PDU addresses sent on the wire. `get_model` also takes the old names kept as
aliases (`SDM72D-M` is the SDM72D-M-V2), and forgives case and separators.
"""

from __future__ import annotations

from fractions import Fraction

from station.hardware.meters.mapping import Field, MeterModel

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

# The SDM72D-M was sold with two register maps under one name. Version 1 ("SDM72D-M Modbus
# Protocol V1.1") has nine input registers and answers exception code 2 to anything else;
# version 2 (the SDM72D-M-2, "SDM72D-M-v2") has the SDM630's instantaneous registers too.
# Both bill 0x48; only the V2 has voltages, currents and frequency.
SDM72DM_V1 = MeterModel(
    name="SDM72D-M-V1",
    description="Eastron SDM72D-M version 1 (energy and total power only), 3 phases, 100 A direct",
    function_code=4,
    word_order="big",
    phases=3,
    max_power_w=3 * _V230 * 100,
    energy=Field(0x48, "float32", F(1000)),  # 30073 Total Import kWh
    voltage=(),
    current=(),
    power=Field(0x34, "float32"),  # 30053 Total system power
    max_gap=0,  # never read a register the meter lacks: it refuses the whole read (code 2)
    max_read=60,  # "restricted to 30 parameters or less"
    default_parity="N",
    other_versions=("SDM72D-M-V2",),
    note="Eastron 'SDM72D-M Modbus Protocol' V1.1 (input registers, FC04).",
)

SDM72DM_V2 = MeterModel(
    name="SDM72D-M-V2",
    description="Eastron SDM72D-M-2 (version 2 map), 3 phases, 100 A direct",
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
    default_parity="N",
    other_versions=("SDM72D-M-V1",),
    note="Eastron SDM72D-M-2 user manual V1.1, part 3 Modbus protocol (input registers, FC04).",
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
    other_versions=("EM24-OLD",),
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
    other_versions=("EM24",),
    note="Carlo Gavazzi 'EM24-DIN PFA, PFB & X models Communication Protocol' v4 rev 0, table 2.3-1.",
)

MODELS: dict[str, MeterModel] = {
    m.name: m for m in (SDM630, SDM72DM_V1, SDM72DM_V2, SDM120, ABB_B23, WE514, WE516, EM24, EM24_OLD)
}
# Names of earlier releases, still accepted in meter.model: "SDM72D-M" was the V2 map.
ALIASES: dict[str, str] = {"SDM72D-M": "SDM72D-M-V2"}
# Every name meter.model accepts (the configuration's choices).
MODEL_NAMES: tuple[str, ...] = (*MODELS, *ALIASES)


def get_model(name: str) -> MeterModel:
    """The model of that name or alias; case and the separator are forgiven ("sdm630", "abb_b23")."""
    name = ALIASES.get(name, name)
    m = MODELS.get(name)
    if m is not None:
        return m
    wanted = _folded(name)
    for alias, target in ALIASES.items():
        if _folded(alias) == wanted:
            return MODELS[target]
    for model in MODELS.values():
        if _folded(model.name) == wanted:
            return model
    raise KeyError(f"unknown meter model {name!r}; known: {', '.join(MODEL_NAMES)}")


def _folded(name: str) -> str:
    return name.upper().replace("_", "-").replace(" ", "-")
