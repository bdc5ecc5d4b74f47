"""What the README's installation left in a root, checked from inside it (any architecture).

    /opt/station/venv/bin/python inspect_install.py --arch ARCH

Runs with the installed venv's interpreter. Each check prints "ok ..." or exits with
"FAIL ...". Independent of the installer: it reads the package metadata, the import system,
the file system and the account database.
"""

from __future__ import annotations

import argparse
import grp
import importlib.metadata as md
import importlib.util
import os
import platform
import pwd
import shutil
import stat
import sys
import sysconfig
from pathlib import Path


def ok(text: str) -> None:
    print(f"ok   {text}", flush=True)


def check(cond: bool, name: str, detail: str = "") -> None:
    if not cond:
        sys.exit(f"FAIL {name}: {detail}")
    ok(name + (f" ({detail})" if detail else ""))


def canon(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def owner_mode(path: str) -> tuple[str, str, str]:
    st = os.stat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, oct(stat.S_IMODE(st.st_mode))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True)
    arch = ap.parse_args().arch
    ok(f"{arch}: machine {platform.machine()}, pip platform {sysconfig.get_platform()}, Python {platform.python_version()}")

    # No compiler: whatever was installed came as a wheel or a Debian package.
    for tool in ("gcc", "cc", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc"):
        check(shutil.which(tool) is None, f"no compiler installed ({tool})")
    check(not Path(sysconfig.get_paths()["include"], "Python.h").exists(), "no Python headers installed (python3-dev)")

    dists = {canon(d.metadata["Name"]): d for d in md.distributions()}
    check("rpi-gpio" not in dists, "RPi.GPIO (the distribution) is not installed")
    check("rpi-lgpio" in dists, "rpi-lgpio is installed", dists["rpi-lgpio"].version if "rpi-lgpio" in dists else "")
    owners = sorted(n for n, d in dists.items() if any(str(f) == "RPi/GPIO/__init__.py" for f in (d.files or ())))
    check(owners == ["rpi-lgpio"], "exactly one distribution provides RPi/GPIO/__init__.py", ", ".join(owners))
    spec = importlib.util.find_spec("RPi.GPIO")
    lg_file = Path(dists["rpi-lgpio"].locate_file("RPi/GPIO/__init__.py")).resolve()
    check(spec is not None and Path(spec.origin).resolve() == lg_file, "the RPi.GPIO module that loads is rpi-lgpio's",
          spec.origin if spec else "not found")

    import lgpio  # the C extension of this architecture loads
    check("lgpio" in dists and Path(lgpio.__file__).is_relative_to(sys.prefix), "lgpio loads from the venv",
          f"{dists['lgpio'].version}, {Path(lgpio.__file__).name}")
    wheel_tag = (dists["lgpio"].read_text("WHEEL") or "").split("Tag:")[-1].strip()
    ok(f"lgpio wheel tag {wheel_tag}")

    import spidev
    check(spidev.__file__.startswith("/usr/lib/python3/dist-packages/"), "spidev is Debian's python3-spidev", spidev.__file__)

    check("mfrc522" in dists and dists["mfrc522"].version == "0.0.7", "mfrc522 0.0.7 is installed",
          dists["mfrc522"].version if "mfrc522" in dists else "missing")
    check(importlib.util.find_spec("mfrc522") is not None, "the mfrc522 module is importable")
    for name in ("RPLCD", "smbus2", "pymodbus", "ocpp", "websockets", "cryptography"):
        check(importlib.util.find_spec(name) is not None, f"{name} is importable")
    import cffi
    import cryptography.hazmat.bindings._rust  # noqa: F401  (a compiled extension: right architecture)
    ok(f"cryptography's compiled extension loads (cryptography {dists['cryptography'].version}, "
       f"cffi {cffi.__version__} from {Path(cffi.__file__).parent.parent})")

    # The account and the files the installer made.
    pw = pwd.getpwnam("station")
    check(pw.pw_uid < 1000 and pw.pw_shell.endswith("nologin"), "station is a system user without a login shell",
          f"uid {pw.pw_uid}, shell {pw.pw_shell}")
    member = {g.gr_name for g in grp.getgrall() if "station" in g.gr_mem}
    check({"gpio", "spi", "i2c", "dialout"} <= member, "station is in gpio, spi, i2c, dialout", ", ".join(sorted(member)))
    expect = {
        "/etc/station": ("root", "station", "0o750"),
        "/etc/station/station.toml": ("root", "station", "0o640"),
        "/var/lib/station": ("station", "station", "0o750"),
        "/etc/systemd/system/station.service": ("root", "root", "0o644"),
        "/opt/station/venv": ("root", "root", "0o755"),
        "/var/lib/station/firmware": ("station", "station", "0o770"),  # the firmware spool
        "/etc/systemd/system/station-update.service": ("root", "root", "0o644"),
        "/etc/systemd/system/station-update.path": ("root", "root", "0o644"),
    }
    for path, want in expect.items():
        got = owner_mode(path)
        check(got == want, f"{path} is {':'.join(want[:2])} {want[2][2:]}", f"found {got}")
    unit = Path("/etc/systemd/system/station.service").read_text()
    check("ConfigurationDirectoryMode=0750" in unit, "the unit's ConfigurationDirectoryMode matches /etc/station (0750)")
    check(unit == Path("/opt/station/systemd/station.service").read_text(), "the installed unit is the repository's")
    check(Path("/etc/systemd/system/multi-user.target.wants/station.service").is_symlink(), "the unit is enabled")
    for name in ("station-update.service", "station-update.path"):
        check(Path(f"/etc/systemd/system/{name}").read_text() == Path(f"/opt/station/systemd/{name}").read_text(),
              f"the installed {name} is the repository's")
    check(Path("/etc/systemd/system/paths.target.wants/station-update.path").is_symlink(),
          "the firmware updater's path unit is enabled")


if __name__ == "__main__":
    main()
