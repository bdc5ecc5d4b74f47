"""The real RPLCD 1.4 against the emulated PCF8574 + HD44780, and the LcdDisplay adapter."""

from __future__ import annotations

import errno
import logging
import time

import pytest
from RPLCD.i2c import CharLCD

from station.core import messages
from station.hardware.display import CUSTOM_GLYPHS, LcdDisplay, NullDisplay, encode

ADDR = 0x27


def rplcd(cols: int, rows: int, address: int = ADDR, **kw) -> CharLCD:
    return CharLCD(i2c_expander="PCF8574", address=address, port=1, cols=cols, rows=rows, **kw)


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --- the emulator under the unmodified library --------------------------------------------


@pytest.mark.parametrize("cols,rows", [(16, 2), (20, 4)])
def test_rplcd_text_reads_back(fake_i2c, cols, rows):
    lcd = fake_i2c.attach_lcd(1, ADDR, cols, rows)
    drv = rplcd(cols, rows)
    assert lcd.display_on and not lcd.eight_bit and lcd.two_line
    assert lcd.text() == [" " * cols] * rows
    for row in range(rows):
        drv.cursor_pos = (row, 1)
        drv.write_string(f"row {row}")
    assert lcd.text() == [f" row {r}".ljust(cols) for r in range(rows)]


def test_rplcd_20x4_rows_live_at_00_40_14_54(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 20, 4)
    drv = rplcd(20, 4)
    for row, char in enumerate("ABCD"):
        drv.cursor_pos = (row, 0)
        drv.write_string(char)
    assert [lcd.ddram[a] for a in (0x00, 0x40, 0x14, 0x54)] == [ord(c) for c in "ABCD"]


def test_auto_linebreak_runs_through_all_rows(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 20, 4)
    drv = rplcd(20, 4)
    text = "".join(chr(ord("A") + i % 26) for i in range(80))
    drv.write_string(text)
    assert "".join(lcd.text()) == text


