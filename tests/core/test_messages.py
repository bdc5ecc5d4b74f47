"""LCD texts: every key, both languages, every size; lines fit; German is German."""

from __future__ import annotations

import itertools

import pytest

from station.core import messages as m
from station.hardware.display import encode

SIZES = [(16, 2), (20, 4), (16, 4), (20, 2)]
STANDARD = [(16, 2), (20, 4)]

FIELD_SETS = [
    {},
    {"name": "station-1", "energy_wh": 0, "power_w": 0.0},
    {"name": "Tiefgarage Süd Stellplatz 12", "owner": "Wohnung 12 links", "energy_wh": 12345, "power_w": 7360,
     "elapsed_s": 3723, "reason": "meter", "until": "18:30", "unplug": True, "status": "Blocked",
     "message": "Key is not registered with this operator, please contact support", "cached": False},
    {"energy_wh": 1_234_567, "power_w": 22080.0, "elapsed_s": 360000, "reason": "a very unusual failure text"},
    {"message": "Key is not registered", "reason": "ContactorFeedback", "status": "ConcurrentTx"},
]


@pytest.mark.parametrize("key", m.KEYS)
def test_every_line_fits_every_size(key):
    for lang, (cols, rows), fields, offline in itertools.product(m.LANGUAGES, SIZES, FIELD_SETS, (False, True)):
        lines = m.screen(key, lang, cols, rows, offline=offline, **fields)
        assert len(lines) == rows, (key, lang, cols, rows, fields)
        for line in lines:
            assert isinstance(line, str) and len(line) <= cols, (key, lang, cols, rows, line)
            assert b"?" not in encode(line.replace("?", "")), line  # every character is on the LCD


@pytest.mark.parametrize("key", m.KEYS)
def test_standard_layouts_need_no_cutting(key):
    """The texts are written for 16x2 and 20x4: laid out, nothing is cut off by the final trim."""
    typical = {"name": "station-1", "energy_wh": 12345, "power_w": 7400, "elapsed_s": 3600,
               "reason": "reader", "until": "18:30", "owner": "Whg. 12", "message": "Key is not registered"}
    for lang, (cols, rows), offline in itertools.product(m.LANGUAGES, STANDARD, (False, True)):
        for line in m._compose(key, lang, cols, rows, dict(typical, offline=offline)):
            assert len(line) <= cols, (key, lang, cols, rows, line)


@pytest.mark.parametrize("key", m.KEYS)
def test_languages_differ_and_screens_are_not_empty(key):
    for cols, rows in STANDARD:
        en = m.screen(key, "en", cols, rows, energy_wh=5000)
        de = m.screen(key, "de", cols, rows, energy_wh=5000)
        assert any(en) and any(de)
        assert en != de, key


@pytest.mark.parametrize("cols,rows", STANDARD)
def test_german_wording(cols, rows):
    def text(key, **fields):
        return "\n".join(m.screen(key, "de", cols, rows, **fields))

    assert "Karte vorhalten" in text("available", name="Süd")
    assert "Karte ungültig" in text("other_card")
    assert "Karte abgelehnt" in text("refused") or "Nicht berechtigt" in text("refused")
    assert "Karte gesperrt" in text("refused", status="Blocked")
    assert "Störung" in text("faulted", reason="meter") and "Zählerfehler" in text("faulted", reason="meter")
    assert "Außer Betrieb" in text("unavailable")
    assert "12,345 kWh" in text("charging", energy_wh=12345, power_w=7400)
    assert "7,4 kW" in text("charging", energy_wh=12345, power_w=7400)
    assert "Speicherfehler" in text("storage_refused")
    assert "Reserviert" in text("reserved")
    assert "anschließen" in text("plug_in")


def test_german_20x4_says_ladevorgang():
    assert m.screen("charging", "de", 20, 4, energy_wh=1)[0] == "Ladevorgang"
    assert m.screen("finishing", "de", 20, 4, energy_wh=1)[0] == "Ladevorgang beendet"


def test_english_wording():
    assert m.screen("available", "en", 16, 2, name="Garage") == ["Garage", "Tap card"]
    assert m.screen("authorizing", "en", 16, 2) == ["Checking card", "Please wait"]
    assert m.screen("plug_in", "en", 16, 2)[1] == "Plug in car"
    assert m.screen("charging", "en", 16, 2, energy_wh=12345, power_w=7400) == ["Charging  7.4 kW", "12.345 kWh"]
    assert m.screen("storage_refused", "en", 16, 2) == ["Cannot record", "Charging refused"]
    assert m.screen("faulted", "en", 20, 4, reason="contactor")[:2] == ["Fault", "Contactor error"]
    assert m.screen("faulted", "en", 16, 2, reason="PowerMeterFailure") == ["Fault", "Meter error"]


