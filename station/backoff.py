"""Reconnect and retry pacing: exponential backoff with full jitter and a cap.

Used by every link that reconnects (MCSP, OCPP, evcs-serial, the deliverer),
so that a hundred stations in one building do not all hammer a recovering
server in the same second.
"""

from __future__ import annotations

import random

INITIAL_S = 1.0
FACTOR = 2.0
CAP_S = 60.0


class Backoff:
    def __init__(self, initial: float = INITIAL_S, cap: float = CAP_S, factor: float = FACTOR,
                 rng: random.Random | None = None) -> None:
        self.initial, self.cap, self.factor = initial, cap, factor
        self._rng = rng or random.Random()
        self.failures = 0

    def next(self) -> float:
        """The delay before the next try: uniform in [base/2, base], base growing to the cap."""
        try:
            base = min(self.cap, self.initial * self.factor ** self.failures)
        except OverflowError:  # 2.0 ** 1024: some 1000 failures in a row, hours of outage at the cap
            base = self.cap
        self.failures += 1
        return base / 2 + self._rng.random() * base / 2

    def reset(self) -> None:
        self.failures = 0