def test_clear_home_backlight_display_and_shift(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    drv = rplcd(16, 2)
    drv.write_string("Hello")
    assert lcd.backlight
    drv.backlight_enabled = False
    assert not lcd.backlight
    drv.display_enabled = False
    assert lcd.text() == [" " * 16] * 2  # the glass is dark, DDRAM keeps the text
    assert lcd.codes()[0].startswith(b"Hello")
    drv.display_enabled = True
    drv.shift_display(-1)  # content moves left by one
    assert lcd.text()[0].startswith("ello")
    drv.home()
    assert lcd.text()[0].startswith("Hello") and lcd.address == 0
    drv.clear()
    assert lcd.text() == [" " * 16] * 2


def test_custom_characters_are_stored_in_cgram(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    drv = rplcd(16, 2)
    bitmap = (0b00100, 0b01110, 0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000)
    drv.create_char(5, bitmap)
    assert tuple(lcd.cgram[40:48]) == bitmap
    assert lcd.glyph(5) == bitmap
    drv.write_string("\x05")
    assert lcd.codes()[0][0] == 5


def test_reinit_resynchronises_a_controller_left_in_4_bit_mode(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    rplcd(16, 2).write_string("old")
    # A stray half byte (a glitch, a crashed writer): the controller is one nibble off.
    lcd.i2c_write(bytes([0x58 | 0x04, 0x58]))
    assert lcd._pending == 0x5  # half a byte waits for its other half
    drv = rplcd(16, 2)
    drv.write_string("new text")
    assert lcd.text()[0] == "new text".ljust(16)


def test_missing_device_raises_oserror_121(fake_i2c):
    with pytest.raises(OSError) as info:
        rplcd(16, 2, address=0x3F)
    assert info.value.errno == errno.EREMOTEIO == 121
    bus = fake_i2c.FakeSMBus(1)
    with pytest.raises(OSError):
        bus.write_byte(0x3F, 0)


# --- LcdDisplay -----------------------------------------------------------------------------


@pytest.mark.parametrize("cols,rows", [(16, 2), (20, 4)])
def test_display_shows_lines_cut_and_padded(fake_i2c, cols, rows):
    lcd = fake_i2c.attach_lcd(1, ADDR, cols, rows)
    disp = LcdDisplay(1, ADDR, cols, rows)
    try:
        disp.show(["A line much longer than any LCD is wide", "two"])
        assert disp.flush(10)
        expected = ["A line much longer than any LCD is wide"[:cols], "two".ljust(cols)] + [" " * cols] * (rows - 2)
        assert lcd.text() == expected
        assert disp.lines == expected
    finally:
        disp.close()


@pytest.mark.parametrize("cols,rows", [(16, 2), (20, 4)])
def test_display_shows_every_german_screen_exactly(fake_i2c, cols, rows):
    lcd = fake_i2c.attach_lcd(1, ADDR, cols, rows)
    disp = LcdDisplay(1, ADDR, cols, rows, background=False)
    fields = dict(name="Süd", energy_wh=1234, power_w=7400, reason="meter", offline=True)
    for key in messages.KEYS:
        lines = messages.screen(key, "de", cols, rows, **fields)
        disp.show(lines)
        assert lcd.text() == [line.ljust(cols) for line in lines], key
    disp.close()


def test_umlauts_use_rom_codes_and_custom_characters(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    disp = LcdDisplay(1, ADDR, 16, 2, background=False)
    disp.show(["Prüfe Karte", "Außer Betrieb"])
    assert lcd.text() == ["Prüfe Karte".ljust(16), "Außer Betrieb".ljust(16)]
    assert lcd.codes()[0][2] == 0xF5 and lcd.codes()[1][2] == 0xE2
    disp.show(["äöü ß", "ÄÖÜ"])
    assert lcd.codes()[0][:5] == bytes([0xE1, 0xEF, 0xF5, 0x20, 0xE2])
    assert lcd.codes()[1][:3] == bytes([0, 1, 2])
    assert [lcd.glyph(i) for i in range(3)] == list(CUSTOM_GLYPHS.values())
    assert lcd.text()[1].startswith("ÄÖÜ")
    disp.close()


def test_encode_falls_back_sensibly():
    assert encode("é~\\") == b"e-/"
    assert encode("☃") == b"?"
    assert encode("12,5 kWh") == b"12,5 kWh"


def test_only_changed_characters_are_written(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    disp = LcdDisplay(1, ADDR, 16, 2, background=False)
    disp.show(["Charging  7.4 kW", "12.345 kWh"])
    before = lcd.data_writes
    disp.show(["Charging  7.4 kW", "12.345 kWh"])
    assert lcd.data_writes == before  # nothing changed: nothing sent
    bus_before = lcd.bus_writes
    disp.show(["Charging  7.4 kW", "12.346 kWh"])
    assert lcd.data_writes == before + 1
    # one cursor move and one character: 2 bytes, each 2 nibbles x 4 expander writes
    assert lcd.bus_writes - bus_before == 16
    disp.show(["Charging  7.3 kW", "12.346 kWh"])
    assert lcd.data_writes == before + 2
    assert lcd.text() == ["Charging  7.3 kW", "12.346 kWh".ljust(16)]
    disp.close()


def test_background_writer_coalesces_and_flushes(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 20, 4)
    disp = LcdDisplay(1, ADDR, 20, 4)
    try:
        for i in range(50):
            disp.show([f"count {i}", "", "", ""])
        assert disp.flush(10)
        assert lcd.text()[0] == "count 49".ljust(20)
    finally:
        disp.close()
    assert disp._thread is not None and not disp._thread.is_alive()


def test_missing_lcd_never_raises_and_is_found_later(fake_i2c, caplog):
    caplog.set_level(logging.WARNING, logger="station.hardware.display")
    disp = LcdDisplay(1, ADDR, 16, 2, retry_s=0.05)
    try:
        disp.show(["Tap card", ""])
        assert wait_for(lambda: disp.fault is not None)
        assert "0x27" in disp.fault
        time.sleep(0.3)  # several retries fail meanwhile
        disp.show(["Karte vorhalten", ""])
        assert not disp.flush(0.1)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # logged once per outage, not per retry
        lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
        assert disp.flush(10)
        assert disp.fault is None
        assert lcd.text()[0] == "Karte vorhalten".ljust(16)
    finally:
        disp.close()


def test_lcd_lost_mid_session_is_reinitialised_with_the_whole_screen(fake_i2c):
    lcd = fake_i2c.attach_lcd(1, ADDR, 16, 2)
    disp = LcdDisplay(1, ADDR, 16, 2, retry_s=0.05, background=False)
    disp.show(["Charging", "1.000 kWh"])
    fake_i2c.detach(1, ADDR)
    disp.show(["Charging", "1.001 kWh"])  # must not raise
    assert disp.fault is not None
    lcd.power_cycle()  # the module lost power with its cable: blank, 8-bit mode
    fake_i2c.attach(1, ADDR, lcd)
    time.sleep(0.06)
    disp.show(["Charging", "1.002 kWh"])
    assert disp.fault is None
    assert lcd.text() == ["Charging".ljust(16), "1.002 kWh".ljust(16)]
    disp.close()


def test_null_display_keeps_lines():
    disp = NullDisplay(16, 2)
    disp.show(["Tap card"])
    assert disp.lines == ["Tap card".ljust(16), " " * 16]
    assert disp.flush()
    disp.close()


def test_adapters_satisfy_the_display_port(fake_i2c):
    from station.core.ports import Display

    fake_i2c.attach_lcd(1, ADDR, 16, 2)
    disp = LcdDisplay(1, ADDR, 16, 2, background=False)
    assert isinstance(disp, Display) and isinstance(NullDisplay(16, 2), Display)
    disp.close()
