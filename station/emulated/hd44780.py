"""An emulated HD44780 character LCD behind a PCF8574 I2C backpack, and a fake SMBus.

Theory of operation
-------------------
RPLCD talks to a PCF8574 backpack with nothing but `SMBus.write_byte(addr,
value)`: every byte sets the expander's eight output pins, wired as

    bit  7  6  5  4 |  3  |  2 |  1 |  0
         D7 D6 D5 D4| BL  |  E | RW | RS

The HD44780 latches D7-D4 (plus RS, RW) on the *falling* edge of E. After
power-on the controller is in 8-bit mode, where one E pulse is a whole
instruction whose low nibble reads 0 (D3-D0 are not wired on a backpack).
The standard init (0x3, 0x3, 0x3, 0x2) resynchronises from any state and
switches to 4-bit mode, where two pulses (high nibble, then low) make a
byte. This module models exactly that, so a desynchronised or wrongly
initialised driver shows up as garbage on the emulated screen, as it would
on the glass.

Instructions modelled: clear, home, entry mode (I/D, S), display on/off
(D, C, B), cursor/display shift, function set (DL, N, F), set CGRAM
address, set DDRAM address; data writes go to DDRAM or CGRAM at the address
counter. DDRAM in 2-line mode is two 40-byte lines at 0x00 and 0x40, the
address counter wrapping 0x27 -> 0x40 -> ... 0x67 -> 0x00. A 4-row display
is a 2-line controller whose rows 3 and 4 continue lines 1 and 2 at offset
`cols` (0x14 and 0x54 on a 20x4), which is what `text()` reads back.
Reads (RW = 1) are not modelled: RPLCD never reads, and the latch is ignored.

Interference (`interfere(kind)`): what a switching contactor next to the
cable does to the module without any I2C error. "nibble" clocks one spurious
nibble into the controller (the 4-bit interface is then out of step and every
later byte lands as two half-bytes of different bytes), "reset" is a brown-out
of the controller (power-on state: 8-bit mode, display off, blank), "shift" a
stray display-shift instruction, "chars" a few characters overwritten,
"off" a stray display-off. `garble(seed)` does a random few of them.

Devices live in a module-level registry keyed by (bus, address). `FakeSMBus`
(installed as `RPLCD.i2c.SMBus` by station.emulated.install) forwards bytes to
the registered device; an address with nothing attached raises
`OSError(121, 'Remote I/O error')`, as the Linux i2c-dev driver does when
no device acknowledges.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable
from typing import Protocol

# --- registry --------------------------------------------------------------------------


class I2cDevice(Protocol):
    """What the fake bus needs from an emulated chip."""

    def i2c_write(self, data: bytes) -> None: ...

    def i2c_read(self, count: int) -> bytes: ...


_registry: dict[tuple[int, int], I2cDevice] = {}
_registry_lock = threading.Lock()


def attach(bus: int, address: int, device: I2cDevice) -> I2cDevice:
    """Put `device` on the emulated I2C `bus` at `address`; returns it."""
    with _registry_lock:
        _registry[(bus, address)] = device
    return device


def detach(bus: int, address: int) -> None:
    """Remove the device (a pulled cable): further accesses raise OSError(121)."""
    with _registry_lock:
        _registry.pop((bus, address), None)


def device(bus: int, address: int) -> I2cDevice | None:
    with _registry_lock:
        return _registry.get((bus, address))


def reset() -> None:
    """Forget every device (between tests)."""
    with _registry_lock:
        _registry.clear()


def attach_lcd(bus: int, address: int, cols: int = 16, rows: int = 2) -> EmulatedLcd:
    """Convenience: a fresh emulated LCD attached at (bus, address)."""
    lcd = EmulatedLcd(cols, rows)
    attach(bus, address, lcd)
    return lcd


def _no_device(address: int) -> OSError:
    return OSError(errno.EREMOTEIO, f"Remote I/O error (no device at 0x{address:02x})")


# --- the fake SMBus ----------------------------------------------------------------------


class FakeSMBus:
    """Drop-in for `smbus2.SMBus` as far as RPLCD (and i2cdetect-like probing) needs."""

    def __init__(self, bus: int | str | None = None, force: bool = False) -> None:
        self.bus: int | None = None
        self.force = force
        if bus is not None:
            self.open(bus)

    def open(self, bus: int | str) -> None:
        if isinstance(bus, str):  # smbus2 accepts "/dev/i2c-1"
            bus = int(bus.rsplit("-", 1)[-1])
        self.bus = int(bus)

    def close(self) -> None:
        self.bus = None

    def __enter__(self) -> FakeSMBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _device(self, address: int) -> I2cDevice:
        if self.bus is None:
            raise OSError(errno.EBADF, "Bad file descriptor (bus closed)")
        dev = device(self.bus, address)
        if dev is None:
            raise _no_device(address)
        return dev

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        self._device(i2c_addr)

    def write_byte(self, i2c_addr: int, value: int, force: bool | None = None) -> None:
        self._device(i2c_addr).i2c_write(bytes([value & 0xFF]))

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        return self._device(i2c_addr).i2c_read(1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        self._device(i2c_addr).i2c_write(bytes([register & 0xFF, value & 0xFF]))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Iterable[int], force: bool | None = None) -> None:
        self._device(i2c_addr).i2c_write(bytes([register & 0xFF, *(b & 0xFF for b in data)]))


# --- the HD44780 behind a PCF8574 ----------------------------------------------------------

_E, _RW, _RS, _BL = 0x04, 0x02, 0x01, 0x08
_LINE_LEN = 40  # DDRAM bytes per line in 2-line mode


def _rom_a00() -> dict[int, str]:
    """Character codes of the A00 (Japanese) ROM, the common one on cheap modules."""
    table: dict[int, str] = {}
    try:
        from RPLCD.codecs import hd44780_a00

        for char, code in hd44780_a00.encoding_table.items():
            table.setdefault(code, char)
    except ImportError:  # without RPLCD: ASCII is enough for a readable screen
        table = {code: chr(code) for code in range(0x20, 0x7E)}
    # Printable ASCII reads as itself (the table lists several aliases per code).
    for code in range(0x20, 0x7E):
        if code != 0x5C:  # 0x5C is the Yen sign in A00
            table[code] = chr(code)
    # 0xE2 is the ROM's beta, which the station uses as sharp s (it looks the same).
    table[0xE2] = "ß"
    return table


_ROM = _rom_a00()


class EmulatedLcd:
    """A PCF8574 backpack driving an HD44780 of `cols` x `rows`.

    For tests and the terminal view: `text()`, `backlight`, `display_on`,
    `cgram` (64 bytes), `ddram` (128 bytes), and counters: `bus_writes` (I2C
    bytes), `instructions` (executed), `data_writes` (bytes written into
    DDRAM or CGRAM; the cost the display adapter keeps low).
    """

    def __init__(self, cols: int = 16, rows: int = 2) -> None:
        self.cols, self.rows = cols, rows
        self._lock = threading.RLock()
        self.bus_writes = 0
        self.power_cycle()

    # --- power and state ----------------------------------------------------------
    def power_cycle(self) -> None:
        """Power-on reset: 8-bit mode, display off, DDRAM blank, CGRAM garbage-free zero."""
        with self._lock:
            self.port = 0xFF  # PCF8574 outputs come up high (quasi-bidirectional)
            self.eight_bit = True
            self._pending: int | None = None  # high nibble waiting for its low half (4-bit mode)
            self.two_line = False
            self.font_5x10 = False
            self.display_on = False
            self.cursor_on = False
            self.blink_on = False
            self.increment = True
            self.entry_shift = False
            self.shift = 0  # display shift: positive = content moved left
            self.address = 0
            self.to_cgram = False
            self.ddram = bytearray(b" " * 128)
            self.cgram = bytearray(64)
            self.instructions = 0
            self.data_writes = 0
            self.history: list[tuple[str, int]] = []  # ("cmd"|"data", byte), newest last; bounded

    @property
    def backlight(self) -> bool:
        return bool(self.port & _BL)

    # --- the I2C side ---------------------------------------------------------------
    def i2c_write(self, data: bytes) -> None:
        with self._lock:
            for value in data:
                self.bus_writes += 1
                old, self.port = self.port, value
                if old & _E and not value & _E:  # falling edge of E: latch
                    self._latch(value >> 4, bool(value & _RS), bool(value & _RW))

    def i2c_read(self, count: int) -> bytes:
        with self._lock:
            return bytes([self.port]) * count

    # --- the controller --------------------------------------------------------------
    def _latch(self, nibble: int, rs: bool, rw: bool) -> None:
        if rw:
            return  # a read cycle: not modelled, changes nothing
        if self.eight_bit:
            self._execute(nibble << 4, rs)
        elif self._pending is None:
            self._pending = nibble
        else:
            byte, self._pending = (self._pending << 4) | nibble, None
            self._execute(byte, rs)

    def _execute(self, byte: int, rs: bool) -> None:
        if len(self.history) > 4096:
            del self.history[:2048]
        if rs:
            self.history.append(("data", byte))
            self._write_data(byte)
            return
        self.history.append(("cmd", byte))
        self.instructions += 1
        if byte & 0x80:  # set DDRAM address
            self.to_cgram, self.address = False, byte & 0x7F
        elif byte & 0x40:  # set CGRAM address
            self.to_cgram, self.address = True, byte & 0x3F
        elif byte & 0x20:  # function set
            self.eight_bit = bool(byte & 0x10)
            self._pending = None
            self.two_line = bool(byte & 0x08)
            self.font_5x10 = bool(byte & 0x04)
        elif byte & 0x10:  # cursor or display shift
            step = 1 if byte & 0x04 else -1  # R/L: right = 1
            if byte & 0x08:
                self.shift -= step  # display moves right: the window starts one earlier
            else:
                self.address = self._step(self.address, step)
        elif byte & 0x08:  # display on/off control
            self.display_on = bool(byte & 0x04)
            self.cursor_on = bool(byte & 0x02)
            self.blink_on = bool(byte & 0x01)
        elif byte & 0x04:  # entry mode set
            self.increment = bool(byte & 0x02)
            self.entry_shift = bool(byte & 0x01)
        elif byte & 0x02:  # return home
            self.to_cgram, self.address, self.shift = False, 0, 0
        elif byte & 0x01:  # clear display
            self.ddram[:] = b" " * 128
            self.to_cgram, self.address, self.shift = False, 0, 0
            self.increment = True
        # 0x00 is no instruction (seen as the high half of 0x03 during the 8-bit init)

    def _write_data(self, byte: int) -> None:
        self.data_writes += 1
        if self.to_cgram:
            self.cgram[self.address] = byte & 0x1F
            self.address = (self.address + (1 if self.increment else -1)) & 0x3F
            return
        self.ddram[self.address] = byte
        self.address = self._step(self.address, 1 if self.increment else -1)
        if self.entry_shift:
            self.shift += 1 if self.increment else -1

    def _step(self, address: int, step: int) -> int:
        """The DDRAM address counter's walk, including the 2-line wrap."""
        if not self.two_line:
            return (address + step) % 80
        line, col = (0x40, address - 0x40) if address >= 0x40 else (0x00, address)
        col += step
        if col >= _LINE_LEN:
            return 0x40 if line == 0 else 0x00
        if col < 0:
            return 0x67 if line == 0 else 0x27
        return line + col

    # --- interference ---------------------------------------------------------------------
    INTERFERENCE = ("nibble", "reset", "shift", "chars", "off")

    def interfere(self, kind: str, seed: int = 0) -> None:
        """Garble the module as electrical interference does, without an I2C error (see module doc)."""
        import random

        rnd = random.Random(seed)
        with self._lock:
            if kind == "nibble":
                self._latch(rnd.randrange(16), rnd.random() < 0.5, False)
            elif kind == "reset":
                self.power_cycle()
            elif kind == "shift":
                self._execute(0x18 | (0x04 if rnd.random() < 0.5 else 0), False)  # display shift left/right
            elif kind == "chars":
                for _ in range(3):
                    self.ddram[self.ddram_address(rnd.randrange(self.rows), rnd.randrange(self.cols))] = \
                        rnd.choice(b"#%&*@")
            elif kind == "off":
                self._execute(0x08, False)
            else:
                raise ValueError(f"interference is one of {self.INTERFERENCE}, not {kind!r}")

    def garble(self, seed: int) -> list[str]:
        """A random one to three kinds of interference; returns which."""
        import random

        rnd = random.Random(seed)
        kinds = rnd.sample(self.INTERFERENCE, rnd.randint(1, 3))
        for i, kind in enumerate(kinds):
            self.interfere(kind, seed * 10 + i)
        return kinds

    # --- what the eye sees --------------------------------------------------------------
    def ddram_address(self, row: int, col: int) -> int:
        """The DDRAM address shown at (row, col), honouring the display shift."""
        if not self.two_line:
            return (row * self.cols + col + self.shift) % 80
        base = 0x40 if row % 2 else 0x00
        return base + ((row // 2) * self.cols + col + self.shift) % _LINE_LEN

    def codes(self) -> list[bytes]:
        """The character codes shown on each row (ignores display on/off)."""
        with self._lock:
            return [bytes(self.ddram[self.ddram_address(r, c)] for c in range(self.cols)) for r in range(self.rows)]

    def glyph(self, code: int) -> tuple[int, ...]:
        """The 5x8 bitmap of custom character `code` (0-7, mirrored at 8-15)."""
        slot = code & 0x07
        return tuple(self.cgram[slot * 8: slot * 8 + 8])

    def decode(self, code: int) -> str:
        if code < 0x10:
            return glyph_names().get(self.glyph(code), "\N{REPLACEMENT CHARACTER}")
        return _ROM.get(code, "\N{REPLACEMENT CHARACTER}")

    def text(self) -> list[str]:
        """The screen as seen: `rows` strings of `cols` characters; blank while the display is off."""
        with self._lock:
            if not self.display_on:
                return [" " * self.cols for _ in range(self.rows)]
            return ["".join(self.decode(code) for code in row) for row in self.codes()]

    def __repr__(self) -> str:
        return f"EmulatedLcd({self.cols}x{self.rows}, {self.text()!r})"


def glyph_names() -> dict[tuple[int, ...], str]:
    """Bitmaps of custom characters the station defines, mapped to what they show."""
    global _glyph_names
    if _glyph_names is None:
        try:
            from station.hardware.display import CUSTOM_GLYPHS
        except ImportError:
            CUSTOM_GLYPHS = {}
        _glyph_names = {tuple(bitmap): char for char, bitmap in CUSTOM_GLYPHS.items()}
    return _glyph_names


_glyph_names: dict[tuple[int, ...], str] | None = None
