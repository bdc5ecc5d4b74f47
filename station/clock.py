"""Wall-clock time for a machine without a battery clock.

A Pi boots with the clock at the last shutdown (fake-hwclock, days old) or at
1970, until NTP (systemd-timesyncd, chrony) or a backend tells the time; NTP
may then step the clock by days, or back by an hour. The station's own time
therefore rests on the monotonic clock, which is never stepped:

    real time = base + monotonic()

and `base` comes from one source at a time, the best one known:

1. "system": the kernel says the system clock is synchronized (adjtimex(2),
   read-only: its maximum error is below 16 s, which is what `timedatectl`
   shows as "System clock synchronized"; both systemd-timesyncd and chrony
   keep it up to date). The clock then follows the system clock, steps
   included. If the kernel stops saying so (no NTP answer for hours), the
   last base is kept.
2. "backend": a backend's time (MCSP `Time`, OCPP `currentTime`), anchored to
   the monotonic clock when it was received. A later step of the system clock
   cannot count a second time: the base does not read the system clock at
   all. When the kernel becomes synchronized later, the clock switches to it
   (the one correction counted once) and says so in the log.
3. None: the time is not known. The system clock is then only an estimate,
   and events are stamped with a monotonic reference carrying it,
   "mono:<boot>:<seconds>~<estimate>", which `resolve()` turns into the real
   time once the clock is known in the same boot (the monotonic clock restarts
   at a boot), and which shows as an estimate if it never is.

Steps are detected, whatever the source: the system clock minus the monotonic
clock moving by more than STEP_S (plus what NTP may slew in the time between
two readings) is a step, logged once with its size.

Stamps never go backwards: a stamp is at least the previous one, so the journal
keeps its order when a correction moves the time back. A backend's time with a
resolution of one second (MCSP `Time` has no fraction) corrects the clock only
when the station's time lies outside what that time allows:
[Time, Time + resolution + the request's round trip].

Nothing is trusted before BUILD_FLOOR (this release cannot run before it was
built): not a backend with a 1970 clock, not a system clock "synchronized" to
1970. `station.system_clock` chooses how the system clock counts: "ntp" (the
kernel's state, above), "trusted" (a battery-backed RTC module; the simulator)
or "untrusted" (only a backend's time).
"""

from __future__ import annotations

import ctypes
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

BUILD_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
MONO_PREFIX = "mono:"
ESTIMATE_MARK = "~"  # in a monotonic stamp: what the system clock said then (an estimate)
STEP_S = 2.0  # system minus monotonic moving more than this (plus SLEW) between readings is a step
SLEW = 0.001  # NTP slews at most 500 ppm: a change slower than this is not a step
SYNC_CHECK_S = 5.0  # the kernel's state is read at most this often (a system call)
SYNCED_MAXERROR_US = 16_000_000  # the kernel's limit: a larger maximum error is "not synchronized"
DISAGREE_S = 60.0  # a backend whose time is this far from a synchronized system clock is logged
SYSTEM_CLOCK = ("ntp", "trusted", "untrusted")
TIMESYNCD_SYNCHRONIZED = Path("/run/systemd/timesync/synchronized")
_FRACTION = re.compile(r"T\d{2}:\d{2}:\d{2}\.(\d+)")


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "noboot"


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with millisecond precision and 'Z', as OCPP and MCSP want."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_at(epoch: float) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def resolution_of(text: str) -> float:
    """The resolution of an ISO time as written: 1 s without a fraction, 0.001 s with three digits."""
    m = _FRACTION.search(text)
    return 1.0 if m is None else 10.0 ** -len(m.group(1))


# ---------------------------------------------------------------------- the kernel's state
class _Timex(ctypes.Structure):
    # The head of struct timex (sys/timex.h); the rest of the kernel's structure is padding here.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("_rest", ctypes.c_byte * 256)]


_adjtimex: Callable[..., int] | None = None


def kernel_synchronized() -> bool:
    """What `timedatectl` calls "System clock synchronized": adjtimex(2) read-only (modes 0) and a
    maximum error below 16 s (systemd's own test; it ignores STA_UNSYNC, which chrony keeps set
    unless `rtcsync`). Where the call is refused (a sandbox that denies it), the file
    systemd-timesyncd touches at each synchronization; else False (not Linux)."""
    global _adjtimex
    try:
        if _adjtimex is None:
            # The process's own symbol table, not a path: libc's adjtimex (or a test's shim of it).
            _adjtimex = ctypes.CDLL(None, use_errno=True).adjtimex
        tx = _Timex()
        if _adjtimex(ctypes.byref(tx)) >= 0:
            return 0 <= tx.maxerror < SYNCED_MAXERROR_US
    except (OSError, AttributeError, ValueError):
        pass
    return TIMESYNCD_SYNCHRONIZED.exists()


