"""Put the emulated chips where the real libraries look for hardware.

The mfrc522 library binds `RPi.GPIO` and `spidev` at import, and RPLCD binds
`SMBus` at import of `RPLCD.i2c`; so the fakes are installed in
`sys.modules` (and RPLCD's module attribute) before the first import. After
`install()` the real libraries run unchanged on top of the emulators.
"""

from __future__ import annotations

import sys
import types

_installed = False


def install() -> None:
    """Idempotent. Never called in `hardware.mode = "pi"`."""
    global _installed
    if _installed:
        return
    from station.emulated import fakegpio, fakelgpio, fakespi

    # rpi-lgpio's errors from below are lgpio's: the emulated GPIO raises the emulated lgpio's
    # class, and `import lgpio` (station.hardware.gpio.gpio_errors) finds it.
    sys.modules.setdefault("lgpio", fakelgpio)
    rpi = types.ModuleType("RPi")
    rpi.GPIO = fakegpio  # type: ignore[attr-defined]
    sys.modules["RPi"] = rpi
    sys.modules["RPi.GPIO"] = fakegpio
    sys.modules["spidev"] = fakespi
    for name in ("mfrc522", "mfrc522.MFRC522", "mfrc522.SimpleMFRC522"):
        # Imported before install (e.g. by a test): rebind to the fakes.
        sys.modules.pop(name, None)
    try:
        import RPLCD.i2c

        from station.emulated.hd44780 import FakeSMBus

        RPLCD.i2c.SMBus = FakeSMBus
    except ImportError:  # RPLCD not installed: the LCD adapter says so when used
        pass
    _installed = True
