"""Shared fixtures. Keep additions small: several test modules rely on these."""

from __future__ import annotations

import pytest


@pytest.fixture
def fake_gpio():
    """The emulated RPi.GPIO, reset and in BCM mode (as station.hardware.gpio.load_gpio leaves it)."""
    from station.sim import fakegpio

    fakegpio.reset()
    fakegpio.setmode(fakegpio.BCM)
    yield fakegpio
    fakegpio.reset()


@pytest.fixture
def fake_i2c(monkeypatch):
    """The real RPLCD on the emulated I2C bus (station.sim.hd44780), its sleeps patched out.

    Yields the hd44780 module: `fake_i2c.attach_lcd(bus, address, cols, rows)`.
    """
    import RPLCD.common
    import RPLCD.i2c

    from station.sim import hd44780

    monkeypatch.setattr(RPLCD.i2c, "SMBus", hd44780.FakeSMBus)
    monkeypatch.setattr(RPLCD.common, "msleep", lambda ms: None)
    monkeypatch.setattr(RPLCD.common, "usleep", lambda us: None)
    hd44780.reset()
    yield hd44780
    hd44780.reset()
