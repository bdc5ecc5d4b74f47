"""scripts/install-pi, the unit, setup.cfg and the README agree with each other.

The installer itself runs for real in scripts/platform-check (Debian bookworm roots for arm64,
armhf and amd64 under systemd); these fast checks catch the drift between the files that the
platform check would only find minutes later: modes, paths, groups, the GPIO library, the
README block the check runs.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "scripts" / "install-pi"
UNIT = ROOT / "systemd" / "station.service"
sys.path.insert(0, str(ROOT / "scripts" / "platform"))
import readme_block  # noqa: E402


def unit(name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{name}=(.*)$", UNIT.read_text(), re.M)]


def installer_var(name: str) -> str:
    m = re.search(rf'^{name}=("?)(.*?)\1\s*(#.*)?$', INSTALLER.read_text(), re.M)
    assert m, name
    return m.group(2)


def extras() -> dict[str, list[str]]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return {k: [r.strip() for r in v.splitlines() if r.strip()] for k, v in cfg["options.extras_require"].items()}


def test_installer_is_valid_bash():
    subprocess.run(["bash", "-n", str(INSTALLER)], check=True)


def test_config_directory_mode_is_the_same_in_unit_and_installer():
    assert unit("ConfigurationDirectory") == ["station"]
    assert unit("ConfigurationDirectoryMode") == ["0750"]
    text = INSTALLER.read_text()
    assert re.search(r'install -d -m 0750 -o root -g "\$USER_NAME" "\$CONF_DIR"', text)
    assert installer_var("CONF_DIR") == "/etc/station"
    assert re.search(r'install -m 0640 -o root -g "\$USER_NAME" .*"\$CONF"', text)


def test_state_directory_matches():
    assert unit("StateDirectory") == ["station"] and unit("StateDirectoryMode") == ["0750"]
    assert installer_var("STATE_DIR") == "/var/lib/station"
    assert re.search(r'install -d -m 0750 -o "\$USER_NAME" -g "\$USER_NAME" "\$STATE_DIR"', INSTALLER.read_text())


def test_unit_runs_what_the_installer_installs():
    assert installer_var("PREFIX") == "/opt/station" and installer_var("VENV") == "$PREFIX/venv"
    assert unit("ExecStart")[0].split()[0] == "/opt/station/venv/bin/station"
    assert unit("User") == [installer_var("USER_NAME")] == ["station"]
    assert set(" ".join(unit("SupplementaryGroups")).split()) == set(installer_var("GROUPS_NEEDED").split())


def test_one_gpio_library_and_no_mfrc522_in_any_extra():
    ex = extras()
    for name, reqs in ex.items():
        names = [re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in reqs]
        assert "rpi.gpio" not in names, f"{name} installs RPi.GPIO (it overwrites rpi-lgpio's files)"
        assert "mfrc522" not in names, f"{name} lists mfrc522: its dependencies would pull RPi.GPIO"
    pi = " ".join(ex["pi"])
    assert "rpi-lgpio" in pi and "platform_machine" not in pi  # every Pi, 32- or 64-bit alike


def test_mfrc522_is_installed_without_its_dependencies_everywhere():
    pin = installer_var("MFRC522")
    assert pin == "mfrc522==0.0.7"
    assert re.search(r'pip install --no-deps "\$MFRC522"', INSTALLER.read_text())
    assert f'--no-deps "{pin}"' in (ROOT / "scripts" / "bootstrap.sh").read_text()


def test_installer_never_compiles():
    text = INSTALLER.read_text()
    assert "--only-binary=:all: --no-binary=station" in text
    assert not re.search(r"apt-get install[^\n]*\b(gcc|build-essential|python3-dev)\b", text)


def test_readme_install_block_is_the_installer():
    readme = (ROOT / "README.md").read_text()
    script = readme_block.script(readme, "install")
    assert "git clone /src /opt/station" in script
    assert "/opt/station/scripts/install-pi" in script
    assert "sudo" not in script
    upgrade = readme_block.script(readme, "upgrade")
    assert "pull --ff-only" in upgrade and "/opt/station/scripts/install-pi" in upgrade


def test_readme_block_rules():
    ok = "<!-- platform-check:install -->\n```sh\nsudo git clone <this repository> /x && sudo y\n```\n<!-- /platform-check:install -->"
    assert readme_block.script(ok, "install").splitlines()[1] == "git clone /src /x && y"
    with pytest.raises(readme_block.ReadmeError, match="no ```sh block"):
        readme_block.script("nothing", "install")
    with pytest.raises(readme_block.ReadmeError, match="interactive"):
        readme_block.script(ok.replace("sudo y", "sudoedit /etc/station/station.toml"), "install")
    with pytest.raises(readme_block.ReadmeError, match="<this repository>"):
        readme_block.script(ok.replace("<this repository>", "https://example.invalid/x"), "install")
