"""The charge controller in the shell: the current written, the car, the cable and the faults read.

Theory of operation
-------------------
A station with a charge controller (the control-pilot board, `ChargeController`
in ports.py) learns what the car does from the board, not from the plug switch
and the meter: `PilotLink` is the one loop that talks to it, a critical task of
the supervisor ("pilot"). Each turn it

1. writes the current the machine wants (`want(amps)`, from the machine's
   `SetCurrent`), if it differs from what was last written, or the board shows a
   setpoint other than that (a board that restarted loads its own start-up
   value: it is written again at once);
2. reads the board (one to three requests on the RS-485 line it shares with the
   meter; the line's lock keeps one request at a time) and posts what changed:
   the board's fault bits as the "pilot" fault, the cable's rating
   (`CableLimit`), the car's state (`CarChanged`, through the shell).

It turns every `controller.poll_interval_s`, and at once when the wanted
current changes, so a new limit reaches the board's register within one bus
round trip (docs/benchmarks.md). Writing comes before reading, and the writes
are the machine's values only: 0 outside a session and whenever the contactor
is commanded open.

The board's fault bits are the "pilot" fault, most serious first
(PILOT_FAULTS: residual current is GroundFailure, the car's missing diode and
its wish for ventilation are named); a fault of the car itself (CAR_FAULTS)
is kept until the car is unplugged, even where the board stops reporting it
once it offers nothing.

Failures are counted like the meter's (meterguard.py): after
`controller.max_failures` failed turns in a row the "controller" fault is
posted (`ControllerFailure`); the machine ends a running session (0 A, the
contactor opened) and the connector is Faulted until the board answers again.
A board whose own settings are wrong for the station (`setup_problem`: Modbus
control off, a current after its own restart) is the "controller" fault
`ControllerSetup`, with the installer's fix in its text: no session starts
until `station controller setup` has fixed it and the station is restarted.

`off()` is for the daemon's last moments (a failed loop, the stop): from then
on only 0 A is written, and it writes 0 A now, whatever the loop is doing.

Waking a car that fell asleep (connected, current offered, it stays in B)
needs the pilot interrupted; where the board can (`can_wake`), the link does it
once after WAKE_AFTER_S. Neither supported board can (docs/hardware.md 6).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from station.core import events as ev
from station.core.model import CarState, ControllerFault, ControllerReading, Fault
from station.core.ports import ChargeController
from station.errors import ControllerError

log = logging.getLogger(__name__)

WAKE_AFTER_S = 30.0  # a car offered current that stays in B this long is woken (where the board can)
OFF_TIMEOUT_S = 3.0  # the daemon's last write of 0 A waits at most this long

# The board's fault bits, most serious first: (fault, OCPP ChargePointErrorCode, vendorErrorCode, text;
# the text fits StatusNotification's info, 50 characters).
PILOT_FAULTS = (
    (ControllerFault.RESIDUAL_CURRENT, "GroundFailure", "ResidualCurrent", "residual current monitor tripped"),
    (ControllerFault.DIODE_CHECK, "EVCommunicationError", "DiodeCheck", "no diode in the car's pilot circuit"),
    (ControllerFault.VENTILATION_REQUIRED, "OtherError", "VentilationRequired",
     "the car asks for ventilation (none fitted here)"),
    (ControllerFault.CONTACTOR, "PowerSwitchFailure", "ControllerContactor", "the controller's contactor check failed"),
    (ControllerFault.CABLE, "OtherError", "CableError", "the cable's proximity pilot is invalid or rejected"),
    (ControllerFault.PILOT, "EVCommunicationError", "PilotError", "the control pilot reads an invalid value"),
    (ControllerFault.UNAVAILABLE, "OtherError", "ControllerUnavailable", "the controller reports itself unavailable"),
    (ControllerFault.OTHER, "OtherError", "ControllerFault", "the controller reports a failure"),
)


# Faults of the car itself: a board may stop reporting them once it offers nothing (the car no longer
# asks for ventilation at 0 A), but the car has not changed: they are kept until it is unplugged.
CAR_FAULTS = ("DiodeCheck", "VentilationRequired")


def pilot_fault(faults: frozenset[ControllerFault]) -> Fault | None:
    """The fault the driver and the backend are told for the board's fault bits (None: none)."""
    for fault, code, vendor, text in PILOT_FAULTS:
        if fault in faults:
            return Fault(code, text, vendor)
    return None


def failure_fault(why: str) -> Fault:
    return Fault("OtherError", f"charge controller not answering: {why}", "ControllerFailure")


def setup_fault(problem: str) -> Fault:
    return Fault("OtherError", f"charge controller not set up: {problem}", "ControllerSetup")


