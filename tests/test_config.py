"""The config loader: every key documented, bad input named by file and key."""

from pathlib import Path

import pytest

from station import config
from station.cli import main
from station.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "station.toml"
    p.write_text(text)
    return p


def test_documented_file_matches_schema():
    assert (ROOT / "config" / "station.toml").read_text() == config.documented_toml(), \
        "regenerate with: python -m station.config > config/station.toml"


def test_documented_file_loads_with_defaults():
    cfg = config.load(ROOT / "config" / "station.toml")
    for dotted, key in config.SCHEMA.items():
        assert cfg.get(dotted) == key.default, dotted


def test_every_key_has_doc_and_valid_default():
    for dotted, key in config.SCHEMA.items():
        assert key.doc.strip(), dotted
        if isinstance(key.default, list) and key.choices:  # a list key: each item is one of the choices
            assert key.default and set(key.default) <= set(key.choices), dotted
        elif key.default is not None and key.choices:
            assert key.default in key.choices, dotted


@pytest.mark.parametrize("text, key, problem", [
    ('[meter]\nmodle = "SDM630"\n', "meter.modle", "unknown key (did you mean 'meter.model'?)"),
    ('[meter]\naddress = "1"\n', "meter.address", "expected an integer"),
    ('[meter]\naddress = 300\n', "meter.address", "at most 247"),
    ('[meter]\nmodel = "SDM999"\n', "meter.model", "must be one of"),
    ('[station]\nlanguage = "fr"\n', "station.language", "must be one of"),
    ('[lcd]\nenabled = 1\n', "lcd.enabled", "expected true or false"),
    ('[rfid]\npoll_interval_s = true\n', "rfid.poll_interval_s", "got a boolean"),
    ('[contactor]\npin = 25\n', "rfid.reset_pin", "BCM 25 is already used by contactor.pin"),
    ('[backend]\nkind = "ocpp"\n[backend.ocpp]\nurl = "http://x/"\n', "backend.ocpp.url", "ws://"),
    ('[backend.ocpp]\nauthorization_key = "short"\n', "backend.ocpp.authorization_key", "16 characters"),
    ('[backend.local.tags]\nAB12 = 5\n', "backend.local.tags.AB12", "expected a string"),
    ('[nonsense]\nx = 1\n', "nonsense", "unknown key"),
])
def test_errors_name_file_key_and_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(path) in str(info.value) and key in str(info.value)


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(write(tmp_path, "[meter\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "absent.toml")


def test_values_and_free_tags_table(tmp_path):
    cfg = config.load(write(tmp_path, """
[station]
name = "Tankstelle1"
[meter]
model = "SDM120"
address = 7
[backend]
kind = "local"
[backend.local.tags]
"D6 4F C9 3B" = "Apartment 2"
[backend.evcs-serial]
station_number = 3
"""))
    assert cfg.station.name == "Tankstelle1"
    assert cfg.meter.model == "SDM120" and cfg.meter.address == 7
    assert cfg.backend.local.tags == {"D6 4F C9 3B": "Apartment 2"}
    assert cfg.get("backend.evcs-serial.station_number") == 3
    assert cfg.contactor.feedback_pin is None
    with pytest.raises(AttributeError):
        cfg.meter.address = 3


def test_check_config_command(tmp_path, capsys):
    good = write(tmp_path, '[meter]\nmodel = "EM24"\n')
    assert main(["check-config", str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = write(tmp_path, '[meter]\nbaudrate = 12345\n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "meter.baudrate" in err and str(bad) in err


def test_docs_diagram_is_generated_from_the_table():
    from station.core.states import mermaid

    assert mermaid() in (ROOT / "docs" / "states.md").read_text()
