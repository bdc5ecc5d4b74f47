"""The emulated world around a simulated station: chips, wires, a car and its load.

`SimWorld.create(config)` installs the fake RPi.GPIO/spidev/SMBus, attaches
an emulated MFRC522 (its reset wired to `rfid.reset_pin`) and HD44780, and
starts an emulated RS-485 line with a Modbus meter of the configured model,
whose register is kept in the state directory, and, with `controller.model`,
an emulated charge controller at its address with an emulated car on its
pilot (station/emulated/controller_server.py, car.py). The world follows the
contactor: energy flows only while the contactor output is closed (and the
car is plugged in, where the station has an EV-connected input; with a
controller, while the board's relay is closed too, as much as the car draws
of what the pilot offers); the auxiliary contact follows the contactor unless
a test welds it or breaks it.

With `hardware.emulate_bus = false` there is no emulated line: the station
reads the real meter and controller on `meter.port`, and the world's meter
handles (`consume`, meter faults) are not available.

Handles for scenarios, the terminal view and tests: `tap(uid)`, `plug()`,
`press_stop()`, `set_load(w)`, `consume(wh)`, `backend_link(up)`,
`meter_wh`, `lcd_text()`, `contactor_closed`, `weld()`; the car (with a
controller): `car`, `car_asleep()`, `car_ventilation()`, `car_diode_fault()`,
`car_full()`, `car_phases()`, `offered_a`, `pilot_text()`; `inject(kind)` and
`clear()` for the scenario fault steps (FAULT_KINDS).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from station import privacy
from station.config import Config
from station.core.tags import format_uid, parse_uid
from station.errors import ConfigError
from station.hardware.factory import effective_pins

log = logging.getLogger(__name__)

ISO_UID_LENGTHS = (4, 7, 10)
FAULT_KINDS = ("contactor-welded", "contactor-open", "meter-silent", "meter-bad-crc", "reader-dead", "loop-hang",
               "controller-silent", "rcd-tripped", "controller-restart")
HANGABLE_LOOPS = ("events", "meter", "poll", "pilot", "deliverer", "event-loop")


class ReaderKilled(BaseException):
    """Raised into the RFID reader's worker by the emulated chip: not an Exception, so the
    worker's own error handling does not catch it and the thread dies."""