class PilotLink:
    """One loop for the charge controller: writes what the machine wants, posts what the board reads."""

    def __init__(self, controller: ChargeController, post: Callable[[ev.Event], object],
                 on_car: Callable[[CarState], None], monotonic: Callable[[], float], *, interval_s: float,
                 max_failures: int) -> None:
        self.controller = controller
        self._post, self._on_car, self._now = post, on_car, monotonic
        self.interval_s, self.max_failures = interval_s, max_failures
        self.reading: ControllerReading | None = None  # the last good one
        self.failures = 0  # failed turns in a row
        self.writes = 0  # setpoints written (tests, bench)
        self.written_at: float | None = None  # monotonic time of the last write (bench)
        self._target = 0.0  # what the machine wants offered
        self._sent: float | None = None  # the target last written (None: write it)
        self._set: float | None = None  # what the board was given for it (clamped, whole amps)
        self._off = False
        self._controller_fault: Fault | None = None
        self._pilot_fault: Fault | None = None
        self._cable: float | None = None
        self._b_since: float | None = None  # offered current while the car stays in B, since
        self._woken = False
        self._wake = asyncio.Event()

    @property
    def target(self) -> float:
        return self._target

    def want(self, amps: float) -> None:
        """The machine's SetCurrent: written at the loop's next turn, at once."""
        amps = 0.0 if self._off else max(0.0, amps)
        if amps != self._target:
            self._target = amps
            self._wake.set()

    async def run(self, checkpoint: Callable[[str], Awaitable[None]]) -> None:
        # Until off(): the loop ends by itself then, even where pymodbus' wait_for (Python 3.11) swallowed
        # the cancellation of the station's stop.
        while not self._off:
            await checkpoint("pilot")
            self._wake.clear()
            await self.turn()
            try:
                async with asyncio.timeout(self.interval_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def turn(self) -> bool:
        """Write the wanted current if needed, then read the board. False when the board failed."""
        try:
            if self._sent is None or self._target != self._sent:
                target = self._target
                self._set = await self.controller.set_current(target)
                self._sent = target
                self.writes += 1
                self.written_at = self._now()
                log.info("charge controller: %g A offered", self._set)
            reading = await self.controller.read()
            if reading.car_state is CarState.UNKNOWN:
                raise ControllerError(f"{self.controller.model}: a pilot state the station does not know "
                                      f"({reading.detail})", kind="decode")
        except ControllerError as exc:
            self._failed(exc)
            return False
        if self._answered(reading):
            log.info("charge controller: the car does not ask for the current offered; waking it")
            try:
                await self.controller.wake()
            except ControllerError as exc:
                log.warning("charge controller: waking the car failed: %s", exc)
        return True

    def _failed(self, exc: ControllerError) -> None:
        self._sent = None  # unknown what the board holds now: write it again
        self.failures += 1
        log.log(logging.WARNING if self.failures == 1 else logging.DEBUG, "charge controller: %s", exc)
        if self.failures >= self.max_failures:
            self._controller(failure_fault(str(exc)))

    def _answered(self, reading: ControllerReading) -> bool:
        """Post what changed; True when the car should be woken."""
        if self.failures >= self.max_failures:
            log.info("charge controller: answering again")
        self.failures = 0
        self.reading = reading
        problem = self.controller.setup_problem
        self._controller(setup_fault(problem) if problem else None)
        if reading.setpoint_a is not None and self._set is not None and abs(reading.setpoint_a - self._set) > 0.01:
            log.warning("charge controller: its setpoint is %g A, not the %g A set (did it restart?): set again",
                        reading.setpoint_a, self._set)
            self._sent = None
            self._wake.set()
        fault = pilot_fault(reading.faults)
        if (fault is None and self._pilot_fault is not None and self._pilot_fault.vendor in CAR_FAULTS
                and reading.car_state is not CarState.A):
            fault = self._pilot_fault  # the car's own fault stays until it is unplugged
        if fault != self._pilot_fault:
            self._pilot_fault = fault
            self._post(ev.FaultChanged("pilot", fault))
        if reading.cable_limit_a != self._cable:
            self._cable = reading.cable_limit_a
            self._post(ev.CableLimit(self._cable))
        self._on_car(reading.car_state)
        return self._asleep(reading.car_state)

    def _controller(self, fault: Fault | None) -> None:
        if fault != self._controller_fault:
            self._controller_fault = fault
            self._post(ev.FaultChanged("controller", fault))

    def _asleep(self, car: CarState) -> bool:
        """A car offered current that stays in B may have fallen asleep: True once, after WAKE_AFTER_S,
        where the board can wake it."""
        if car is not CarState.B or self._target <= 0:
            self._b_since, self._woken = None, False
            return False
        now = self._now()
        if self._b_since is None:
            self._b_since = now
        if self._woken or now - self._b_since < WAKE_AFTER_S or not self.controller.can_wake:
            return False
        self._woken = True
        return True

    async def off(self) -> bool:
        """Offer nothing from now on, and write 0 A now (the daemon's failure and stop). True when the
        board took it."""
        self._off, self._target = True, 0.0
        try:
            async with asyncio.timeout(OFF_TIMEOUT_S):
                await self.controller.set_current(0.0)
        except (ControllerError, TimeoutError) as exc:
            log.error("charge controller: could not set 0 A: %s", exc or "no answer in time")
            return False
        self._sent = self._set = 0.0
        return True
