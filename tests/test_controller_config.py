"""The [controller] keys: defaults, bounds, and what check-config finds across them."""

from __future__ import annotations

import pytest

from station import config as configmod
from station.configcheck import findings
from station.errors import ConfigError


def errors(cfg: configmod.Config) -> dict[str, str]:
    return {f.key: f.text for f in findings(cfg, read_files=False) if f.level == "error"}


def test_defaults_are_a_station_without_a_controller():
    c = configmod.defaults().controller
    assert c.model == "none" and c.min_current_a == 6 and c.address == 2 and c.port is None
    assert configmod.defaults().hardware.emulate_bus is True


@pytest.mark.parametrize("key, value", [
    ("controller.model", "EVSE"), ("controller.min_current_a", 5), ("controller.max_current_a", 81),
    ("controller.address", 0), ("controller.address", 248), ("sim.car_phases", 2),
])
def test_bad_values_are_refused_by_the_loader(key, value):
    with pytest.raises(ConfigError, match=key):
        configmod.defaults({key: value})


def test_check_config_finds_what_cannot_work():
    ok = configmod.defaults({"controller.model": "EVSE-DIN", "controller.address": 2})
    assert errors(ok) == {}
    clash = configmod.defaults({"controller.model": "EVSE-DIN", "controller.address": 1, "meter.address": 1})
    assert "controller.address" in errors(clash)
    own_line = configmod.defaults({"controller.model": "EVSE-DIN", "controller.address": 1,
                                   "controller.port": "/dev/ttyUSB1"})
    assert errors(own_line) == {}  # another line: the same address is fine
    upside_down = configmod.defaults({"controller.model": "EVSE-DIN", "controller.min_current_a": 16,
                                      "controller.max_current_a": 10})
    assert "controller.min_current_a" in errors(upside_down)
    phoenix = configmod.defaults({"controller.model": "EV-CC-AC1-M3", "controller.max_current_a": 80})
    assert "63 A" in errors(phoenix)["controller.max_current_a"]
    none = configmod.defaults({"controller.address": 1})  # no controller: its address means nothing
    assert errors(none) == {}


def test_emulate_bus_without_simulation_is_a_hint():
    cfg = configmod.defaults({"hardware.mode": "pi", "hardware.emulate_bus": False})
    assert any(f.key == "hardware.emulate_bus" and f.level == "hint" for f in findings(cfg, read_files=False))


def test_the_retired_charging_max_current_a_still_loads_and_says_where_it_went(tmp_path, caplog):
    """config/station.toml had [charging] max_current_a; a file copied from it keeps loading: the key
    is ignored (controller.max_current_a is the rating) and check-config and the start say so."""
    path = tmp_path / "station.toml"
    path.write_text("[charging]\nmax_current_a = 20.0\nphases = 1\n[controller]\nmodel = \"EVSE-DIN\"\n")
    cfg = configmod.load(path)
    assert cfg.retired == ("charging.max_current_a",) and cfg.controller.max_current_a == 16
    assert cfg.charging.phases == 1
    found = [f for f in findings(cfg, read_files=False) if f.key == "charging.max_current_a"]
    assert [f.level for f in found] == ["warning"] and "controller.max_current_a" in found[0].text
    assert configmod.defaults().retired == ()
    with pytest.raises(AttributeError):
        cfg.charging.max_current_a  # noqa: B018 - gone from the tree: nothing can use it by mistake


async def test_the_daemon_logs_a_retired_key_at_start(tmp_path, caplog):
    from tests.stations import running_station

    async with running_station(tmp_path, {"charging.max_current_a": 20}):
        pass
    assert any("charging.max_current_a" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_no_gpio_contactor_needs_a_charge_controller():
    with pytest.raises(ConfigError, match="contactor.enabled"):
        configmod.defaults({"contactor.enabled": False})
    cfg = configmod.defaults({"contactor.enabled": False, "controller.model": "EVSE-DIN", "contactor.pin": 5,
                              "leds.green_pin": 5})  # the unused contactor pin may be another device's
    assert cfg.contactor.enabled is False
