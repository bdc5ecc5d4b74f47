"""A plain `pip install '.[sim]'` gives a working simulator (issue 14): reader included.

Slow (a fresh virtual environment and a real pip install, about a minute), so one test only.
pip builds mfrc522's declared dependencies (RPi.GPIO, spidev) from source here, which needs a
compiler; ./run-station and ./run-tests avoid that (scripts/bootstrap.sh), this test checks the
plain way a Python developer would try first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_plain_pip_install_of_the_simulator_reads_cards(tmp_path):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: pip cannot build RPi.GPIO and spidev (mfrc522's declared dependencies)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        pytest.skip("no Python headers (python3-dev): pip cannot build RPi.GPIO and spidev")
    # A copy of what the package is built from (the working tree as it is, not .venv or caches).
    src = tmp_path / "src"
    src.mkdir()
    for rel in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / rel, src / rel)
    shutil.copytree(ROOT / "station", src / "station", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", f"{src}[sim]"],
                         capture_output=True, text=True, env=env, timeout=540)
    assert pip.returncode == 0, pip.stderr[-3000:]
    run = subprocess.run([str(venv / "bin" / "station"), "simulate", "--scenario",
                          str(ROOT / "tests" / "scenarios" / "one_session.toml"), "--state-dir", str(tmp_path / "state"),
                          "--json"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    [session] = summary["sessions"]
    # A 4-byte UID goes through the emulated chip and the real mfrc522 library: the reader works.
    assert session["id_tag"] == "D64FC93B" and session["energy_wh"] == 1500
    assert "No module named 'mfrc522'" not in run.stderr and "ReaderFailure" not in run.stderr
