"""Wall-clock time for a machine without a battery clock.

A Pi boots with the clock at the last shutdown (fake-hwclock) or at 1970
until NTP or a backend tells the time. Timestamps in the journal must never
be wrong by years, and nothing may carry a 1970 date on the wire.

Rule: the system clock is trusted once it is later than BUILD_FLOOR (this
release cannot run before it was built) or once a backend has set the time.
A backend's time overrides the system clock through an offset, since the
station runs unprivileged and cannot set the system clock itself. Until the
clock is trusted, events are stamped with a monotonic reference
("mono:<boot>:<seconds>"); `resolve()` turns such a stamp into real time
once the clock is known, as long as it was taken during this boot.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

BUILD_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
MONO_PREFIX = "mono:"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "noboot"


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and 'Z', as OCPP and MCSP want."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


class Clock:
    """Injected everywhere time matters, so tests can control it."""

    def __init__(self) -> None:
        self.boot = _boot_id()
        self._offset: float | None = None  # set by a backend: real = time.time() + offset

    def monotonic(self) -> float:
        return time.monotonic()

    @property
    def trusted(self) -> bool:
        return self._offset is not None or datetime.now(UTC) >= BUILD_FLOOR

    def set(self, utc: str | datetime) -> float:
        """A backend tells the time. Returns the correction applied, in seconds."""
        real = parse_iso(utc) if isinstance(utc, str) else utc
        if real < BUILD_FLOOR:
            raise ValueError(f"refusing a clock before {BUILD_FLOOR.date()}: {utc}")
        offset = real.timestamp() - time.time()
        previous = self._offset or 0.0
        self._offset = offset
        return offset - previous

    def now(self) -> datetime | None:
        if not self.trusted:
            return None
        return datetime.fromtimestamp(time.time() + (self._offset or 0.0), UTC)

    def stamp(self) -> str:
        """The time of an event now: ISO UTC, or a monotonic reference until the clock is known."""
        now = self.now()
        if now is None:
            return f"{MONO_PREFIX}{self.boot}:{time.monotonic():.3f}"
        return iso(now)

    def resolve(self, stamp: str | None) -> str | None:
        """Turn a monotonic stamp into ISO time when possible; ISO stamps pass through.

        Returns None for a monotonic stamp that cannot be resolved yet (clock
        unknown) or ever (taken in an earlier boot: the caller keeps it).
        """
        if stamp is None or not stamp.startswith(MONO_PREFIX):
            return stamp
        boot, _, mono = stamp[len(MONO_PREFIX):].partition(":")
        now = self.now()
        if now is None or boot != self.boot:
            return None
        return iso(now - timedelta(seconds=time.monotonic() - float(mono)))
