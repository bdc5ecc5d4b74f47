"""Load the RPi.GPIO module: the real one on a Pi, the emulated one in sim mode.

Adapters receive the module object and never import RPi.GPIO themselves, so
the same adapter code runs on a Pi (rpi-lgpio, which provides the RPi.GPIO API
on the kernel's gpiochip device, or the original RPi.GPIO) and in simulation
(station.emulated.fakegpio). Pins are BCM numbers everywhere. Nobody calls
`GPIO.cleanup()`: it would release pins other parts still drive (and let the
contactor relay float).

Errors. RPi.GPIO raises RuntimeError and ValueError. rpi-lgpio raises those
for its own checks, but lets lgpio's own exception through from below:
`lgpio.error`, a plain Exception subclass (a gpiochip that does not open, a
line the kernel or another process holds: "GPIO busy"). `gpio_errors()` is
the tuple of classes a GPIO call can raise on this machine, so adapters catch
exactly those; `setup_pin()` turns a failing setup into a HardwareError that
names the pin, its role and what to check.

Old boards. rpi-lgpio refuses the old-style revision codes of the first
Raspberry Pi boards (Model A, B, A+, B+ and Compute Module 1: codes 0002-0015)
at import, with NotImplementedError "does not understand old-style revision
codes", although lgpio drives their GPIO chip like any other. Its documented
way round is the RPI_LGPIO_REVISION environment variable, which it reads
instead of the device tree. Before importing, `load_gpio` reads the board's
code from the device tree and, for an old-style code, sets the variable to
the new-style code of the same board (0010, a B+ 1.2 by Sony UK, becomes
900032), and logs which board it found. The original RPi.GPIO ignores the
variable.
"""

from __future__ import annotations

import importlib
import logging
import os
import struct
import sys
from pathlib import Path
from types import ModuleType

from station.errors import HardwareError

log = logging.getLogger(__name__)

DEVICE_TREE_REVISION = Path("/proc/device-tree/system/linux,revision")

# Old-style revision codes (Raspberry Pi documentation, "Old-style revision codes"):
# code -> (new-style type, PCB revision, memory code 0=256MB 1=512MB, manufacturer 0=Sony UK
# 1=Egoman 2=Embest; Qisda has no new-style code and is given as Sony UK), and a name.
OLD_STYLE: dict[int, tuple[int, int, int, int, str]] = {
    0x0002: (1, 0, 0, 1, "Model B 1.0"), 0x0003: (1, 0, 0, 1, "Model B 1.0"),
    0x0004: (1, 2, 0, 0, "Model B 2.0"), 0x0005: (1, 2, 0, 0, "Model B 2.0"), 0x0006: (1, 2, 0, 1, "Model B 2.0"),
    0x0007: (0, 2, 0, 1, "Model A 2.0"), 0x0008: (0, 2, 0, 0, "Model A 2.0"), 0x0009: (0, 2, 0, 0, "Model A 2.0"),
    0x000D: (1, 2, 1, 1, "Model B 2.0"), 0x000E: (1, 2, 1, 0, "Model B 2.0"), 0x000F: (1, 2, 1, 1, "Model B 2.0"),
    0x0010: (3, 2, 1, 0, "Model B+ 1.2"), 0x0011: (6, 0, 1, 0, "Compute Module 1"),
    0x0012: (2, 1, 0, 0, "Model A+ 1.1"), 0x0013: (3, 2, 1, 2, "Model B+ 1.2"),
    0x0014: (6, 0, 1, 2, "Compute Module 1"), 0x0015: (2, 1, 0, 2, "Model A+ 1.1"),
}


def new_style_code(old: int) -> int:
    """The new-style revision code of the board an old-style code names (bit 23 set, BCM2835)."""
    kind, pcb, memory, maker, _name = OLD_STYLE[old & 0xFFFF]
    return 1 << 23 | memory << 20 | maker << 16 | 0 << 12 | kind << 4 | pcb