def system_clock_policy(name: str) -> Callable[[], bool]:
    """`station.system_clock` as the clock's `synchronized` function."""
    if name == "trusted":
        return lambda: True
    if name == "untrusted":
        return lambda: False
    if name == "ntp":
        return kernel_synchronized
    raise ValueError(f"station.system_clock must be one of {', '.join(SYSTEM_CLOCK)}, not {name!r}")


# ---------------------------------------------------------------------- the clock
class Clock:
    """Injected everywhere time matters, so tests can control it (wall, monotonic, synchronized)."""

    def __init__(self, *, wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 synchronized: Callable[[], bool] = kernel_synchronized, boot: str | None = None) -> None:
        self._wall, self._mono, self._synchronized = wall, monotonic, synchronized
        self.boot = boot or _boot_id()
        self._base: float | None = None  # real = base + monotonic, once known
        self.source: str | None = None  # "system", "backend", or None (unknown: the system clock is an estimate)
        self._skew: float | None = None  # system minus monotonic at the last reading (step detection)
        self._skew_at = 0.0
        self._sync: tuple[float, bool] | None = None  # (monotonic, synchronized) of the last kernel reading
        self._last = -math.inf  # the latest stamp given: stamps never go back
        self.last_hold_s = 0.0  # how far the latest stamp was raised to keep the order
        self.steps = 0  # steps of the system clock seen
        self._disagree_logged = False
        # The event loop stamps; so does the loop watch's thread when the loop hangs (daemon._failed).
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ reading
    def monotonic(self) -> float:
        return self._mono()

    def _system_synced(self, mono: float, wall: float) -> bool:
        if self._sync is None or mono - self._sync[0] >= SYNC_CHECK_S or mono < self._sync[0]:
            self._sync = (mono, bool(self._synchronized()))
        return self._sync[1] and wall >= BUILD_FLOOR.timestamp()

    def _read(self) -> tuple[float, float]:
        """(system, monotonic) now: detects steps and follows a synchronized system clock."""
        with self._lock:
            return self._read_locked()

    def _read_locked(self) -> tuple[float, float]:
        wall, mono = self._wall(), self.monotonic()
        skew = wall - mono
        if self._skew is not None:
            moved = skew - self._skew
            if abs(moved) > STEP_S + SLEW * max(0.0, mono - self._skew_at):
                self.steps += 1
                self._sync = None  # NTP steps and synchronizes at once: ask the kernel again now
                synced = self._system_synced(mono, wall)
                follows = "following it (synchronized)" if synced else (
                    f"keeping the {self.source} time" if self._base is not None else "the time is not known yet")
                log.warning("clock: the system clock stepped by %+.1f s; %s", moved, follows)
        self._skew, self._skew_at = skew, mono
        if self._system_synced(mono, wall):
            if self.source != "system":
                self._adopt(skew, "system", "the system clock is synchronized (NTP)")
            else:
                self._base = skew
        return wall, mono

    def _adopt(self, base: float, source: str, why: str) -> float:
        """A new base; returns the correction (seconds) against the previous one or the estimate."""
        before = self._base if self._base is not None else self._skew
        correction = 0.0 if before is None else base - before
        was = self.source or "not known"
        self._base, self.source = base, source
        level = logging.INFO if abs(correction) > STEP_S or was != source else logging.DEBUG
        log.log(level, "clock: %s; time from %s (was %s), correction %+.3f s", why, source, was, correction)
        return correction

    @property
    def trusted(self) -> bool:
        """The time is known (from a synchronized system clock or a backend), not an estimate."""
        self._read()
        return self._base is not None

    @property
    def synchronized(self) -> bool:
        """The system clock is synchronized now (NTP, or trusted by configuration)."""
        wall, mono = self._read()
        return self._system_synced(mono, wall)

    def now(self) -> datetime | None:
        """The time, or None while it is not known."""
        _, mono = self._read()
        if self._base is None:
            return None
        return datetime.fromtimestamp(self._base + mono, UTC)

    def estimate(self) -> datetime:
        """The time if known, else what the system clock says."""
        wall, mono = self._read()
        return datetime.fromtimestamp(wall if self._base is None else self._base + mono, UTC)

    def reference(self) -> str:
        """This moment as "<boot>:<monotonic seconds>": durations within a boot are exact."""
        return f"{self.boot}:{self.monotonic():.3f}"

    # ------------------------------------------------------------------ stamps
    def stamp(self) -> str:
        """The time of an event now: ISO UTC, never before the previous stamp, or a monotonic
        reference (with the system clock's estimate) until the clock is known."""
        with self._lock:
            wall, mono = self._read()
            if self._base is None:
                self.last_hold_s = 0.0
                estimate = f"{ESTIMATE_MARK}{iso_at(wall)}" if wall >= BUILD_FLOOR.timestamp() else ""
                return f"{MONO_PREFIX}{self.boot}:{mono:.3f}{estimate}"
            t = self._base + mono
            self.last_hold_s = max(0.0, self._last - t)
            self._last = max(t, self._last)
            return iso_at(self._last)

    def hold(self, stamp: str) -> None:
        """No later stamp may be before this one (a stop moved forward to keep its duration)."""
        try:
            t = parse_iso(stamp).timestamp()
        except ValueError:
            return
        with self._lock:
            self._last = max(self._last, t)

    def resolve(self, stamp: str | None) -> str | None:
        """Turn a monotonic stamp into ISO time when possible; ISO stamps pass through.

        Returns None for a monotonic stamp that cannot be resolved yet (clock
        unknown) or ever (taken in an earlier boot: the caller keeps it).
        """
        if stamp is None or not stamp.startswith(MONO_PREFIX):
            return stamp
        boot, mono, _ = parse_mono(stamp)
        self._read()
        if self._base is None or boot != self.boot or mono is None:
            return None
        return iso_at(self._base + mono)

    def estimate_of(self, stamp: str | None) -> str | None:
        """The best time for a stamp: resolved if possible, else the estimate (for this boot, on the
        system clock's current reading, so that durations and order hold; for an earlier boot, the
        estimate the stamp carries). None when there is none. Reads without side effects (the
        status page calls it from a worker thread)."""
        if stamp is None or not stamp.startswith(MONO_PREFIX):
            return stamp
        boot, mono, carried = parse_mono(stamp)
        if boot == self.boot and mono is not None:
            base = self._base if self._base is not None else self._wall() - self.monotonic()
            if base + mono >= BUILD_FLOOR.timestamp():
                return iso_at(base + mono)
        return carried

    # ------------------------------------------------------------------ a backend tells the time
    def set(self, utc: str | datetime, *, round_trip_s: float = 0.0) -> float:
        """A backend tells the time, read by it during a request that took `round_trip_s`.

        Returns the correction applied, in seconds (0.0 when the station's time already fits, or
        when a synchronized system clock is kept). Raises ValueError for a time before BUILD_FLOOR.
        """
        real = parse_iso(utc) if isinstance(utc, str) else utc
        if real < BUILD_FLOOR:
            raise ValueError(f"refusing a clock before {BUILD_FLOOR.date()}: {utc}")
        resolution = resolution_of(utc) if isinstance(utc, str) else 0.0
        with self._lock:
            return self._set(low=real.timestamp(), resolution=resolution, round_trip_s=round_trip_s)

    def _set(self, low: float, resolution: float, round_trip_s: float) -> float:
        wall, mono = self._read()
        high = low + resolution + max(0.0, round_trip_s)
        current = wall if self._base is None else self._base + mono
        if self._system_synced(mono, wall):
            off = max(low - current, current - high, 0.0)
            if off > DISAGREE_S and not self._disagree_logged:
                self._disagree_logged = True
                log.warning("clock: the backend's time is %.0f s away from the synchronized system clock; "
                            "keeping the system clock", off)
            return 0.0
        if low <= current <= high:
            if self._base is None:  # the estimate fits what the backend says: it becomes the time
                return self._adopt(current - mono, "backend", "the backend's time confirms the system clock")
            return 0.0
        target = (low + high) / 2 if self._base is None else min(max(current, low), high)
        return self._adopt(target - mono, "backend", "the backend tells the time")


def parse_mono(stamp: str) -> tuple[str, float | None, str | None]:
    """(boot, monotonic seconds, carried estimate) of "mono:<boot>:<seconds>[~<estimate>]"."""
    boot, _, rest = stamp[len(MONO_PREFIX):].partition(":")
    seconds, _, carried = rest.partition(ESTIMATE_MARK)
    try:
        mono: float | None = float(seconds)
    except ValueError:
        mono = None
    return boot, mono, carried or None


def duration_between(start_ref: str | None, stop_ref: str | None) -> float | None:
    """Seconds between two references of the same boot; None across a boot (or without both)."""
    if not start_ref or not stop_ref:
        return None
    b1, _, m1 = start_ref.partition(":")
    b2, _, m2 = stop_ref.partition(":")
    if b1 != b2:
        return None
    try:
        return float(m2) - float(m1)
    except ValueError:
        return None

