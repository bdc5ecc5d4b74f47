"""A screen garbled by interference without an I2C error is rewritten within `refresh_s`.

The real RPLCD 1.4 drives the emulated PCF8574 + HD44780 (station/emulated/hd44780.py), which can
be garbled the ways a contactor's interference garbles a module: a spurious nibble that puts the
4-bit interface out of step, a brown-out reset of the controller, a stray display shift, flipped
characters, a stray display-off. No I2C error is raised in any of them.
"""

from __future__ import annotations

import time

import pytest

from station.hardware.display import LcdDisplay
from tests.support.fakes import FakeClock

ADDR = 0x27
SCREEN = ["Charging  7.4 kW", "12.345 kWh  Ä Ü"]
LATER = ["Charging  7.4 kW", "12.346 kWh  Ä Ü"]
SCREEN4 = ["Charging", "7.4 kW  3 phases", "12.345 kWh", "Karte: ...3B  Öl"]


def padded(lines: list[str], cols: int) -> list[str]:
    return [line.ljust(cols) for line in lines]


@pytest.mark.parametrize("kind", ["nibble", "reset", "shift", "chars", "off"])
def test_garbage_is_gone_within_the_refresh_period(fake_i2c, kind):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    clock = FakeClock()
    disp = LcdDisplay(1, ADDR, 16, 2, background=False, refresh_s=30.0, clock=clock)
    disp.show(SCREEN)
    assert lcd.text() == padded(SCREEN, 16)
    clock.t += 10.0
    lcd.interfere(kind, seed=3)
    disp.show(LATER)  # one digit changes: only it is sent (out of step after a stray nibble)
    assert lcd.text() != padded(LATER, 16)
    clock.t += 19.9  # 29.9 s after the last full write: not due yet
    assert disp.refresh_if_due() is False and lcd.text() != padded(LATER, 16)
    clock.t += 0.1  # 30 s: the refresh
    assert disp.refresh_if_due() is True
    assert lcd.text() == padded(LATER, 16)
    assert lcd.display_on and not lcd.eight_bit and lcd.shift == 0
    disp.close()


def test_an_out_of_step_interface_garbles_new_text_too_until_the_refresh(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    clock = FakeClock()
    disp = LcdDisplay(1, ADDR, 16, 2, background=False, refresh_s=30.0, clock=clock)
    disp.show(SCREEN)
    lcd.interfere("nibble", seed=1)
    disp.show(["Charging  7.4 kW", "12.346 kWh  Ä Ü"])  # one changed digit, sent out of step
    assert lcd.text() != padded(["Charging  7.4 kW", "12.346 kWh  Ä Ü"], 16)
    clock.t += 30.0
    assert disp.refresh_if_due()
    assert lcd.text() == padded(["Charging  7.4 kW", "12.346 kWh  Ä Ü"], 16)
    disp.close()


@pytest.mark.parametrize("seed", range(12))
def test_random_interference_on_a_20x4(fake_i2c, seed):
    lcd = fake_i2c.attach_lcd(1, ADDR, 20, 4)
    clock = FakeClock()
    disp = LcdDisplay(1, ADDR, 20, 4, background=False, refresh_s=30.0, clock=clock)
    disp.show(SCREEN4)
    lcd.garble(seed)
    clock.t += 30.0
    assert disp.refresh_if_due()
    assert lcd.text() == padded(SCREEN4, 20)
    disp.close()


def test_a_right_screen_is_rewritten_without_a_blank_moment(fake_i2c):
    """No clear instruction in the refresh: the glass never shows a blank screen in between."""
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    clock = FakeClock()
    disp = LcdDisplay(1, ADDR, 16, 2, background=False, refresh_s=30.0, clock=clock)
    disp.show(SCREEN)
    commands_before = len(lcd.history)
    clock.t += 30.0
    assert disp.refresh_if_due()
    sent = lcd.history[commands_before:]
    assert ("cmd", 0x01) not in sent  # clear display
    assert lcd.text() == padded(SCREEN, 16)
    disp.close()


def test_no_refresh_when_disabled(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    clock = FakeClock()
    disp = LcdDisplay(1, ADDR, 16, 2, background=False, refresh_s=0, clock=clock)
    disp.show(SCREEN)
    lcd.interfere("chars")
    clock.t += 1e6
    disp.refresh_soon()
    assert disp.refresh_if_due() is False and disp.refreshes == 0
    assert lcd.text() != padded(SCREEN, 16)
    disp.close()


def test_the_writer_thread_refreshes_by_itself(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    disp = LcdDisplay(1, ADDR, 16, 2, refresh_s=0.2)
    try:
        disp.show(SCREEN)
        assert disp.flush(10)
        lcd.interfere("reset")
        deadline = time.monotonic() + 20
        while lcd.text() != padded(SCREEN, 16) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert lcd.text() == padded(SCREEN, 16)
        assert disp.refreshes >= 1
    finally:
        disp.close()


def test_a_contactor_switch_asks_for_a_refresh_a_second_later(fake_i2c, fake_gpio):
    """The switching is when the interference comes: the screen is rewritten a second after it,
    not only at the next periodic refresh."""
    from station.hardware.contactor import GpioContactor

    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    clock = FakeClock()
    disp = LcdDisplay(1, ADDR, 16, 2, background=False, refresh_s=60.0, clock=clock)
    contactor = GpioContactor(fake_gpio, 17)
    contactor.on_switch = disp.refresh_soon  # as station/hardware/factory.py wires it
    disp.show(SCREEN)
    clock.t += 5.0
    contactor.set(True)
    lcd.interfere("reset")  # the contactor's spark resets the controller
    clock.t += 0.9
    assert disp.refresh_if_due() is False
    clock.t += 0.1
    assert disp.refresh_if_due() is True and lcd.text() == padded(SCREEN, 16)
    contactor.set(True)  # no switch: no refresh asked for
    clock.t += 1.0
    assert disp.refresh_if_due() is False
    disp.close()


async def test_the_station_wires_the_contactor_to_the_lcd(tmp_path):
    from tests.stations import running_station

    async with running_station(tmp_path, {}) as st:
        assert st.hardware.contactor.on_switch == st.hardware.display.refresh_soon