def board_revision(path: Path = DEVICE_TREE_REVISION) -> int | None:
    """The board's revision code from the device tree (None off a Pi)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return struct.unpack(">I", raw[:4])[0] if len(raw) >= 4 else None


def prepare_old_board(path: Path = DEVICE_TREE_REVISION, environ: dict[str, str] | None = None) -> str | None:
    """On a board with an old-style revision code, tell rpi-lgpio its new-style code through
    RPI_LGPIO_REVISION (unless the installer set it). Returns what was done, for the log."""
    env = os.environ if environ is None else environ
    if "RPI_LGPIO_REVISION" in env:
        return None
    code = board_revision(path)
    if code is None or code & (1 << 23):
        return None
    old = code & 0xFFFF
    if old not in OLD_STYLE:
        return f"board revision {code:04x} is an old-style code this station does not know"
    env["RPI_LGPIO_REVISION"] = f"{new_style_code(old):06x}"
    return (f"board revision {old:04x} (old-style code: Raspberry Pi 1 {OLD_STYLE[old][4]}); "
            f"rpi-lgpio is told its new-style code {env['RPI_LGPIO_REVISION']}")


def gpio_errors() -> tuple[type[Exception], ...]:
    """What a GPIO call can raise here: RPi.GPIO's and rpi-lgpio's RuntimeError and ValueError,
    and lgpio's own `lgpio.error` where lgpio is loaded (rpi-lgpio, or the emulated one)."""
    lgpio = sys.modules.get("lgpio")
    extra = getattr(lgpio, "error", None)
    if isinstance(extra, type) and issubclass(extra, Exception):
        return (RuntimeError, ValueError, extra)
    return (RuntimeError, ValueError)


def describe(exc: BaseException) -> str:
    """The library's message (lgpio.error's str() is the repr of its text: strip the quotes)."""
    text = str(exc)
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    return text or type(exc).__name__


def setup_pin(gpio: ModuleType, pin: int, role: str, direction: int, **kwargs: int) -> None:
    """`gpio.setup()` for one pin; a failure is a HardwareError naming the pin, its role and a fix."""
    try:
        gpio.setup(pin, direction, **kwargs)
    except gpio_errors() as exc:
        why = describe(exc)
        hint = ""
        if "busy" in why.lower() or "not allocated" in why.lower():
            hint = ("; another process or the kernel holds it (`gpioinfo` marks it [used]): SPI uses BCM 7-11, "
                    "I2C BCM 2-3, the UART BCM 14-15 while enabled; is a second station running?")
        elif isinstance(exc, ValueError):
            hint = "; check the pin number in the configuration (BCM numbering)"
        raise HardwareError(f"GPIO: BCM {pin} ({role}) cannot be set up: {why}{hint}") from None


def load_gpio(mode: str, *, revision_path: Path = DEVICE_TREE_REVISION) -> ModuleType:
    """The RPi.GPIO module in BCM mode, warnings off. `mode` is "pi" or "sim"."""
    if mode == "sim":
        from station.emulated.install import install

        install()
    elif mode != "pi":
        raise ValueError(f"hardware mode must be 'pi' or 'sim', got {mode!r}")
    else:
        note = prepare_old_board(revision_path)
        if note:
            log.info("GPIO: %s", note)
    try:
        gpio = importlib.import_module("RPi.GPIO")
    except ImportError as exc:
        if exc.name == "lgpio":
            raise HardwareError("GPIO: rpi-lgpio is installed but lgpio is not (on Raspberry Pi OS: "
                                "apt install python3-lgpio; scripts/install-pi does it)") from None
        raise HardwareError(f"GPIO: RPi.GPIO is not installed ({exc}); install station[pi] "
                            "(rpi-lgpio on a Pi 5)") from None
    except RuntimeError as exc:  # "This module can only be run on a Raspberry Pi!", old-style codes
        hint = ""
        if "old-style revision" in str(exc):
            hint = ("; set RPI_LGPIO_REVISION to the board's new-style code (docs/hardware.md, 3) "
                    "or install the original RPi.GPIO instead of rpi-lgpio")
        raise HardwareError(f"GPIO: {exc}{hint}") from None
    except OSError as exc:  # lgpio's import creates a notification pipe in the working directory
        raise HardwareError(f"GPIO: lgpio cannot start ({exc}); it needs a writable working directory "
                            "(the service runs in /run/station)") from None
    gpio.setwarnings(False)
    try:
        gpio.setmode(gpio.BCM)
    except ValueError:  # "A different mode has already been set!"
        if gpio.getmode() != gpio.BCM:
            raise HardwareError("GPIO: numbering mode is already BOARD; station needs BCM") from None
    except gpio_errors() as exc:  # lgpio.error "can not open gpiochip" (rpi-lgpio opens the chip here)
        raise HardwareError(f"GPIO: cannot open the GPIO chip: {describe(exc)}; the station's user needs "
                            "the gpio group (access to /dev/gpiochip*)") from None
    info = getattr(gpio, "RPI_INFO", None)
    if mode == "pi" and isinstance(info, dict):
        log.info("GPIO: %s %s on %s (revision %s)", getattr(gpio, "__name__", "RPi.GPIO"),
                 getattr(gpio, "VERSION", ""), info.get("TYPE", "unknown board"), info.get("REVISION", "?"))
    return gpio
