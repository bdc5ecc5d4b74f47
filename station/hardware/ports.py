"""The hardware ports: what the core needs from each piece of hardware.

The core (station/core) talks only to these interfaces, never to RPi.GPIO,
spidev, RPLCD or pymodbus. Each port has one real adapter in this package;
in `hardware.mode = "sim"` the *same* adapters run on top of the emulated
chips in station/sim (fake spidev, fake RPi.GPIO, fake SMBus, a Modbus RTU
server), so a simulated station exercises the real driver code.

Threading contract: `RfidReader.start` runs a worker thread and calls
`on_tap` from it; everything else is called from the asyncio loop and must
return quickly (GPIO and LCD writes are microseconds; the meter is async).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol, runtime_checkable


@dataclass(frozen=True)
class MeterReading:
    """One reading of the kWh meter. Energy is integer Wh, always.

    Lists have one entry per phase the model measures (1 or 3). Values a
    model does not provide are None / empty.
    """

    energy_wh: int
    power_w: float | None = None
    voltage_v: tuple[float, ...] = ()
    current_a: tuple[float, ...] = ()
    power_phase_w: tuple[float, ...] = ()
    energy_phase_wh: tuple[int, ...] = ()
    frequency_hz: float | None = None
    taken_at: float = 0.0  # time.monotonic() when read

    def to_json(self) -> dict:
        return {
            "energy_import_wh": self.energy_wh,
            "power_w": self.power_w,
            "voltage_v": list(self.voltage_v),
            "current_a": list(self.current_a),
            "power_phase_w": list(self.power_phase_w),
            "energy_import_phase_wh": list(self.energy_phase_wh),
            "frequency_hz": self.frequency_hz,
        }


@runtime_checkable
class Meter(Protocol):
    """A kWh meter. `read()` raises MeterError on timeout or a bad reply."""

    model: str
    max_power_w: float  # for the plausibility check of energy jumps
    measurands: frozenset[str]  # e.g. {"energy", "power", "voltage", "current", "energy_phase"}

    async def read(self, full: bool = True) -> MeterReading:
        """`full=False`: energy and total power only (fewer registers on the bus)."""

    async def close(self) -> None: ...


@runtime_checkable
class RfidReader(Protocol):
    """A card reader. Debounced: a card held on the reader is one tap."""

    def start(self, on_tap: Callable[[bytes], None], on_fault: Callable[[str | None], None]) -> None:
        """Start polling in a worker thread.

        `on_tap(uid)` is called once per tap with the raw UID bytes (byte 0
        first, BCC stripped). `on_fault(text)` reports a reader failure, and
        `on_fault(None)` its recovery. Both are called from the worker thread.
        """

    def stop(self) -> None: ...


@runtime_checkable
class Contactor(Protocol):
    """The power contactor. `closed` is the commanded state."""

    closed: bool

    def set(self, closed: bool) -> None: ...

    def feedback(self) -> bool | None:
        """The auxiliary contact: True when the contactor is closed, None without one."""


@runtime_checkable
class Inputs(Protocol):
    """Optional digital inputs. Absent inputs read None."""

    def ev_connected(self) -> bool | None: ...

    def stop_pressed(self) -> bool | None: ...


class LedPattern(str, Enum):
    """What the LEDs show; the adapter maps each to pins and a blink rhythm."""

    OFF = "off"
    AVAILABLE = "available"  # green steady
    BUSY = "busy"  # yellow blinking: authorizing, finishing
    CHARGING = "charging"  # green blinking
    SUSPENDED = "suspended"  # green + yellow steady
    REFUSED = "refused"  # red blinking (short)
    UNAVAILABLE = "unavailable"  # yellow steady
    FAULT = "fault"  # red steady


@runtime_checkable
class Leds(Protocol):
    def show(self, pattern: LedPattern) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Display(Protocol):
    """A character display of `rows` x `cols`."""

    cols: int
    rows: int

    def show(self, lines: list[str]) -> None:
        """Replace the screen with these lines (cut or padded to the size)."""

    def close(self) -> None: ...


@dataclass
class Hardware:
    """The set of ports the daemon composes. Built by station.hardware.factory."""

    reader: RfidReader
    contactor: Contactor
    inputs: Inputs
    leds: Leds
    display: Display
    meter: Meter
    closers: list[Callable[[], object]] = field(default_factory=list)
