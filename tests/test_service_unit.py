"""The systemd unit: locked down (systemd-analyze exposure <= 2.5) while the station keeps its
GPIO, SPI, I2C and serial devices."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "station.service"

# Character device classes as the Pi's kernel names them in /proc/devices (what DeviceAllow=char-NAME
# matches): drivers/spi/spidev.c registers "spi", drivers/i2c/i2c-dev.c "i2c", drivers/gpio/gpiolib.c
# "gpiochip"; the UART drivers: amba-pl011 "ttyAMA", 8250 / mini UART "ttyS", usb-serial "ttyUSB",
# cdc-acm "ttyACM".
REQUIRED_CLASSES = {"gpiochip", "spi", "i2c", "ttyAMA", "ttyS", "ttyUSB", "ttyACM"}


def directives(name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{name}=(.*)$", UNIT.read_text(), re.M)]


def test_exposure_is_at_most_2_5():
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    run = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                         text=True, timeout=60)
    m = re.search(r"Overall exposure level for station\.service: (\d+(?:\.\d+)?)", run.stdout + run.stderr)
    if m is None and "offline" in run.stderr:
        pytest.skip(f"this systemd-analyze cannot analyze offline: {run.stderr.strip()[:200]}")
    assert m is not None, run.stdout[-2000:] + run.stderr[-2000:]
    assert float(m.group(1)) <= 2.5


def test_the_daemon_may_read_the_kernels_clock_state_but_never_set_the_clock():
    # station/clock.py asks adjtimex(2) (modes 0) whether NTP has synchronized the clock:
    # ProtectClock=yes would deny that read too (systemd issue #26413), and so would @privileged,
    # which holds @clock, unless the read is allowed again after it.
    assert directives("ProtectClock") in ([], ["no"])
    filters = directives("SystemCallFilter")
    assert filters.index("~@privileged @resources") < len(filters) - 1
    allowed_again = set(filters[-1].split())
    assert {"adjtimex", "clock_adjtime", "clock_adjtime64"} <= allowed_again
    assert directives("CapabilityBoundingSet") == [""]  # no CAP_SYS_TIME: setting the clock is refused
    assert "char-rtc" not in " ".join(directives("DeviceAllow"))


def test_device_acl_names_the_pi_devices_and_nothing_else():
    assert directives("DevicePolicy") == ["closed"]
    allowed = {}
    for line in directives("DeviceAllow"):
        dev, _, mode = line.partition(" ")
        allowed[dev] = mode
    classes = {d.removeprefix("char-") for d in allowed if d.startswith("char-")}
    assert REQUIRED_CLASSES <= classes
    assert allowed["/dev/gpiomem"] == "rw" and all(mode == "rw" for mode in allowed.values())
    # block devices, /dev/mem and friends stay out
    assert not any(d.startswith("block-") or d in ("/dev/mem", "/dev/kmem", "char-mem") for d in allowed)


def test_the_service_user_is_in_the_device_groups():
    groups = set(" ".join(directives("SupplementaryGroups")).split())
    assert {"gpio", "spi", "i2c", "dialout"} <= groups
    assert directives("User") == ["station"] and directives("NoNewPrivileges") == ["yes"]


def test_proc_keeps_what_the_gpio_libraries_read():
    # RPi.GPIO reads /proc/device-tree/system/linux,revision, else /proc/cpuinfo, to know the
    # board: ProcSubset=pid would hide both and GPIO setup would fail on the Pi.
    assert directives("ProcSubset") in ([], ["all"])


def test_state_and_config_directories_are_private():
    assert directives("StateDirectory") == ["station"] and directives("StateDirectoryMode") == ["0750"]
    assert directives("UMask") == ["0027"] and directives("ProtectSystem") == ["strict"]


def test_config_directory_is_readable_for_the_daemon_and_read_only():
    # /etc/station is root:station 0750 (scripts/install-pi): with the default 0755 systemd would
    # warn at every start, and it never chowns the directory. ConfigurationDirectory= is mounted
    # writable even under ProtectSystem=strict, so the unit makes it read-only again (the platform
    # check writes to it from inside the daemon's namespace, as root, and expects EROFS).
    assert directives("ConfigurationDirectory") == ["station"]
    assert directives("ConfigurationDirectoryMode") == ["0750"]
    assert "/etc/station" in " ".join(directives("ReadOnlyPaths")).split()


def test_working_directory_is_the_runtime_directory():
    # lgpio creates .lgd-nfy* FIFOs in the working directory at import; / is read-only under
    # ProtectSystem=strict (scripts/platform-check imports it in the unit's sandbox).
    assert directives("RuntimeDirectory") == ["station"]
    assert directives("WorkingDirectory") == ["/run/station"]
