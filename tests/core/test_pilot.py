"""The shell's pilot link (station/core/pilot.py) on its own: a charge controller double that keeps a
setpoint like a board, the events the link posts, a clock the test moves.

Whole stations on the emulated board are in tests/hardware/test_controller_wiring.py; here each rule of the
link is reached in a few turns: what is written and when, what a failure and a setup problem become,
the car's own faults kept until it leaves, waking a sleeping car only where the board can.
"""

from __future__ import annotations

from station.core import events as ev
from station.core.model import CarState, ControllerFault, ControllerReading
from station.core.pilot import WAKE_AFTER_S, PilotLink, pilot_fault
from station.errors import ControllerError


class Board:
    """A ChargeController double: a setpoint in RAM, a car state, fault bits; it can go silent."""

    model, address, min_current_a, max_current_a, firmware = "EVSE-DIN", 2, 6.0, 16.0, "18"

    def __init__(self, can_wake: bool = False) -> None:
        self.can_wake = can_wake
        self.setup_problem: str | None = None
        self.setpoint = 0.0
        self.car = CarState.A
        self.faults: frozenset[ControllerFault] = frozenset()
        self.cable: float | None = None
        self.silent = False
        self.written: list[float] = []
        self.wakes = 0

    async def read(self) -> ControllerReading:
        if self.silent:
            raise ControllerError("no reply", kind="timeout")
        return ControllerReading(self.car, self.setpoint if self.car.charging else 0.0, self.setpoint, self.cable,
                                 self.faults)

    async def set_current(self, amps: float) -> float:
        if self.silent:
            raise ControllerError("no reply", kind="timeout")
        value = float(int(min(amps, self.max_current_a))) if amps >= self.min_current_a else 0.0
        self.setpoint = value
        self.written.append(value)
        return value

    async def wake(self) -> bool:
        self.wakes += 1
        return self.can_wake

    async def close(self) -> None: ...


class Rig:
    def __init__(self, board: Board | None = None, max_failures: int = 3) -> None:
        self.board = board or Board()
        self.t = 100.0
        self.events: list[ev.Event] = []
        self.cars: list[CarState] = []
        self.link = PilotLink(self.board, self.events.append, self.cars.append, lambda: self.t, interval_s=1.0,
                              max_failures=max_failures)

    def faults(self, source: str) -> list[str | None]:
        return [e.fault.vendor if e.fault else None for e in self.events
                if isinstance(e, ev.FaultChanged) and e.source == source]


async def test_writes_what_the_machine_wants_once_and_again_when_the_board_lost_it():
    r = Rig()
    await r.link.turn()
    assert r.board.written == [0.0]  # the first turn: 0 A, whatever the board held
    await r.link.turn()
    assert r.board.written == [0.0]  # nothing new: nothing written
    r.link.want(10.6)
    await r.link.turn()
    assert r.board.written == [0.0, 10.0]  # the board's step: whole amps, rounded down
    await r.link.turn()
    assert r.board.written == [0.0, 10.0]  # 10.6 wanted, 10 set: not written over and over
    r.board.setpoint = 32.0  # the board restarted with its own start-up current
    await r.link.turn()
    await r.link.turn()
    assert r.board.written == [0.0, 10.0, 10.0] and r.board.setpoint == 10


async def test_the_car_the_cable_and_the_fault_bits_are_posted_when_they_change():
    r = Rig()
    r.board.car, r.board.cable = CarState.B, 20.0
    await r.link.turn()
    await r.link.turn()
    assert r.cars == [CarState.B, CarState.B]  # the shell posts CarChanged only on a change
    assert [e.amps for e in r.events if isinstance(e, ev.CableLimit)] == [20.0]
    r.board.car, r.board.faults = CarState.E, frozenset({ControllerFault.RESIDUAL_CURRENT})
    await r.link.turn()
    assert r.faults("pilot") == ["ResidualCurrent"] and r.cars[-1] is CarState.E
    r.board.car, r.board.faults = CarState.B, frozenset()
    await r.link.turn()
    assert r.faults("pilot") == ["ResidualCurrent", None]


def test_the_most_serious_fault_bit_is_named():
    both = frozenset({ControllerFault.VENTILATION_REQUIRED, ControllerFault.RESIDUAL_CURRENT})
    fault = pilot_fault(both)
    assert fault is not None and (fault.code, fault.vendor) == ("GroundFailure", "ResidualCurrent")
    assert pilot_fault(frozenset()) is None
    every = [pilot_fault(frozenset({f})) for f in ControllerFault]
    assert all(f is not None and f.vendor and len(f.vendor) <= 50 and len(f.text) <= 50 for f in every)


async def test_the_car_s_own_fault_stays_until_it_is_unplugged():
    r = Rig()
    r.board.car, r.board.faults = CarState.E, frozenset({ControllerFault.VENTILATION_REQUIRED})
    await r.link.turn()
    r.board.car, r.board.faults = CarState.B, frozenset()  # offered nothing, the board no longer says it
    await r.link.turn()
    assert r.faults("pilot") == ["VentilationRequired"]
    r.board.car = CarState.A
    await r.link.turn()
    assert r.faults("pilot") == ["VentilationRequired", None]


async def test_failures_make_a_fault_after_max_failures_and_an_answer_clears_it():
    r = Rig(max_failures=3)
    await r.link.turn()
    r.board.silent = True
    assert not await r.link.turn() and not await r.link.turn()
    assert r.faults("controller") == []
    await r.link.turn()
    assert r.faults("controller") == ["ControllerFailure"]
    r.link.want(16)  # meanwhile the machine has decided something: written once the board answers
    r.board.silent = False
    assert await r.link.turn()
    assert r.faults("controller") == ["ControllerFailure", None] and r.board.written[-1] == 16


async def test_an_unknown_pilot_state_counts_as_a_failure():
    r = Rig(max_failures=1)
    r.board.car = CarState.UNKNOWN
    assert not await r.link.turn()
    assert r.faults("controller") == ["ControllerFailure"] and r.cars == []


async def test_a_board_not_set_up_is_the_controller_fault_with_the_fix():
    r = Rig()
    r.board.setup_problem = "Modbus control is off (register 2001 = 0): run `station controller setup`"
    await r.link.turn()
    fault = [e.fault for e in r.events if isinstance(e, ev.FaultChanged) and e.source == "controller"][0]
    assert fault is not None and fault.vendor == "ControllerSetup" and "station controller setup" in fault.text


async def test_off_writes_zero_now_and_nothing_else_from_then_on():
    r = Rig()
    r.link.want(16)
    await r.link.turn()
    assert await r.link.off()
    r.link.want(16)
    await r.link.turn()
    assert r.board.written == [16.0, 0.0] and r.board.setpoint == 0


async def test_a_sleeping_car_is_woken_once_only_where_the_board_can():
    for can_wake, wakes in ((False, 0), (True, 1)):
        r = Rig(Board(can_wake=can_wake))
        r.board.car = CarState.B
        r.link.want(16)
        for _ in range(4):
            await r.link.turn()
            r.t += WAKE_AFTER_S / 2  # offered 16 A, the car stays in B
        assert r.board.wakes == wakes
        r.board.car = CarState.C
        await r.link.turn()
        r.board.car = CarState.B
        await r.link.turn()
        assert r.board.wakes == wakes  # asked again, then stopped: the timer starts over
