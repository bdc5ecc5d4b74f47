"""The firmware updater's systemd units agree with the spool the daemon writes, the installer and each other, and
the service keeps no right it does not need. Under a real systemd they run in scripts/platform-check
(scripts/platform/systemd_probe.py, the firmware checks)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from station.services import handover

ROOT = Path(__file__).resolve().parent.parent
PATH_UNIT = ROOT / "systemd" / "station-update.path"
SERVICE = ROOT / "systemd" / "station-update.service"
STATION = ROOT / "systemd" / "station.service"
INSTALLER = ROOT / "scripts" / "install-pi"
SPOOL = "/var/lib/station/" + handover.SPOOL


def directives(unit: Path, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{name}=(.*)$", unit.read_text(), re.M)]


def test_the_path_unit_fires_on_the_marker_the_daemon_writes_last():
    ready = f"{SPOOL}/{handover.PENDING}/{handover.READY}"
    assert directives(PATH_UNIT, "PathExists") == [ready]
    assert directives(PATH_UNIT, "Unit") == ["station-update.service"]
    assert directives(SERVICE, "ConditionPathExists") == [ready]
    assert directives(PATH_UNIT, "WantedBy") == ["paths.target"]


def test_the_service_runs_the_installed_updater_on_roots_configuration():
    [command] = directives(SERVICE, "ExecStart")
    [station_exec] = directives(STATION, "ExecStart")
    venv_station = station_exec.split()[0]
    assert command.split() == [venv_station, "firmware-install", "--config", "/etc/station/station.toml",
                               "--spool", SPOOL, "--restart", "station.service"]
    assert directives(SERVICE, "Type") == ["oneshot"]


def test_the_service_may_write_the_venv_and_the_spool_only_and_has_no_capability_nor_network():
    venv = str(Path(directives(STATION, "ExecStart")[0].split()[0]).parents[1])
    assert directives(SERVICE, "ProtectSystem") == ["strict"]
    assert directives(SERVICE, "ReadWritePaths") == [f"{venv} {SPOOL}"]
    assert directives(SERVICE, "CapabilityBoundingSet") == [""] and directives(SERVICE, "AmbientCapabilities") == [""]
    assert directives(SERVICE, "PrivateNetwork") == ["yes"] and directives(SERVICE, "RestrictAddressFamilies") == ["AF_UNIX"]
    assert directives(SERVICE, "NoNewPrivileges") == ["yes"] and directives(SERVICE, "ProtectHome") == ["yes"]
    # root, entering the station's 0750 state directory and 0770 spool through the group, not DAC override
    assert directives(SERVICE, "User") == ["root"] and directives(SERVICE, "SupplementaryGroups") == ["station"]
    assert directives(SERVICE, "UMask") == ["0022"]  # the daemon's user must read what pip writes


def test_the_daemons_unit_gets_no_new_right():
    assert not re.search(r"ReadWritePaths|firmware", STATION.read_text())


def test_the_installer_installs_and_enables_both_units_and_makes_the_spool():
    text = INSTALLER.read_text()
    assert re.search(r'^UPDATER_UNITS="station-update.service station-update.path"$', text, re.M)
    assert "systemctl enable --quiet station.service station-update.path" in text
    assert re.search(r'^SPOOL=\$STATE_DIR/firmware$', text, re.M)
    assert re.search(r'install -d -m 0770 -o "\$USER_NAME" -g "\$USER_NAME" "\$SPOOL"', text)


def test_exposure_is_at_most_1_5():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    run = subprocess.run(["systemd-analyze", "security", "--offline=true", str(SERVICE)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for station-update\.service: (\d+(?:\.\d+)?)", run.stdout + run.stderr)
    if m is None and "offline" in run.stderr:
        pytest.skip(f"this systemd-analyze cannot analyze offline: {run.stderr.strip()[:200]}")
    assert m is not None, run.stdout[-2000:] + run.stderr[-2000:]
    assert float(m.group(1)) <= 1.5
