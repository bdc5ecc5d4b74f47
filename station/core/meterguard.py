"""Meter plausibility and fault detection: pure logic, no I/O, no clock of its own.

Theory of operation
-------------------
The core polls the meter and hands every outcome to a `MeterGuard`:
`accept(reading)` for an answer, `failed(exc)` for a timeout or bad reply.
Times come from the readings (`MeterReading.taken_at`, time.monotonic()),
so the guard is deterministic and testable without sleeping.

Plausibility. Energy registers only ever grow, and never faster than the
meter's rated power allows. A reading is *rejected* (returned as None and
logged) when its energy is below the last accepted one, or above it by more
than

    max_power_w x (elapsed + lag_s) / 3600 + margin_wh

where `elapsed` is the time since the last *accepted* reading. Measuring
from the last accepted reading means a spike never moves the reference: in
"180 kWh, then 5000 kWh, then 180 kWh" the 5000 is rejected and the next 180
is accepted as if the spike had never been read, so no session is billed
the difference. It also means a meter that was unreachable for an hour
while the car charged is accepted again: the allowance grows with the time.
`lag_s` covers a meter that refreshes its registers only every second or
two (two reads may straddle more energy than their own distance in time);
`margin_wh` covers the register's step: pass the meter's `resolution_wh`
(10 Wh for 0.01 kWh registers and the float32 models, 100 Wh for the EM24's
0.1 kWh); the default, 100 Wh, is safe for every model here. Too small a
margin would reject the legitimate one-step increments of a coarse register
(and, as rejections count as failures, fault the meter).
`max_power_w=math.inf` disables the rate check (decreases are still
rejected): for emulated hardware, whose scenario step "consume" adds its Wh
at once, faster than any real meter could count them.

Start-up. The first reading has nothing to be checked against, and a spike
could be the very first value read. So the guard holds the first reading as a
*candidate* and accepts only a reading that is plausible relative to it:
until two consecutive readings agree, `accept` returns None. (One poll
interval, typically 1 s, at start-up.) After that, rejected readings do not
replace the reference.

Faults. `failed()` counts consecutive failures; after `max_failures` the
guard is `faulted` (the core shows Faulted and ends or suspends charging as
it decides). A rejected, implausible reading counts as a failure too: a
meter that keeps answering nonsense (e.g. a replaced meter whose register
restarted at 0, or a wrong model configured) must end in a fault that someone
sees, not in silently stalled billing. The fault clears at the first
accepted reading.
"""

from __future__ import annotations

import logging

from station.core.model import MeterReading

log = logging.getLogger("station.meter")


class MeterGuard:
    """Plausibility filter and failure counter for one meter.

    API:
      accept(reading) -> MeterReading | None   the reading if plausible, else None
      failed(exc)     -> bool                  True when the meter is (now) faulted
      faulted, fault_text, last, failures, rejected
    """

    def __init__(
        self,
        max_power_w: float,
        max_failures: int = 3,
        *,
        margin_wh: int = 100,
        lag_s: float = 2.0,
    ) -> None:
        if max_power_w <= 0:
            raise ValueError("max_power_w must be positive")
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.max_power_w = float(max_power_w)
        self.max_failures = max_failures
        self.margin_wh = margin_wh
        self.lag_s = lag_s
        self.last: MeterReading | None = None  # last accepted reading
        self.failures = 0  # consecutive failures and rejections
        self.rejected = 0  # total rejected readings
        self.faulted = False
        self.fault_text: str | None = None
        self._candidate: MeterReading | None = None

    # -- decisions -------------------------------------------------------------------
    def allowance_wh(self, elapsed_s: float) -> float:
        """The largest plausible energy increase over `elapsed_s` seconds."""
        return self.max_power_w * (max(0.0, elapsed_s) + self.lag_s) / 3600.0 + self.margin_wh

    def check(self, ref: MeterReading, new: MeterReading) -> str | None:
        """Why `new` is implausible after `ref`, or None when it is plausible."""
        delta = new.energy_wh - ref.energy_wh
        if delta < 0:
            return f"energy went down from {ref.energy_wh} Wh to {new.energy_wh} Wh"
        elapsed = new.taken_at - ref.taken_at
        allowed = self.allowance_wh(elapsed)
        if delta > allowed:
            return (
                f"energy jumped by {delta} Wh in {max(0.0, elapsed):.1f} s "
                f"(at most {allowed:.0f} Wh at {self.max_power_w:.0f} W)"
            )
        return None

    def accept(self, reading: MeterReading) -> MeterReading | None:
        """The reading if it is plausible (and becomes `last`), else None."""
        ref = self.last or self._candidate
        if ref is None:
            # Very first answer: keep it as the candidate reference, accept nothing yet.
            self._candidate = reading
            self._answered()
            return None
        why = self.check(ref, reading)
        if why is None:
            self.last = reading
            self._candidate = None
            self._answered()
            return reading
        self.rejected += 1
        if self.last is None:
            # Start-up: the candidate and this reading disagree; one of them is a spike.
            # Keep the newer one as the candidate; the next reading decides.
            log.warning("meter: start-up readings disagree (%s); waiting for a confirming reading", why)
            self._candidate = reading
            self._bad(f"implausible readings: {why}")
            return None
        log.warning("meter: implausible reading rejected: %s", why)
        self._bad(f"implausible readings: {why}")
        return None

    def failed(self, exc: BaseException | str) -> bool:
        """Count a failed read. True when the meter is (now) faulted."""
        self._bad(str(exc))
        return self.faulted

    # -- state -------------------------------------------------------------------------
    def _answered(self) -> None:
        if self.faulted:
            log.info("meter: answering again, fault cleared")
        self.failures = 0
        self.faulted = False
        self.fault_text = None

    def _bad(self, text: str) -> None:
        self.failures += 1
        if self.failures >= self.max_failures and not self.faulted:
            self.faulted = True
            self.fault_text = text
            log.error("meter: fault after %d consecutive failures: %s", self.failures, text)

    def seed(self, energy_wh: int, taken_at: float) -> None:
        """Start from a known register value (e.g. the journal's last reading) instead of
        waiting for a confirming reading. A later smaller value will be rejected."""
        self.last = MeterReading(energy_wh=energy_wh, taken_at=taken_at)
        self._candidate = None
