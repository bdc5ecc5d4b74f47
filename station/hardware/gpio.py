"""Load the RPi.GPIO module: the real one on a Pi, the emulated one in sim mode.

Adapters receive the module object and never import RPi.GPIO themselves, so
the same adapter code runs on a Pi (RPi.GPIO, or rpi-lgpio on a Pi 5, which
provides the same API) and in simulation (station.emulated.fakegpio). Pins are
BCM numbers everywhere. Nobody calls `GPIO.cleanup()`: it would release
pins other parts still drive (and let the contactor relay float).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from station.errors import HardwareError


def load_gpio(mode: str) -> ModuleType:
    """The RPi.GPIO module in BCM mode, warnings off. `mode` is "pi" or "sim"."""
    if mode == "sim":
        from station.emulated.install import install

        install()
    elif mode != "pi":
        raise ValueError(f"hardware mode must be 'pi' or 'sim', got {mode!r}")
    try:
        gpio = importlib.import_module("RPi.GPIO")
    except ImportError as exc:
        raise HardwareError(f"GPIO: RPi.GPIO is not installed ({exc}); install station[pi] "
                            "(rpi-lgpio on a Pi 5)") from None
    except RuntimeError as exc:  # "This module can only be run on a Raspberry Pi!"
        raise HardwareError(f"GPIO: {exc}") from None
    gpio.setwarnings(False)
    try:
        gpio.setmode(gpio.BCM)
    except ValueError:  # "A different mode has already been set!"
        if gpio.getmode() != gpio.BCM:
            raise HardwareError("GPIO: numbering mode is already BOARD; station needs BCM") from None
    return gpio
