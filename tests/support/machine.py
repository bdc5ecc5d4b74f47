"""An injected Pi for the clock's tests: a system clock that NTP or an operator steps, a monotonic
clock that only runs, and the kernel's "synchronized" flag. `true` runs with the monotonic clock and
is never stepped, so expected values come from this bookkeeping, not from the clock under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from station.clock import Clock, iso

TRUE_START = datetime(2026, 5, 4, 12, 0, 0, tzinfo=UTC)
DAY = 86400.0


class Machine:
    """A Pi: `true` is the real time; the system clock starts `wall_error` off and can be stepped."""

    def __init__(self, wall_error: float = 0.0, synced: bool = False) -> None:
        self.mono = 500.0
        self.true0 = TRUE_START.timestamp() - self.mono
        self.wall_offset = self.true0 + wall_error
        self.synced = synced
        self.kernel_reads = 0

    def wall(self) -> float:
        return self.mono + self.wall_offset

    def true(self) -> datetime:
        return datetime.fromtimestamp(self.mono + self.true0, UTC)

    def run(self, seconds: float) -> None:
        self.mono += seconds

    def step(self, seconds: float) -> None:
        self.wall_offset += seconds

    def synchronized(self) -> bool:
        self.kernel_reads += 1
        return self.synced

    def clock(self, boot: str = "boot1") -> Clock:
        return Clock(wall=self.wall, monotonic=lambda: self.mono, synchronized=self.synchronized, boot=boot)


def at(m: Machine, seconds: float = 0.0) -> str:
    """The true time (plus `seconds`) as a backend with a millisecond clock would say it."""
    return iso(m.true() + timedelta(seconds=seconds))
