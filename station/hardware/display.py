"""The LCD: an HD44780 over I2C (PCF8574 backpack) through RPLCD.

Theory of operation
-------------------
An I2C character LCD is slow: RPLCD sends every character as six expander
writes plus sleeps, about a millisecond or more per character on a 100 kHz
bus, so a full 20x4 screen costs ~100 ms. The core calls `show()` from the
asyncio loop, which must not stall that long; so `show()` only records the
wanted screen and wakes a writer thread, which compares it with a shadow of
what the glass shows and sends just the changed runs of characters (one
cursor move per run). A new screen arriving while one is being written
simply supersedes it; `flush()` waits until the glass shows the latest.

RPLCD's own content cache does not save traffic: for an unchanged
character it sends a cursor-move instruction instead, which costs the same
as the character. Hence our shadow.

Text is encoded for the A00 character ROM (the usual Japanese ROM on cheap
modules): ä ö ü and ß (as the ROM's beta) are in the ROM; Ä Ö Ü are not,
so they are defined as custom characters in CGRAM slots 0-2 after every
initialisation. Other characters fall back to their unaccented letter, or
'?'.

I2C errors (a loose cable, a missing backpack: OSError) never reach the
caller: the first failure of a series is logged, the LCD is dropped, and
the writer re-initialises it after `retry_s` and rewrites the whole screen.
`fault` says what is wrong while it is wrong.

Interference without an error. A contactor switching next to the display
cable can clock a spurious nibble into the HD44780 (its 4-bit interface is
then one nibble out of step, and every later byte lands garbled), reset the
controller (8-bit mode, display off, blank) or flip characters; no I2C error
says so, and the shadow believes the glass is right. So every `refresh_s`
(`lcd.refresh_s`, 60 s by default; 0 = never) the writer resynchronises the
controller and rewrites everything: the standard 4-bit init sequence (0x3,
0x3, 0x3, 0x2 nibbles, which brings the interface into step from any state),
function set, display on, entry mode, return home (undoes a spurious display
shift), the custom characters, then every character of the screen. No clear
instruction is sent, so a screen that was right does not flicker. The
station also asks for a refresh one second after each switch of the
contactor (`refresh_soon`, wired in station/hardware/factory.py), the moment
its interference is most likely. A refresh costs 74 bytes to the controller
on a 16x2 and 126 on a 20x4 (592 and 1008 I2C writes, 0.1 s of a 100 kHz
bus, in the writer thread) and 9 and 13 ms of CPU on the development
machine: 0.02 % of a core at the default 60 s (docs/hardware.md, 5).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import unicodedata
from collections.abc import Callable
from typing import Any

from station.errors import HardwareError

log = logging.getLogger(__name__)

# 5x8 bitmaps (rows top to bottom, 5 bits each) for letters the A00 ROM lacks.
CUSTOM_GLYPHS: dict[str, tuple[int, ...]] = {
    "Ä": (0b01010, 0b00000, 0b01110, 0b10001, 0b11111, 0b10001, 0b10001, 0b00000),
    "Ö": (0b01010, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000),
    "Ü": (0b01010, 0b00000, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000),
}
_CUSTOM_CODES = {char: slot for slot, char in enumerate(CUSTOM_GLYPHS)}

# Codes in the A00 ROM the station relies on (checked against the datasheet's table).
_ROM_EXTRA = {"ä": 0xE1, "ö": 0xEF, "ü": 0xF5, "ß": 0xE2, "°": 0xDF, "µ": 0xE4, "μ": 0xE4}


def _ascii_table() -> dict[str, int]:
    table = {chr(c): c for c in range(0x20, 0x7E) if c != 0x5C}  # 0x5C is Yen in A00
    table["\\"] = ord("/")
    table["~"] = ord("-")
    table["…"] = ord(".")
    return table


_TABLE = {**_ascii_table(), **_ROM_EXTRA, **_CUSTOM_CODES}


def encode(text: str) -> bytes:
    """Character codes for the A00 ROM (plus our custom characters) of `text`."""
    out = bytearray()
    for char in text:
        code = _TABLE.get(char)
        if code is None:
            # é -> e, Å -> A: drop the accent rather than show nothing.
            base = unicodedata.normalize("NFKD", char)[:1]
            code = _TABLE.get(base, ord("?"))
        out.append(code)
    return bytes(out)


def normalise(lines: list[str], cols: int, rows: int) -> list[str]:
    """Exactly `rows` lines of exactly `cols` characters: cut or padded."""
    fitted = [str(line).replace("\n", " ")[:cols].ljust(cols) for line in list(lines)[:rows]]
    return fitted + [" " * cols] * (rows - len(fitted))


class LcdDisplay:
    """The `Display` port on an HD44780 + PCF8574 at I2C `bus`, `address`.

    `background=False` writes inside `show()` (for tests and tools that want
    no thread; they call `refresh_if_due()` themselves). `retry_s` is how long
    to wait before re-initialising after an I2C error, `refresh_s` how often
    the whole screen is rewritten (0: never), `clock` the monotonic clock.
    """

    def __init__(self, bus: int, address: int, cols: int, rows: int, *, retry_s: float = 10.0,
                 background: bool = True, refresh_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            import RPLCD.i2c  # noqa: F401  (the driver; its SMBus is the fake in sim mode)
        except ImportError as exc:
            raise HardwareError(f"LCD: RPLCD is not installed ({exc}); install station[pi]") from None
        self.bus, self.address, self.cols, self.rows = bus, address, cols, rows
        self.retry_s = retry_s
        self.refresh_s = refresh_s
        self.refreshes = 0  # periodic rewrites done (for tests and the bench)
        self._clock = clock
        self._next_refresh = clock() + refresh_s if refresh_s > 0 else math.inf
        self.fault: str | None = None
        self._lcd = None  # RPLCD CharLCD while it works
        self._shadow: list[bytes | None] | None = None  # what the glass shows (None: unknown)
        self._wanted = [b" " * cols] * rows
        self._lines = normalise([], cols, rows)
        self._version = 0  # bumped by show(); the writer records what it has written
        self._written = -1
        self._closed = False
        self._next_try = 0.0  # monotonic time before which no re-init is attempted
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name=f"lcd-{bus}-0x{address:02x}", daemon=True)
            self._thread.start()
        else:
            self._sync()

    # --- the port ---------------------------------------------------------------------
    @property
    def lines(self) -> list[str]:
        """The last lines asked for (cut/padded), whatever the glass shows."""
        return list(self._lines)

    def show(self, lines: list[str]) -> None:
        lines = normalise(lines, self.cols, self.rows)
        with self._cond:
            if lines == self._lines and self._version == self._written:
                return
            self._lines = lines
            self._wanted = [encode(line) for line in lines]
            self._version += 1
            self._cond.notify_all()
        if self._thread is None:
            self._sync()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the glass shows the last `show()`; False on timeout or while faulted."""
        with self._cond:
            done = self._cond.wait_for(lambda: self._written == self._version or self._closed, timeout)
            return bool(done) and self._written == self._version

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._drop()

    # --- the writer -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_refresh

                def woken(due: float = due) -> bool:  # a new screen, close, or an earlier refresh asked for
                    return self._closed or self._written != self._version or self._next_refresh < due

                wait = due - self._clock()
                self._cond.wait_for(woken, None if math.isinf(wait) else max(0.0, wait))
                if self._closed:
                    return
            self.refresh_if_due()
            if self._written != self._version and not self._sync():
                # Failed: wait for the retry time (or close), then try again.
                with self._cond:
                    self._cond.wait_for(lambda: self._closed, max(0.0, self._next_try - self._clock()))

    def refresh_soon(self, delay_s: float = 1.0) -> None:
        """Refresh `delay_s` from now (the contactor just switched: its interference garbles most)."""
        if self.refresh_s <= 0:
            return
        with self._cond:
            self._next_refresh = min(self._next_refresh, self._clock() + delay_s)
            self._cond.notify_all()

    def refresh_if_due(self) -> bool:
        """Resynchronise the controller and rewrite the whole screen if `refresh_s` has passed
        since the last time (the writer thread calls this; without it, the caller). True if done."""
        now = self._clock()
        with self._cond:
            if now < self._next_refresh:
                return False
            self._next_refresh = now + self.refresh_s
        if self._lcd is None or self._shadow is None:
            return False  # not open (faulted or never written): the next write initialises anyway
        try:
            self._resync(self._lcd)
        except OSError as exc:
            self._fail(exc)
            return False
        self._shadow = [None] * self.rows  # unknown: the next sync writes every character
        self.refreshes += 1
        with self._cond:
            self._written = -1  # rewrite even if nothing new was asked for
        return self._sync()

    def _resync(self, lcd: Any) -> None:
        """Bring the controller's interface and settings back without clearing the screen."""
        from RPLCD import common as c

        lcd.command(0x03)  # the HD44780's 4-bit init (datasheet figure 24): in step from any state
        c.msleep(4.5)
        lcd.command(0x03)
        c.msleep(4.5)
        lcd.command(0x03)
        c.usleep(100)
        lcd.command(0x02)
        lines = c.LCD_2LINE if self.rows > 1 else c.LCD_1LINE
        lcd.command(c.LCD_FUNCTIONSET | c.LCD_4BITMODE | lines | c.LCD_5x8DOTS)
        lcd.command(c.LCD_DISPLAYCONTROL | c.LCD_DISPLAYON | c.CursorMode.hide)
        lcd.command(c.LCD_ENTRYMODESET | c.Alignment.left | c.ShiftMode.cursor)
        lcd.home()  # also ends a display shift a stray instruction may have started
        for char, slot in _CUSTOM_CODES.items():
            lcd.create_char(slot, CUSTOM_GLYPHS[char])
        # RPLCD skips a character its own cache says is there (it sends a cursor move instead),
        # and the cache believes the old screen: forget it, so every character goes out again.
        # `_content` is RPLCD's cache (1.3 and 1.4); without it, clear() empties it (a blink).
        if isinstance(getattr(lcd, "_content", None), list):
            lcd._content = [[None] * self.cols for _ in range(self.rows)]
        else:
            lcd.clear()

    def _sync(self) -> bool:
        """Bring the glass up to date with the wanted screen. True on success."""
        with self._cond:
            version, wanted = self._version, list(self._wanted)
        if self._lcd is None and self._clock() < self._next_try:
            return False
        try:
            if self._lcd is None:
                self._open()
            assert self._lcd is not None and self._shadow is not None
            for row, (want, have) in enumerate(zip(wanted, self._shadow, strict=False)):
                for start, run in _changed_runs(want, have):
                    self._lcd.cursor_pos = (row, start)
                    for code in run:
                        self._lcd.write(code)
                self._shadow[row] = want
        except OSError as exc:
            self._fail(exc)
            return False
        if self.fault is not None:
            log.info("LCD at I2C %d/0x%02x works again", self.bus, self.address)
            self.fault = None
        with self._cond:
            self._written = version
            self._cond.notify_all()
        return True

    def _open(self) -> None:
        from RPLCD.i2c import CharLCD

        # Built in two steps so that the bus can be closed if the init fails
        # (RPLCD opens it first and would leak the file descriptor).
        lcd = CharLCD.__new__(CharLCD)
        try:
            lcd.__init__(i2c_expander="PCF8574", address=self.address, port=self.bus,
                         cols=self.cols, rows=self.rows, charmap="A00", auto_linebreaks=True)
            for char, slot in _CUSTOM_CODES.items():
                lcd.create_char(slot, CUSTOM_GLYPHS[char])
        except BaseException:
            _close_bus(lcd)
            raise
        self._lcd = lcd
        self._shadow = [b" " * self.cols] * self.rows  # the init cleared the screen

    def _fail(self, exc: OSError) -> None:
        first = self.fault is None
        self._next_try = self._clock() + self.retry_s
        self.fault = f"LCD at I2C {self.bus}/0x{self.address:02x}: {exc.strerror or exc}"
        if first:
            log.warning("%s; retrying every %.0f s", self.fault, self.retry_s)
        self._drop()

    def _drop(self) -> None:
        lcd, self._lcd, self._shadow = self._lcd, None, None
        if lcd is not None:
            _close_bus(lcd)


def _close_bus(lcd: object) -> None:
    bus = getattr(lcd, "bus", None)
    try:
        if bus is not None:
            bus.close()
    except OSError:
        pass


def _changed_runs(want: bytes, have: bytes | None) -> list[tuple[int, bytes]]:
    """(start column, codes) of each run where `want` differs from `have` (None: unknown, all of it)."""
    if have is None:
        return [(0, want)]
    runs: list[tuple[int, bytes]] = []
    col = 0
    while col < len(want):
        if want[col] == have[col]:
            col += 1
            continue
        start = col
        while col < len(want) and want[col] != have[col]:
            col += 1
        runs.append((start, want[start:col]))
    return runs


class NullDisplay:
    """The `Display` port for a station without an LCD: keeps the last lines for status and tests."""

    def __init__(self, cols: int = 16, rows: int = 2) -> None:
        self.cols, self.rows = cols, rows
        self.lines = normalise([], cols, rows)
        self.fault: str | None = None

    def show(self, lines: list[str]) -> None:
        self.lines = normalise(lines, self.cols, self.rows)

    def flush(self, timeout: float = 5.0) -> bool:
        return True

    def close(self) -> None:
        pass