def test_backend_message_wraps_on_16_columns():
    assert m.screen("refused", "en", 16, 2, message="Key is not registered") == ["Key is not", "registered"]
    assert m.screen("refused", "en", 20, 4, message="Key is not registered") == \
        ["Card refused", "Key is not", "registered", ""]
    assert m.screen("refused", "en", 20, 2, message="Key unknown") == ["Card refused", "Key unknown"]
    long = m.screen("refused", "de", 16, 2, message="Diese Karte ist leider nicht für diese Station freigeschaltet")
    assert long[1].endswith("..") and all(len(x) <= 16 for x in long)
    assert m.screen("refused", "en", 16, 2) == ["Card refused", "Not authorized"]


def test_energy_and_power_formats():
    assert m.format_energy(0) == "0 Wh"
    assert m.format_energy(850) == "850 Wh"
    assert m.format_energy(1999) == "1.999 kWh"
    assert m.format_energy(12345) == "12.345 kWh"
    assert m.format_energy(12345, "de") == "12,345 kWh"
    assert m.format_energy(123_459) == "123.45 kWh"  # truncated, never rounded up
    assert m.format_energy(1_234_567, "de") == "1234,5 kWh"
    assert m.format_energy(None) == "-- kWh"
    assert m.format_power(850.4) == "850 W"
    assert m.format_power(7360, "de") == "7,4 kW"
    assert m.format_power(None) == ""
    assert m.format_duration(3723) == "1:02:03"


@pytest.mark.parametrize("key", m.KEYS)
def test_offline_is_shown(key):
    quiet_on_two_rows = {k for k, row in m._SPARE_ROW.items() if row is None}
    for lang, (cols, rows) in itertools.product(m.LANGUAGES, STANDARD):
        lines = m.screen(key, lang, cols, rows, offline=True, name="station-1", energy_wh=12345, power_w=7400)
        online = m.screen(key, lang, cols, rows, offline=False, name="station-1", energy_wh=12345, power_w=7400)
        if key in quiet_on_two_rows and rows == 2:
            assert lines == online
            continue
        assert any("offline" in line for line in lines), (key, lang, cols, rows, lines)
        if key != "offline":
            assert not any("offline" in line for line in online)


def test_offline_marker_on_16x2():
    assert m.screen("available", "en", 16, 2, name="Garage", offline=True) == ["Garage   offline", "Tap card"]
    assert m.screen("available", "de", 16, 2, name="station-1", offline=True) == ["Server offline", "Karte vorhalten"]
    assert m.screen("charging", "en", 16, 2, energy_wh=12345, power_w=7400, offline=True) == \
        ["Backend offline", "12.345 kWh"]
    assert m.screen("available", "en", 20, 4, name="Garage", offline=True)[3] == "Backend offline"


def test_unknown_key_and_language():
    with pytest.raises(KeyError):
        m.screen("no_such_screen", "en", 16, 2)
    with pytest.raises(ValueError):
        m.screen("available", "fr", 16, 2)


def test_keys_cover_the_states_and_events():
    required = {"available", "authorizing", "refused", "other_card", "charging", "suspended_ev", "suspended_evse",
                "finishing", "reserved", "unavailable", "faulted", "offline", "storage_refused", "plug_in",
                "no_power_timeout", "tap_card", "meter_fault"}
    assert required <= set(m.KEYS)


@pytest.mark.parametrize("cols,rows", STANDARD)
def test_the_pilot_s_and_the_controller_s_faults_are_named(cols, rows):
    """What the charge controller reports (station/core/pilot.py's vendor codes) reads as its reason."""
    expected = {"ResidualCurrent": ("Residual current", "Fehlerstrom"), "DiodeCheck": ("diode", "iode"),
                "VentilationRequired": ("Vent", "Belüftung"), "PilotError": ("Pilot", "Pilot"),
                "ControllerFailure": ("Controller error", "teuerungsfehler"),
                "ControllerSetup": ("Controller set", "Steuerung einr"), "CableError": ("Cable", "Kabel")}
    for reason, (en, de) in expected.items():
        assert en in "\n".join(m.screen("faulted", "en", cols, rows, reason=reason)), reason
        assert de in "\n".join(m.screen("faulted", "de", cols, rows, reason=reason)), reason
