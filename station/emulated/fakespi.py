"""An emulated `spidev` module: SPI buses that lead to emulated chips.

Installed in `sys.modules` as `spidev` by station.emulated.install, so the
mfrc522 library and our reader run unchanged. A chip is anything with a
`transfer(data: list[int]) -> list[int]` method (one chip-select cycle:
the bytes shifted out on MOSI in, the bytes shifted in on MISO out); the
MFRC522 emulator in station.emulated.mfrc522chip is one.

What it reproduces of the real module (py-spidev 3.x on a Pi):

- `SpiDev().open(bus, device)` raises FileNotFoundError (errno 2) when
  nothing is attached at (bus, device), as the real one does when
  /dev/spidevB.D does not exist (SPI not enabled, or not a Pi).
- A chip detached while the device is open is a module pulled off the
  wires: the bus still works, MISO reads all zeros.
- Operations on a closed device raise OSError(EBADF).
- `xfer`, `xfer2` and `xfer3` hold chip select for the whole list (one
  chip transaction); `writebytes` is a transfer whose answer is dropped,
  `readbytes(n)` clocks out n zero bytes.

Handles for tests and benchmarks: `attach(bus, device, chip)`,
`detach(bus, device)`, `attached(bus, device)`, `reset()`, and
`transfers(bus, device)`, the number of chip transactions on that bus
position (each chip also keeps its own count, e.g. `chip.transfers`).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from typing import Protocol

__version__ = "3.8-station-sim"


class Chip(Protocol):
    def transfer(self, data: list[int]) -> list[int]: ...


_lock = threading.Lock()
_chips: dict[tuple[int, int], Chip] = {}
_counts: dict[tuple[int, int], int] = {}


def attach(bus: int, device: int, chip: Chip) -> Chip:
    """Wire `chip` to /dev/spidev{bus}.{device}. Returns the chip."""
    with _lock:
        _chips[(bus, device)] = chip
    return chip


def detach(bus: int, device: int) -> Chip | None:
    """Pull the chip off the bus (open devices now read zeros). Returns it."""
    with _lock:
        return _chips.pop((bus, device), None)


def attached(bus: int, device: int) -> Chip | None:
    with _lock:
        return _chips.get((bus, device))


def transfers(bus: int, device: int) -> int:
    """Chip transactions on (bus, device) since the last reset()."""
    with _lock:
        return _counts.get((bus, device), 0)


def reset() -> None:
    """Detach every chip and zero the counters (between tests)."""
    with _lock:
        _chips.clear()
        _counts.clear()


def _check_bytes(values: Sequence[int]) -> list[int]:
    out = []
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"Non-Int/Long value in arguments: {type(v).__name__}.")
        if not 0 <= v <= 255:
            raise OverflowError(f"byte value out of range: {v}")
        out.append(v)
    if len(out) > 4096:
        raise OverflowError("Argument list size exceeds 4096 bytes.")
    return out


class SpiDev:
    """The `spidev.SpiDev` class: one open SPI device node."""

    def __init__(self, bus: int | None = None, device: int | None = None) -> None:
        self._where: tuple[int, int] | None = None
        self.mode = 0
        self.max_speed_hz = 125_000_000 // 16  # the kernel's default is driver-specific
        self.bits_per_word = 8
        self.lsbfirst = False
        self.cshigh = False
        self.threewire = False
        self.loop = False
        self.no_cs = False
        self.transfers = 0  # transactions through this handle
        if bus is not None:
            self.open(bus, 0 if device is None else device)

    def open(self, bus: int, device: int) -> None:
        with _lock:
            present = (bus, device) in _chips
        if not present:
            # What the real module raises when /dev/spidevB.D is missing.
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT))
        self._where = (bus, device)

    def close(self) -> None:
        self._where = None

    def fileno(self) -> int:
        self._require_open()
        return -1

    def _require_open(self) -> tuple[int, int]:
        if self._where is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return self._where

    def xfer2(self, values: Sequence[int], speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0) -> list[int]:
        where = self._require_open()
        data = _check_bytes(values)
        with _lock:
            chip = _chips.get(where)
            _counts[where] = _counts.get(where, 0) + 1
        self.transfers += 1
        if chip is None:
            return [0] * len(data)  # nothing drives MISO: it reads low
        answer = chip.transfer(data)
        return [int(b) & 0xFF for b in answer]

    xfer = xfer2
    xfer3 = xfer2

    def writebytes(self, values: Sequence[int]) -> None:
        self.xfer2(values)

    writebytes2 = writebytes

    def readbytes(self, length: int) -> list[int]:
        return self.xfer2([0] * length)

    def __enter__(self) -> SpiDev:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
