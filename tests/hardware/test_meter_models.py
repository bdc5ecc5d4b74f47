"""Meter models as data: request plans, raw encodings checked by hand, exact Wh conversion."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.hardware.meters import models
from station.hardware.meters.models import (
    MODBUS_MAX_READ,
    MODELS,
    DecodeError,
    Field,
    MeterValues,
    decode,
    encode,
    plan_requests,
)

# Written down independently of models.py: the number of reads per reading and the
# energy register's step in Wh for each model.
EXPECTED_REQUESTS = {"SDM630": 3, "SDM72D-M-V1": 2, "SDM72D-M-V2": 2,
                     "SDM120": 2, "ABB-B23": 3, "WE-514": 2, "WE-516": 2, "EM24": 2,
                     "EM24-OLD": 6}
ENERGY_STEP_WH = {"SDM630": 1, "SDM72D-M-V1": 1, "SDM72D-M-V2": 1,
                  "SDM120": 1, "ABB-B23": 10, "WE-514": 10, "WE-516": 1, "EM24": 100,
                  "EM24-OLD": 100}
# Registers per request the manufacturers' documents allow (docs/hardware.md).
MAX_READ = {"SDM630": 80, "SDM72D-M-V1": 60, "SDM72D-M-V2": 60,
            "SDM120": 80, "ABB-B23": 125, "WE-514": 125, "WE-516": 125, "EM24": 50,
            "EM24-OLD": 11}


def test_model_names_match_the_config_choices():
    from station.config import SCHEMA
    from station.hardware.meters.catalogue import ALIASES

    assert set(MODELS) | set(ALIASES) == set(SCHEMA["meter.model"].choices)
    assert ALIASES == {"SDM72D-M": "SDM72D-M-V2"}  # the name of earlier releases keeps its map


@pytest.mark.parametrize("name", sorted(MODELS))
def test_plan_covers_every_field_with_few_legal_reads(name):
    m = MODELS[name]
    plan = m.plan
    assert len(plan) == EXPECTED_REQUESTS[name]
    for req in plan:
        assert 1 <= req.count <= min(MODBUS_MAX_READ, MAX_READ[name])
    for a, b in zip(plan, plan[1:], strict=False):
        assert a.end <= b.address, "reads overlap"
        # not merged: the gap is too large, or merging would exceed the meter's limit
        assert b.address - a.end > m.max_gap or b.end - a.address > MAX_READ[name]
    for f in m.all_fields():
        assert any(r.covers(f) for r in plan), f"register {f.address:#x} not read"
    # every read contains at least one field (no useless request)
    for r in plan:
        assert any(r.covers(f) for f in m.all_fields())


def test_plan_caps_reads_at_125_registers():
    fields = [Field(a, "float32") for a in range(0, 300, 2)]
    plan = plan_requests(fields, max_gap=16)
    assert [r.count for r in plan] == [124, 124, 52]
    assert plan_requests([Field(0, "uint16"), Field(17, "uint16")], 16)[0].count == 18
    assert len(plan_requests([Field(0, "uint16"), Field(18, "uint16")], 16)) == 2


def test_wire_bytes_per_reading():
    # 8 bytes per request; reply = 5 + 2 per register
    assert MODELS["EM24"].wire_bytes() == (16, (5 + 2 * 42) + (5 + 2 * 19))
    assert MODELS["SDM630"].wire_bytes() == (24, (5 + 36) + (5 + 44) + (5 + 12))


def _words_float_be(x: float) -> list[int]:
    b = struct.pack(">f", x)
    return [int.from_bytes(b[0:2], "big"), int.from_bytes(b[2:4], "big")]


def test_sdm630_import_register_is_float32_kwh_high_word_first():
    m = MODELS["SDM630"]
    words = encode(m, MeterValues(energy_wh=1_234_567, energy_phase_wh=(1, 2, 3)))
    assert [words[0x48], words[0x49]] == _words_float_be(1234.567)
    assert [words[0x15C], words[0x15D]] == _words_float_be(0.002)


def test_em24_import_register_is_int32_low_word_first_in_tenths_of_kwh():
    m = MODELS["EM24"]
    words = encode(m, MeterValues(energy_wh=1_000_000_049, energy_phase_wh=(0, 0, 0)))
    units = 10_000_000  # 0.1 kWh units, the 49 Wh are below the register's step
    assert [words[0x34], words[0x35]] == [units & 0xFFFF, units >> 16]  # kWh(+) TOT, current map
    old = MODELS["EM24-OLD"]
    words = encode(old, MeterValues(energy_wh=1_000_000_049, energy_phase_wh=(0, 0, 0)))
    assert [words[0x3E], words[0x3F]] == [units & 0xFFFF, units >> 16]  # kWh(+) TOT, older map
    assert 0x42 not in words  # the resettable kWh(+) PARTIAL is never read


def test_abb_import_register_is_uint64_hundredths_of_kwh():
    m = MODELS["ABB-B23"]
    words = encode(m, MeterValues(energy_wh=1_234_567, energy_phase_wh=(0, 0, 0)))
    assert [words[0x5000 + i] for i in range(4)] == [0, 0, 123456 >> 16, 123456 & 0xFFFF]


def _blocks(m, words: dict[int, int]) -> list[list[int]]:
    return [[words.get(a, 0) for a in range(r.address, r.end)] for r in m.plan]


def test_abb_no_value_markers():
    m = MODELS["ABB-B23"]
    words = encode(
        m,
        MeterValues(
            energy_wh=5000,
            energy_phase_wh=(1000, 2000, 2000),
            power_w=100.0,
            power_phase_w=(100.0, 0.0, 0.0),
            voltage_v=(230.0, 230.0, 230.0),
            current_a=(0.5, 0.0, 0.0),
        ),
    )
    words[0x5B04], words[0x5B05] = 0xFFFF, 0xFFFF  # V L3: unsigned all ones
    words[0x5B14], words[0x5B15] = 0x7FFF, 0xFFFF  # total power: signed "no value"
    r = decode(m, _blocks(m, words))
    assert r.voltage_v == (230.0, 230.0, None)
    assert r.power_w is None
    assert r.energy_wh == 5000 and r.energy_phase_wh == (1000, 2000, 2000)
    for i in range(4):
        words[0x5000 + i] = 0xFFFF
    with pytest.raises(DecodeError, match="no value"):
        decode(m, _blocks(m, words))


def test_decode_rejects_short_blocks():
    m = MODELS["SDM120"]
    with pytest.raises(DecodeError):
        decode(m, [[0] * 14])
    with pytest.raises(DecodeError):
        decode(m, [[0] * 14, [0] * 3])


def test_float32_noise_is_removed_from_scaled_values():
    m = MODELS["WE-516"]  # power in kW as float32
    words = encode(m, MeterValues(energy_wh=0, energy_phase_wh=(0, 0, 0), power_w=6900.0, power_phase_w=(2300.0,) * 3))
    r = decode(m, _blocks(m, words))
    assert r.power_w == 6900.0
    assert r.power_phase_w == (2300.0, 2300.0, 2300.0)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(MODELS)), wh=st.integers(min_value=0, max_value=16_383_999))
def test_energy_round_trip_is_exact_integer_wh(name, wh):
    m = MODELS[name]
    step = ENERGY_STEP_WH[name]
    n = m.phases
    phase = tuple(wh // n + (1 if i < wh % n else 0) for i in range(n)) if m.energy_phase else ()
    r = decode(m, _blocks(m, encode(m, MeterValues(energy_wh=wh, energy_phase_wh=phase))))
    assert isinstance(r.energy_wh, int)
    assert r.energy_wh == wh - wh % step
    assert r.energy_phase_wh == tuple(p - p % step for p in phase)


def test_float_energy_above_16384_kwh_is_quantized_like_the_meter():
    m = MODELS["SDM630"]
    got = models.registered_wh(m, m.energy, 20_000_001)
    assert abs(got - 20_000_001) <= 1 and isinstance(got, int)