class SimWorld:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.pins = effective_pins(config)
        self.station: Any = None
        self.chip: Any = None
        self.lcd: Any = None
        self.meter: Any = None  # EmulatedMeter; None with hardware.emulate_bus = false
        self.controller: Any = None  # EmulatedController, with controller.model
        self.bus: Any = None  # EmulatedBus
        self.meter_port = ""  # the emulated line's port ("": the real devices on meter.port)
        self._follow: Any = None  # makes the meter count what the car draws (with a controller)
        self.plugged = False
        self.welded = False
        self.stuck_open = False
        self.backend_up = True
        self.embedded: Any = None  # an embedded backend server (MCSP), if the demo runs one
        self._gpio: Any = None
        self._logged_closed: bool | None = None  # the contactor state last logged

    @classmethod
    async def create(cls, config: Config, embedded: Any = None) -> SimWorld:
        from station.backends.link import SWITCH

        SWITCH.set(True)  # a link cut by an earlier simulation in this process is mended
        world = cls(config)
        world.embedded = embedded
        await world._build()
        return world

    async def _build(self) -> None:
        from station.emulated import fakegpio, fakespi, hd44780
        from station.emulated.mfrc522chip import MFRC522Chip
        from station.hardware.gpio import load_gpio

        cfg = self.config
        self._gpio = load_gpio("sim")
        fakegpio.reset()
        self._gpio.setmode(self._gpio.BCM)
        if cfg.rfid.enabled:
            self.chip = MFRC522Chip(reset_pin=cfg.rfid.reset_pin)
            fakespi.attach(cfg.rfid.spi_bus, cfg.rfid.spi_device, self.chip)
        if cfg.lcd.enabled:
            self.lcd = hd44780.attach_lcd(cfg.lcd.i2c_bus, cfg.lcd.address, cfg.lcd.cols, cfg.lcd.rows)
        if cfg.hardware.emulate_bus:
            await self._build_bus()
        else:
            log.info("hardware.emulate_bus = false: the meter and the controller are the real ones on %s",
                     cfg.meter.port)
        fakegpio.on_output(self._on_output)
        # Inputs idle: not plugged, button released (active-low inputs idle high).
        if self.pins.ev is not None:
            fakegpio.drive(self.pins.ev, self.pins.ev_active_low)
        if self.pins.stop is not None:
            fakegpio.drive(self.pins.stop, self.pins.stop_active_low)
        if self.pins.feedback is not None:
            fakegpio.drive(self.pins.feedback, self._feedback_level(False))

    async def _build_bus(self) -> None:
        from station.emulated.bus import EmulatedBus
        from station.emulated.car import Car
        from station.emulated.controller_server import EmulatedController, meter_follows
        from station.emulated.meter_server import EmulatedMeter

        cfg = self.config
        self.bus = EmulatedBus(cfg.sim.meter_link, baudrate=cfg.meter.baudrate, parity=cfg.meter.parity)
        self.meter = EmulatedMeter(cfg.meter.model, address=cfg.meter.address, state_dir=cfg.station.state_dir,
                                   bus=self.bus)
        if cfg.controller.model != "none":
            car = Car(phases=cfg.sim.car_phases, max_current_a=cfg.sim.car_max_current_a)
            try:
                self.controller = EmulatedController(cfg.controller.model, address=cfg.controller.address, bus=self.bus,
                                                     state_dir=cfg.station.state_dir, car=car, cable_a=cfg.sim.cable_a)
            except ValueError as exc:  # two devices at one address
                raise ConfigError(cfg.source, "controller.address", str(exc)) from None
            self._follow = meter_follows(self.controller, self.meter, contactor=self._contactor_conducts)
        self.meter_port = await self.bus.start()
        await self.meter.start()
        if self.controller is not None:
            await self.controller.start()
        else:
            self.meter.set_load(cfg.sim.load_w)

    def bind(self, station: Any) -> None:
        self.station = station

    # ------------------------------------------------------------------ wiring
    @property
    def gpio_contactor(self) -> bool:
        """A contactor on GPIO (contactor.enabled); else the charge controller's relay is the contactor."""
        return bool(self.config.contactor.enabled)

    @property
    def contactor_closed(self) -> bool:
        from station.emulated import fakegpio

        if not self.gpio_contactor:
            return bool(self.controller is not None and self.controller.relay_closed)
        level = fakegpio.level(self.pins.contactor)
        if level is None:
            return False
        return bool(level) != self.pins.contactor_active_low

    def _feedback_level(self, closed: bool) -> int:
        return int(closed != self.pins.feedback_active_low)

    def _on_output(self, pin: int, level: int) -> None:
        if pin != self.pins.contactor or not self.gpio_contactor:
            return
        closed = self.contactor_closed
        if closed != self._logged_closed:
            # What the emulated coil does, in the log: under systemd the only outside witness.
            log.info("emulated contactor %s", "closed" if closed else "open")
            self._logged_closed = closed
        self._update()

    def _contactor_conducts(self) -> bool:
        """The GPIO contactor in series with the board's relay conducts (without one: always)."""
        if not self.gpio_contactor:
            return True
        return (self.contactor_closed or self.welded) and not self.stuck_open

    def _update(self) -> None:
        from station.emulated import fakegpio

        closed = self._contactor_conducts()
        if self._follow is not None:
            self._follow()  # the board's relay, the car's draw and this contactor, in series
        elif self.meter is not None:
            car = self.plugged or self.pins.ev is None
            self.meter.set_flowing(closed and car)
        if self.pins.feedback is not None:
            fakegpio.drive(self.pins.feedback, self._feedback_level(closed))

    def weld(self, welded: bool = True) -> None:
        """The contactor's contacts stick closed (a fault the station must notice)."""
        self.welded = welded
        self._update()

    def break_contactor(self, broken: bool = True) -> None:
        """The contactor no longer closes (coil burnt)."""
        self.stuck_open = broken
        self._update()

    # ------------------------------------------------------------------ fault injection
    def inject(self, kind: str, loop: str = "meter") -> None:
        """Make something fail, as the hardware or the station's own code might (FAULT_KINDS)."""
        if kind == "contactor-welded":
            self.weld(True)
        elif kind == "contactor-open":
            self.break_contactor(True)
        elif kind == "meter-silent":
            self._emulated_meter().set_fault("silent")
        elif kind == "meter-bad-crc":
            self._emulated_meter().set_fault("bad-crc")
        elif kind == "controller-silent":
            self._board().set_silent(True)
        elif kind == "rcd-tripped":
            self._board().trip_rcd()
        elif kind == "controller-restart":
            self._board().restart()
        elif kind == "reader-dead":
            if self.chip is None:
                raise RuntimeError("this station has no reader (rfid.enabled = false)")
            self.chip.crash = ReaderKilled("emulated SPI bus: the reader's worker thread is killed")
        elif kind == "loop-hang":
            if loop == "event-loop":
                log.warning("fault injection: the event loop blocks")
                time.sleep(3600)  # blocks everything; the LoopWatch thread ends the process
            else:
                self.station.supervisor.hang.add(loop)
        else:
            raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(FAULT_KINDS)}")

    def clear(self) -> None:
        """Remove every injected fault (a hung loop stays hung: that is what a hang is)."""
        self.weld(False)
        self.break_contactor(False)
        if self.meter is not None:
            self.meter.set_fault(None)
        if self.controller is not None:
            self.controller.set_silent(False)
            self.controller.clear_rcd()
        if self.chip is not None:
            self.chip.crash = None

    # ------------------------------------------------------------------ the driver and the car
    async def tap(self, uid_hex: str, hold_s: float = 0.4, wait: bool = True) -> None:
        """Hold a card to the reader for `hold_s`, then take it away.

        UIDs of 4, 7 or 10 bytes are real ISO 14443A cards read through the
        emulated chip. Other lengths (like the 8-byte key in the MCSP picture)
        exist on no such card; they are handed to the charger as a tap of that
        id tag, formatted as configured, and logged as such.
        """
        uid = parse_uid(uid_hex)
        charger = self.station.charger if self.station is not None else None
        before = charger.taps if charger is not None else 0
        if len(uid) in ISO_UID_LENGTHS and self.chip is not None:
            self.chip.present(uid)
            await asyncio.sleep(hold_s)
            self.chip.remove()
        else:
            r = self.config.rfid
            log.info("tap of %d-byte UID %s injected as an id tag (no ISO 14443A card has that length)", len(uid),
                     privacy.tag(uid_hex))
            if charger is not None:
                charger.tap_tag(format_uid(uid, r.uid_case, r.uid_separator, r.uid_byte_order))
        if not wait or charger is None:
            return
        # Until the station has taken the tap and finished with it, and the reader has
        # seen the card leave (so that the next tap of the same card counts again).
        deadline = asyncio.get_running_loop().time() + 10.0
        while asyncio.get_running_loop().time() < deadline:
            if charger.taps > before and charger.events_idle():
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(self.config.rfid.absent_s + 2 * self.config.rfid.poll_interval_s)

    def plug(self, plugged: bool = True) -> None:
        from station.emulated import fakegpio

        self.plugged = plugged
        if self.pins.ev is not None:
            fakegpio.drive(self.pins.ev, plugged != self.pins.ev_active_low)
        if self.controller is not None:
            self.controller.plug(plugged)  # the car on the pilot
        self._update()

    async def press_stop(self, hold_s: float = 0.2) -> None:
        from station.emulated import fakegpio

        if self.pins.stop is None:
            raise RuntimeError("this station has no stop button (sim.stop_button_input = false)")
        fakegpio.drive(self.pins.stop, not self.pins.stop_active_low)
        await asyncio.sleep(hold_s)
        fakegpio.drive(self.pins.stop, self.pins.stop_active_low)

    def set_load(self, watts: float) -> None:
        """What the car draws: the meter's load; with a controller, the car's on-board limit (per phase)."""
        if self.controller is not None:
            car = self.controller.car
            car.max_current_a = watts / (car.phases * self._emulated_meter().voltage_v)
            self.controller.car_changed()
            return
        self._emulated_meter().set_load(watts)

    def consume(self, wh: int) -> None:
        """The meter register advances by exactly `wh` (whatever the contactor does)."""
        self._emulated_meter().advance(wh)

    @property
    def meter_wh(self) -> int:
        if self.meter is None:  # the real meter: what the station read last
            reading = self.station.charger.reading if self.station is not None else None
            return reading.energy_wh if reading is not None else 0
        return self.meter.register_wh

    @property
    def load_w(self) -> float:
        """What the car would draw now (0 when the station reads a real meter)."""
        return self.meter.load_w if self.meter is not None else 0.0

    @property
    def power_w(self) -> float:
        return self.meter.load_w if self.meter is not None and self.meter.flowing else 0.0

    def _emulated_meter(self) -> Any:
        if self.meter is None:
            raise RuntimeError("the meter is the real one (hardware.emulate_bus = false)")
        return self.meter

    # ------------------------------------------------------------------ the car on the pilot
    def _board(self) -> Any:
        if self.controller is None:
            raise RuntimeError("this station has no emulated charge controller (controller.model, hardware.emulate_bus)")
        return self.controller

    @property
    def car(self) -> Any:
        """The emulated car (station.emulated.car.Car) on the controller's pilot."""
        return self._board().car

    def car_asleep(self, asleep: bool = True) -> None:
        self._board().car.asleep = asleep
        self._board().car_changed()

    def car_ventilation(self, needed: bool = True) -> None:
        self._board().car.ventilation = needed
        self._board().car_changed()

    def car_diode_fault(self, fault: bool = True) -> None:
        self._board().car.diode_fault = fault
        self._board().car_changed()

    def car_full(self, full: bool = True) -> None:
        """The battery is full (the car stops asking: B), or has room again."""
        car = self._board().car
        car.stored_wh = car.capacity_wh if full else min(car.stored_wh, car.capacity_wh / 2)
        self._board().car_changed()

    def car_phases(self, phases: int) -> None:
        """The car's on-board charger takes 1 or 3 phases."""
        if phases not in (1, 3):
            raise ValueError(f"a car charges on 1 or 3 phases, not {phases}")
        self._board().car.phases = phases
        self._board().car_changed()

    @property
    def offered_a(self) -> float | None:
        """What the pilot offers the car now (A; 0 without PWM): the emulated board's; with the real
        board (emulate_bus = false) the station's last reading of it; None without a controller."""
        if self.controller is not None:
            return float(self.controller.offered_a)
        charger = self.station.charger if self.station is not None else None
        reading = charger.pilot_reading if charger is not None else None
        return reading.offered_a if reading is not None else None

    def pilot_text(self) -> str | None:
        """The pilot as the board sees it, for the terminal view (None without a controller)."""
        b = self.controller
        if b is None:
            return None
        faults = ", ".join(sorted(f.value for f in b.faults))
        return (f"state {b.car_state.value}, offered {b.offered_a:g} A, car draws {round(b.draw_a, 1):g} A on {b.car.phases} "
                f"phase(s){', relay closed' if b.relay_closed else ''}{', fault: ' + faults if faults else ''}")

    def lcd_text(self) -> list[str]:
        if self.lcd is not None:
            return self.lcd.text()
        return list(self.station.hardware.display.lines) if self.station else []

    # ------------------------------------------------------------------ the backend
    async def backend_link(self, up: bool) -> None:
        """Take the backend link down or up: the embedded server stops serving; the local backend
        (which has no link) stops answering; any other backend's link is cut at the station
        (station.backends.link.SWITCH: MCSP and evcs-serial links, the OCPP websocket)."""
        from station.backends.link import SWITCH

        self.backend_up = up
        if self.embedded is not None:
            await (self.embedded.resume() if up else self.embedded.suspend())
            return
        backend = self.station.backend if self.station is not None else None
        if backend is not None and hasattr(backend, "set_up"):
            backend.set_up(up)
        else:
            SWITCH.set(up)
        if up and self.station is not None and self.station.deliverer is not None:
            self.station.deliverer.wake()

    async def close(self) -> None:
        from station.backends.link import SWITCH
        from station.emulated import fakespi, hd44780

        if self.controller is not None:
            await self.controller.stop()
        if not self.backend_up:
            SWITCH.set(True)  # the next simulated station starts with its link up

        if self.meter is not None:
            await self.meter.stop()
        if self.bus is not None:
            await self.bus.stop()
        cfg = self.config
        if self.chip is not None:
            fakespi.detach(cfg.rfid.spi_bus, cfg.rfid.spi_device)
        if self.lcd is not None:
            hd44780.detach(cfg.lcd.i2c_bus, cfg.lcd.address)
