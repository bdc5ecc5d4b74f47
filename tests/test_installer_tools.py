"""What an installer meets: check-config's checks across keys, refusals that say why, `rfid read`
off a Pi, the LCD address as datasheets write it, `station sessions`, and `./run-station` not
reinstalling every time."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from station import config
from station.cli import _log_config_errors, main
from station.errors import ConfigError
from tests.stations import CARD, CARD7, UNKNOWN, running_station, state_is, two_sessions_and_a_refusal

ROOT = Path(__file__).resolve().parent.parent
TAGS = '[backend.local.tags]\nD64FC93B = "Apartment 2"\n'


def check(tmp_path, text: str, capsys) -> tuple[int, str, str]:
    path = tmp_path / "station.toml"
    path.write_text(text)
    code = main(["check-config", str(path)])
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------ check-config across keys
@pytest.mark.parametrize("profile", [1, 2])
def test_ocpp_basic_profiles_need_an_authorization_key(tmp_path, capsys, profile):
    code, out, err = check(tmp_path, f'[backend]\nkind = "ocpp"\n[backend.ocpp]\nsecurity_profile = {profile}\n', capsys)
    assert code == 2 and "OK" not in out
    assert f"error: {tmp_path / 'station.toml'}: backend.ocpp.authorization_key: security profile {profile}" in err
    code, out, err = check(tmp_path, f'[backend]\nkind = "ocpp"\n[backend.ocpp]\nsecurity_profile = {profile}\n'
                                     'authorization_key = "0123456789abcdef0123"\n', capsys)
    assert code == 0 and "OK" in out and "error" not in err


def test_check_config_knows_which_ocpp_version_uses_a_key(tmp_path, capsys):
    """backend.ocpp.connector_type is OCPP 2.0.1's: with versions = ["1.6"] check-config says it does nothing;
    with 2.0.1 offered it is quiet; every other backend.ocpp key is used by both versions."""
    base = '[backend]\nkind = "ocpp"\n[backend.ocpp]\nconnector_type = "sType2"\n'
    code, out, err = check(tmp_path, base + 'versions = ["1.6"]\n', capsys)
    assert "backend.ocpp.connector_type: used by OCPP 2.0.1 only" in err and "['1.6']" in err
    code, out, err = check(tmp_path, base + 'versions = ["2.0.1", "1.6"]\n', capsys)
    assert "connector_type" not in err and code == 0
    code, out, err = check(tmp_path, '[backend]\nkind = "ocpp"\n[backend.ocpp]\nversions = ["2.0.1", "2.0.1"]\n', capsys)
    assert code != 0 and "names one twice" in err


def test_ocpp_profile_3_needs_its_certificate_files(tmp_path, capsys):
    code, _, err = check(tmp_path, '[backend]\nkind = "ocpp"\n[backend.ocpp]\nsecurity_profile = 3\n', capsys)
    assert code == 2
    assert "backend.ocpp.cert_file: security profile 3" in err and "backend.ocpp.key_file: security profile 3" in err
    code, _, err = check(tmp_path, '[backend]\nkind = "ocpp"\n[backend.ocpp]\nsecurity_profile = 3\n'
                                   f'cert_file = "{tmp_path}/cp.pem"\nkey_file = "{tmp_path}/cp.key"\n', capsys)
    assert code == 2 and f"cannot read {tmp_path}/cp.pem" in err and f"cannot read {tmp_path}/cp.key" in err
    (tmp_path / "cp.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "cp.key").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "cp.key").chmod(0o600)
    code, out, err = check(tmp_path, '[backend]\nkind = "ocpp"\n[backend.ocpp]\nsecurity_profile = 3\n'
                                     f'cert_file = "{tmp_path}/cp.pem"\nkey_file = "{tmp_path}/cp.key"\n', capsys)
    assert code == 0 and "OK" in out and "error" not in err


def test_shipped_config_warns_that_every_tap_would_be_refused(capsys):
    code = main(["check-config", str(ROOT / "config" / "station.toml")])
    out, err = capsys.readouterr()
    assert code == 0 and "OK" in out
    assert "warning:" in err and "backend.local.tags: empty: with the local backend every tap is refused" in err


def test_warnings_and_hints_do_not_fail(tmp_path, capsys):
    code, _, err = check(tmp_path, '[backend]\nkind = "mcsp"\n[backend.mcsp]\nsecret = "s3cret"\n' + TAGS, capsys)
    assert code == 0
    assert "warning: " in err and "backend.mcsp.secret: sent in clear text over tcp://" in err
    assert "hint: " in err and "1 tag(s) listed but not used" in err
    code, _, err = check(tmp_path, '[backend]\nkind = "ocpp"\n[backend.ocpp]\nsecurity_profile = 1\n'
                                   'url = "ws://cs.example:9000/"\nauthorization_key = "0123456789abcdef0123"\n', capsys)
    assert code == 0 and "profile 1 sends the AuthorizationKey unencrypted" in err
    code, _, err = check(tmp_path, '[station]\nlog_tags = true\n' + TAGS, capsys)
    assert code == 0 and "station.log_tags: id tags are logged in full" in err
    code, _, err = check(tmp_path, TAGS, capsys)
    assert code == 0 and err == ""  # a sound config: nothing to say


def test_station_run_logs_what_check_config_calls_errors(tmp_path, caplog):
    path = tmp_path / "station.toml"
    path.write_text('[backend]\nkind = "ocpp"\n[backend.ocpp]\nsecurity_profile = 1\n')
    caplog.set_level(logging.ERROR, "station")
    _log_config_errors(config.load(path))
    [record] = caplog.records
    assert record.levelno == logging.ERROR and "backend.ocpp.authorization_key" in record.getMessage()


# ------------------------------------------------------------------ the local backend says why
async def test_local_backend_logs_each_refusal_with_its_reason(tmp_path, caplog):
    caplog.set_level(logging.INFO, "station.backends.local")
    # The installer wrote Apartment 2's card with its bytes reversed (as a reader printing a number would).
    tags = {"3BC94FD6": "Apartment 2", "04A2B3C4D5E6F7": "Apartment 3"}
    async with running_station(tmp_path, {"backend.local.tags": tags, "station.log_tags": True}) as st:
        await st.world.tap(UNKNOWN)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        await st.world.tap(CARD7)
        await state_is(st, "SuspendedEV")
    lines = [r.getMessage() for r in caplog.records]
    assert f"tag {UNKNOWN} refused: not in backend.local.tags (2 tag(s) listed)" in lines
    [reversed_line] = [line for line in lines if line.startswith(f"tag {CARD} refused")]
    assert "listed with its bytes reversed (as 3BC94FD6, Apartment 2)" in reversed_line
    assert "rfid.uid_byte_order" in reversed_line
    assert f"tag {CARD7} accepted: Apartment 3" in lines


async def test_local_backend_without_tags_says_so(tmp_path, caplog):
    caplog.set_level(logging.INFO, "station.backends.local")
    async with running_station(tmp_path, {"backend.local.tags": {}}) as st:
        await st.world.tap(CARD)
        await state_is(st, "Available")
    assert any("refused: backend.local.tags is empty" in r.getMessage() for r in caplog.records)
    # Masked by default (personal data): the reason, not the tag.
    assert not any(CARD in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------ rfid read off a Pi
def test_rfid_read_in_pi_mode_off_a_pi_gives_the_hint_not_a_traceback(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import RPi.GPIO"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("RPi.GPIO is importable here (a Pi): the error path cannot be shown")
    result = subprocess.run([sys.executable, "-m", "station", "rfid", "read", "--mode", "pi", "--timeout", "1"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert "ModuleNotFoundError" not in result.stdout + result.stderr
    assert "error: GPIO: RPi.GPIO is not installed" in result.stderr and "install station[pi]" in result.stderr
    if not Path("/proc/device-tree/model").exists():
        assert "this machine is not a Raspberry Pi: `station rfid read --mode sim`" in result.stderr


# ------------------------------------------------------------------ the LCD address in hexadecimal
def test_lcd_address_is_written_as_the_datasheets_write_it(tmp_path):
    text = (ROOT / "config" / "station.toml").read_text()
    lcd = text[text.index("[lcd]"):text.index("[meter]")]
    assert "\naddress = 0x27\n" in lcd and "0x03..0x77" in lcd
    assert config.load(ROOT / "config" / "station.toml").lcd.address == 39  # TOML's 0x27
    bad = tmp_path / "station.toml"
    bad.write_text("[lcd]\naddress = 0x78\n")
    with pytest.raises(ConfigError, match="must be at most 0x77, got 0x78"):
        config.load(bad)


# ------------------------------------------------------------------ station sessions
@pytest.fixture(scope="module")
def journal(tmp_path_factory) -> Path:
    """Session 1 (42 Wh), a refused tap (id 2), session 3 (7 Wh), all delivered."""
    state = tmp_path_factory.mktemp("journal")
    two_sessions_and_a_refusal(state)
    return state


def test_sessions_table_explains_the_gaps_and_shows_the_stop_time(journal, capsys):
    assert main(["sessions", "--state-dir", str(journal)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, first, second, footer = lines
    assert "started" in header and "stopped" in header
    assert first.split()[:2] == ["1", CARD] and second.split()[:2] == ["3", CARD7]
    assert first.count("T") >= 2 and first.count("Z") >= 2  # a start and a stop time (ISO UTC)
    assert "1 refused or abandoned tap(s) not listed" in footer and "--all" in footer
    assert main(["sessions", "--state-dir", str(journal), "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert UNKNOWN in lines[2] and "refused: Invalid" in lines[2]


def test_sessions_csv_booleans_and_columns(journal, capsys):
    assert main(["sessions", "--state-dir", str(journal), "--csv"]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].startswith("id,id_tag,meter_start_wh,meter_stop_wh,energy_wh,started_at,stopped_at")
    assert [(r["id"], r["energy_wh"], r["delivered"], r["estimated"], r["state"]) for r in rows] == [
        ("1", "42", "true", "false", "stopped"), ("3", "7", "true", "false", "stopped")]
    assert "True" not in text and "False" not in text
    assert main(["sessions", "--state-dir", str(journal), "--json", "--all"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["state"], r["delivered"]) for r in rows] == [(1, "stopped", True), (2, "refused", None),
                                                                      (3, "stopped", True)]


def test_sessions_options_have_help(capsys):
    with pytest.raises(SystemExit):
        main(["sessions", "--help"])
    text = capsys.readouterr().out
    options = " ".join(text[text.index("options:"):].split())  # argparse wraps lines
    for option, words in (("--config CONFIG", "state_dir"), ("--state-dir STATE_DIR", "state directory"),
                          ("--all", "refused"), ("--json", "JSON"), ("--csv", "true/false")):
        block = options[options.index(option):]
        assert words in block[:120], option


# ------------------------------------------------------------------ ./run-station does not reinstall each time
def test_bootstrap_installs_only_when_setup_changes(tmp_path):
    """scripts/bootstrap.sh in a copy of the repository, with a .venv whose python logs pip calls."""
    for name in ("setup.cfg", "pyproject.toml", "scripts/bootstrap.sh"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    venv = tmp_path / ".venv" / "bin"
    venv.mkdir(parents=True)
    log = tmp_path / "pip.log"
    (venv / "python").write_text(f'#!/bin/sh\nif [ "$1" = "-m" ] && [ "$2" = "pip" ]; then echo "$*" >> {log}; '
                                 f'exit 0; fi\nexec {sys.executable} "$@"\n')
    (venv / "station").write_text("#!/bin/sh\n")
    for f in (venv / "python", venv / "station"):
        f.chmod(0o755)

    def bootstrap(extras: str = "sim") -> int:
        before = log.read_text().count("\n") if log.exists() else 0
        subprocess.run(["sh", "scripts/bootstrap.sh", extras], cwd=tmp_path, check=True, timeout=60,
                       env={**os.environ, "PYTHON": sys.executable})
        return (log.read_text().count("\n") if log.exists() else 0) - before

    assert bootstrap() >= 2  # first time: pip installs the package and mfrc522
    assert "install -q --disable-pip-version-check -e . RPLCD" in log.read_text()  # the extra, without mfrc522
    assert "--no-deps mfrc522==0.0.7" in log.read_text()
    assert bootstrap() == 0  # nothing changed: no pip at all
    assert bootstrap("test") >= 2  # other extras: install
    assert bootstrap("test") == 0
    with open(tmp_path / "setup.cfg", "a") as f:
        f.write("\n# a new dependency\n")
    assert bootstrap("test") >= 2  # setup.cfg changed: install again
    (venv / "station").unlink()
    assert bootstrap("test") >= 2  # the entry point is gone: install again
