"""A whole simulated OCPP station with a charge controller (EVSE-DIN at BOARD on the emulated RS-485
line): its configuration and what the line recorded, for the 1.6 and 2.0.1 tests alike."""

from __future__ import annotations

from typing import Any

BOARD = 2
CONTROLLER = {"controller.model": "EVSE-DIN", "controller.address": BOARD, "controller.max_current_a": 16,
              "controller.poll_interval_s": 0.2}


def setpoints(s: Any) -> list[int]:
    """The values the station wrote to the board's setpoint register, in order (the line's record)."""
    return [w.values[0] for w in s.world.bus.writes if w.device == BOARD and w.address == 1000]
