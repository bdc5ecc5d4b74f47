"""Firmware release files for the tests, built here with zipfile and tarfile (not by the code under test).

`wheel(...)` writes a wheel the way the wheel format (PEP 427) lays one out:
members, `<dist>-<version>.dist-info/` with METADATA, WHEEL and a RECORD of
sha256 digests. A good release is a `station` wheel. The hostile ones carry
what would run code as the station: a `.pth` file (run by every Python
start), a top-level module, `.data/` paths, another distribution; `sdist`
writes a source package whose setup.py writes a marker file when pip builds
it. Every hostile file writes the same `marker` when its code runs, so a test
checks from outside (the file system, a fresh interpreter) that nothing ran.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

RELEASE = "station-99.0-py3-none-any.whl"
RELEASE_MODULE = "station/_firmware_test_release.py"  # the good release's own file, found in pip's target


def wheel(path: Path, dist: str = "station", version: str = "99.0", extra: dict[str, bytes] | None = None,
          tag: str = "py3-none-any") -> Path:
    package = dist.replace("-", "_")
    info = f"{package}-{version}.dist-info"
    files = {
        f"{package}/__init__.py": b"",
        f"{package}/_firmware_test_release.py": f"VERSION = {version!r}\n".encode(),
        **(extra or {}),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def payload(marker: Path, what: str) -> str:
    """One line of Python that writes `what` into the marker file (appends: every run is counted)."""
    return f"import os; open({str(marker)!r}, 'a').write({what!r} + chr(10))"


def pth_wheel(path: Path, marker: Path) -> Path:
    """A `station` wheel with a .pth file at the top of site-packages: its line runs at every Python start."""
    return wheel(path, extra={"zz_station_hook.pth": (payload(marker, "pth") + "\n").encode()})


def hostile_wheels(directory: Path, marker: Path) -> dict[str, Path]:
    """Every kind of hostile wheel, by what it tries."""
    pth_line = (payload(marker, "pth") + "\n").encode()
    module = (payload(marker, "module") + "\n").encode()
    return {
        "pth": pth_wheel(directory / RELEASE, marker),
        "pth in .data": wheel(directory / "station-99.1-py3-none-any.whl", version="99.1",
                              extra={"station-99.1.data/purelib/zz_hook.pth": pth_line}),
        "script in .data": wheel(directory / "station-99.2-py3-none-any.whl", version="99.2",
                                 extra={"station-99.2.data/scripts/station": b"#!/bin/sh\n"}),
        "top-level module": wheel(directory / "station-99.3-py3-none-any.whl", version="99.3",
                                  extra={"sitecustomize.py": module}),
        "other distribution": wheel(directory / "evil-1.0-py3-none-any.whl", dist="evil", version="1.0",
                                    extra={"evil.pth": pth_line}),
        "path traversal": wheel(directory / "station-99.4-py3-none-any.whl", version="99.4",
                                extra={"station/../../escaped.pth": pth_line}),
    }


def sdist(path: Path, marker: Path, version: str = "99.0") -> Path:
    """A source package of `station` whose setup.py writes the marker when anything builds it."""
    root = f"station-{version}"
    setup = (payload(marker, "setup.py") + "\nfrom setuptools import setup\n"
             f"setup(name='station', version={version!r}, packages=[])\n").encode()
    files = {
        f"{root}/setup.py": setup,
        f"{root}/PKG-INFO": f"Metadata-Version: 2.1\nName: station\nVersion: {version}\n".encode(),
        f"{root}/pyproject.toml": b'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n',
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def nothing_ran(marker: Path, target: Path) -> None:
    """Checked from outside the code under test: no marker, and a fresh interpreter that treats pip's
    target directory as a site directory (as the station's venv would be) runs nothing and finds no
    hostile file."""
    assert not marker.exists(), marker.read_text()
    if target.exists():
        found = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
        assert not [n for n in found if n.endswith((".pth", "sitecustomize.py")) or n.startswith("evil")], found
    probe = subprocess.run([sys.executable, "-I", "-c", f"import site; site.addsitedir({str(target)!r})"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert not marker.exists(), marker.read_text()
