"""Build the hardware ports from the configuration: the one place adapters are chosen.

The same adapters serve both modes. In `hardware.mode = "sim"` the fake
RPi.GPIO, spidev and SMBus are installed first and the emulated chips attached
by station.sim.world, so `Mfrc522Reader`, `LcdDisplay`, `ModbusMeter` and the
GPIO devices run their real code paths against them. With `hardware.emulate_bus
= false` the RS-485 devices (meter, charge controller) are the real ones on
`meter.port` even in simulation.

The meter and the charge controller share one `RtuBus` (one port, one request
at a time, the silence kept across both) unless `controller.port` names a line
of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from station.core.ports import Hardware
from station.errors import ConfigError, ControllerError
from station.hardware import rtu
from station.hardware.contactor import BoardContactor, GpioContactor
from station.hardware.controller import ModbusController
from station.hardware.display import LcdDisplay, NullDisplay
from station.hardware.gpio import load_gpio
from station.hardware.inputs import GpioInputs
from station.hardware.leds import GpioLeds, NullLeds
from station.hardware.meter import ModbusMeter

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # types only: the composition root hands the instances in (no import cycle)
    from station.config import Config

# Where the emulated optional devices are wired when the config names no pin.
SIM_FEEDBACK_PIN = 23
SIM_EV_PIN = 22
SIM_STOP_PIN = 27


@dataclass(frozen=True)
class Pins:
    contactor: int
    contactor_active_low: bool
    feedback: int | None
    feedback_active_low: bool
    ev: int | None
    ev_active_low: bool
    stop: int | None
    stop_active_low: bool


def effective_pins(config: Config) -> Pins:
    """The pins in use; in sim mode the `sim.*` switches add emulated inputs."""
    c, i, s = config.contactor, config.inputs, config.sim
    sim = config.hardware.mode == "sim"
    feedback = c.feedback_pin if c.enabled else None  # no GPIO contactor: no auxiliary contact either
    ev = i.ev_connected_pin
    stop = i.stop_button_pin
    if sim and c.enabled:
        feedback = (feedback if feedback is not None else SIM_FEEDBACK_PIN) if s.contactor_feedback else None
    if sim:
        ev = (ev if ev is not None else SIM_EV_PIN) if s.ev_connected_input else None
        stop = (stop if stop is not None else SIM_STOP_PIN) if s.stop_button_input else None
    return Pins(c.pin, c.active_low, feedback, c.feedback_active_low, ev, i.ev_connected_active_low,
                stop, i.stop_button_active_low)


async def build_hardware(config: Config, world: Any = None) -> Hardware:
    if config.hardware.mode == "sim":
        from station.emulated import fakegpio

        fakegpio.emulate(config.sim.gpio_library)
        fakegpio.fail_edge_detection(not config.sim.gpio_edge_detection)
    gpio = load_gpio(config.hardware.mode)
    pins = effective_pins(config)
    closers: list = []

    reader = None
    if config.rfid.enabled:
        from station.hardware.rfid import Mfrc522Reader

        r = config.rfid
        reader = Mfrc522Reader(r.spi_bus, r.spi_device, r.reset_pin, r.poll_interval_s, r.absent_s,
                               spi_speed_hz=r.spi_speed_hz, antenna_gain_db=r.antenna_gain_db)

    contactor: GpioContactor | BoardContactor = BoardContactor()  # the charge controller's relay switches it
    if config.contactor.enabled:
        contactor = GpioContactor(gpio, pins.contactor, pins.contactor_active_low, pins.feedback,
                                  pins.feedback_active_low)
    inputs = GpioInputs(gpio, pins.ev, pins.ev_active_low, pins.stop, pins.stop_active_low)
    closers.append(inputs.close)

    lk = config.leds
    leds = NullLeds() if lk.kind == "none" else GpioLeds(gpio, lk.kind, lk.green_pin, lk.yellow_pin, lk.red_pin, lk.active_low)
    closers.append(leds.close)

    lcd = config.lcd
    display = (LcdDisplay(lcd.i2c_bus, lcd.address, lcd.cols, lcd.rows, refresh_s=lcd.refresh_s) if lcd.enabled
               else NullDisplay(lcd.cols, lcd.rows))
    closers.append(display.close)
    if isinstance(display, LcdDisplay):
        contactor.on_switch = display.refresh_soon

    m = config.meter
    emulated = world is not None and bool(getattr(world, "meter_port", ""))
    port = world.meter_port if emulated else m.port
    # The emulated meter can be told to "consume" any amount at once (scenarios), which
    # no real meter can; so the jump check is only as strict as the configuration says.
    max_power = m.max_power_w if (not emulated or m.max_power_w) else float("inf")
    bus = rtu.RtuBus(port, baudrate=m.baudrate, parity=m.parity, stopbits=m.stopbits, timeout_s=m.timeout_s,
                     turnaround_s=m.turnaround_s, rs485_rts=m.rs485_rts and not emulated,
                     rs485_rts_level_for_tx=m.rs485_rts_level_for_tx)
    meter = ModbusMeter(m.model, port, m.address, max_power_w=max_power, bus=bus)
    controller = await build_controller(config, bus, emulated)
    if controller is not None:
        closers.append(lambda: _stop_offering(controller))
    closers.append(meter.close)
    # The contactor is closed last: stopping the process opens it (it would drop with the power anyway).
    closers.append(lambda: contactor.set(False))
    return Hardware(reader=reader, contactor=contactor, inputs=inputs, leds=leds, display=display,
                    meter=meter, closers=closers, controller=controller)


async def build_controller(config: Config, meter_bus: rtu.RtuBus, emulated: bool) -> ModbusController | None:
    """The charge controller of `controller.model` (None for "none"), on the meter's line unless
    `controller.port` names another (the emulated world has one line for both).

    It is told to offer nothing at once: after a kill -9 or a crash the board's volatile setpoint
    may still hold the last session's current, and a car plugged in without a session must not
    charge. (The core repeats this when it takes over.)
    """
    c = config.controller
    if c.model == "none":
        return None
    bus = meter_bus
    if c.port is not None and c.port != config.meter.port and not emulated:
        m = config.meter
        bus = rtu.RtuBus(c.port, baudrate=c.baudrate, parity=c.parity, stopbits=c.stopbits, timeout_s=c.timeout_s,
                         rs485_rts=m.rs485_rts, rs485_rts_level_for_tx=m.rs485_rts_level_for_tx)
    try:
        controller = ModbusController(c.model, bus.port, c.address, bus=bus, min_current_a=c.min_current_a,
                                      max_current_a=c.max_current_a)
    except ValueError as exc:
        raise ConfigError(config.source, "controller", str(exc)) from None
    try:
        await controller.set_current(0)
    except ControllerError as exc:
        log.warning("charge controller: could not set 0 A at start (%s); retried when the station takes over", exc)
    return controller


async def _stop_offering(controller: ModbusController) -> None:
    """At stop: offer nothing, then let go of the line."""
    try:
        await controller.set_current(0)
    except ControllerError as exc:
        log.warning("charge controller: could not set 0 A at stop: %s", exc)
    await controller.close()
