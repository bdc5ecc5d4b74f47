"""Shared fixtures. Keep additions small: several test modules rely on these.

Layout (docs/architecture.md, "Tests"): tests/<package>/ mirrors station/<package>/; the shared support
modules here (stations, mcsp_support, ...) are imported by plain name from every folder below, as
pytest puts this folder on sys.path when it loads this file. The independent central systems and the
kill-test harness are shared with bench/ in scripts/harness/ and imported by plain name too
(`import strict_peer`, `from torture import torture`): this file puts that folder on sys.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HARNESS = str(Path(__file__).resolve().parents[1] / "scripts" / "harness")
if HARNESS not in sys.path:
    sys.path.insert(0, HARNESS)


@pytest.fixture
def fake_gpio():
    """The emulated RPi.GPIO, reset and in BCM mode (as station.hardware.gpio.load_gpio leaves it)."""
    from station.emulated import fakegpio

    fakegpio.reset()
    fakegpio.setmode(fakegpio.BCM)
    yield fakegpio
    fakegpio.reset()


@pytest.fixture
def fake_i2c(monkeypatch):
    """The real RPLCD on the emulated I2C bus (station.emulated.hd44780), its sleeps patched out.

    Yields the hd44780 module: `fake_i2c.attach_lcd(bus, address, cols, rows)`.
    """
    import RPLCD.common
    import RPLCD.i2c

    from station.emulated import hd44780

    monkeypatch.setattr(RPLCD.i2c, "SMBus", hd44780.FakeSMBus)
    monkeypatch.setattr(RPLCD.common, "msleep", lambda ms: None)
    monkeypatch.setattr(RPLCD.common, "usleep", lambda us: None)
    hd44780.reset()
    yield hd44780
    hd44780.reset()


@pytest.fixture
def mfrc522_chip():
    """An emulated MFRC522 on SPI 0.0 wired to reset pin BCM 25, fakes installed (before mfrc522 is imported).

    GPIO (no numbering mode set) and SPI are reset around the test.
    """
    from station.emulated import fakegpio, fakespi, install
    from station.emulated.mfrc522chip import MFRC522Chip

    install.install()
    fakegpio.reset()
    fakespi.reset()
    yield fakespi.attach(0, 0, MFRC522Chip(reset_pin=25))
    fakespi.reset()
    fakegpio.reset()


class NotifySocket:
    """systemd's end of the notify protocol: a datagram socket the station sends READY/WATCHDOG/STATUS to."""

    def __init__(self, path) -> None:
        import socket

        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.server.bind(str(path))
        self.server.setblocking(False)
        self.got: list[str] = []

    def drain(self) -> list[str]:
        """Every message received so far (reads what arrived since the last call)."""
        while True:
            try:
                self.got.append(self.server.recv(4096).decode())
            except BlockingIOError:
                return self.got


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    """NOTIFY_SOCKET and a 1 s WATCHDOG_USEC for a station started in this test."""
    sock = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.server.close()
