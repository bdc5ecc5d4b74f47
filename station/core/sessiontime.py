"""A session's times: the monotonic clock for its duration, the station's clock for its dates.

Theory of operation
-------------------
A session's start and stop are stamped by the clock (station/clock.py), and
each also keeps its monotonic reference in the session's `extra`:

    start_mono, stop_mono   "<boot>:<seconds>" of the start and the stop
    duration_s              the stop minus the start on the monotonic clock (same boot only)
    started_at_was          a start the stop corrected (below), as it was first journaled
    time_estimated          ["start"], ["stop"] or both: times that are estimates, not the clock's

At a stop in the same boot, the duration is the monotonic difference, always.
If the clock's mapping changed during the session (NTP stepped a synchronized
clock, a backend corrected it), the two stamps no longer differ by the
duration; `reconcile` makes them agree without breaking the journal's order:

* the clock moved forward: the start is re-derived, stop minus duration. It
  lands after the start first journaled, so after everything before it;
* the clock moved back: the start stays and the stop becomes start plus
  duration; the clock holds later stamps at least there (Clock.hold), so the
  next session cannot start before this one ended. Times held that way
  (more than TOLERANCE_S) are marked estimated.

A stop in another boot (after a power cut) has no duration: its time is the
restart's, marked estimated, and never before the start. Monotonic stamps
(clock unknown at the event) are resolved once the clock is known in the same
boot (`resolve`, `sweep`): both ends then share one mapping, so the duration
and the order hold.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from station.clock import MONO_PREFIX, Clock, duration_between, iso, parse_iso, parse_mono
from station.core.model import Session

if TYPE_CHECKING:  # types only: the composition root hands the instances in (no import cycle)
    from station.store import Store

log = logging.getLogger(__name__)

TOLERANCE_S = 0.5  # stamps and duration may disagree by this (millisecond stamps, readings apart)


def _mono(stamp: str | None) -> bool:
    return stamp is not None and stamp.startswith(MONO_PREFIX)


def _this_boot(stamp: str | None, clock: Clock) -> bool:
    """A monotonic stamp of this boot (it can be resolved once the clock is known)."""
    return stamp is not None and stamp.startswith(MONO_PREFIX) and parse_mono(stamp)[0] == clock.boot


def start(clock: Clock) -> tuple[str, dict[str, Any]]:
    """The start's stamp and the facts for `extra`."""
    stamp = clock.stamp()
    facts: dict[str, Any] = {"start_mono": clock.reference()}
    if clock.last_hold_s > TOLERANCE_S:
        facts["time_estimated"] = ["start"]
    return stamp, facts


def reconcile(started_at: str | None, stopped_at: str | None, duration_s: float) -> tuple[str | None, str | None]:
    """Start and stop that differ by the duration: the start re-derived if the clock moved forward
    during the session, the stop moved if it moved back. Monotonic stamps are left as they are."""
    if started_at is None or stopped_at is None or _mono(started_at) or _mono(stopped_at):
        return started_at, stopped_at
    try:
        s, e = parse_iso(started_at), parse_iso(stopped_at)
    except ValueError:
        return started_at, stopped_at
    span = (e - s).total_seconds()
    if abs(span - duration_s) <= TOLERANCE_S:
        return started_at, stopped_at
    if span > duration_s:
        return iso(e - timedelta(seconds=duration_s)), stopped_at
    return started_at, iso(s + timedelta(seconds=duration_s))


def stop(clock: Clock, session: Session) -> tuple[str, str | None, dict[str, Any]]:
    """(stopped_at, the start if it changed, facts for `extra`) at a stop in this process."""
    stopped_at = clock.stamp()
    held = clock.last_hold_s > TOLERANCE_S
    ref = clock.reference()
    facts: dict[str, Any] = {"stop_mono": ref}
    started_at: str | None = clock.resolve(session.started_at) or session.started_at
    duration = duration_between(session.extra.get("start_mono"), ref)
    marked = set(session.extra.get("time_estimated") or ())
    if held:
        marked.add("stop")
    if duration is not None:
        facts["duration_s"] = round(duration, 3)
        new_start, new_stop = reconcile(started_at, stopped_at, duration)
        if new_start != started_at:  # re-derived from the stop: as good as the stop
            facts["started_at_was"] = started_at
            log.info("session %d: the clock moved forward during the session; start re-derived from its "
                     "duration (%.0f s): %s (was %s)", session.id, duration, new_start, started_at)
            marked = marked - {"start"} | ({"start"} if "stop" in marked else set())
        if new_stop is not None and new_stop != stopped_at:  # derived from the start: as good as the start
            log.info("session %d: the clock moved back during the session; stop kept after the start by its "
                     "duration (%.0f s): %s (the clock said %s)", session.id, duration, new_stop, stopped_at)
            clock.hold(new_stop)
            stopped_at = new_stop
            marked = marked - {"stop"} | ({"stop"} if "start" in marked else set())
        started_at = new_start
    else:
        stopped_at = not_before(started_at, stopped_at)
    if marked:
        facts["time_estimated"] = sorted(marked)
    return stopped_at, (started_at if started_at != session.started_at else None), facts


def recovered(clock: Clock, session: Session) -> tuple[str, dict[str, Any]]:
    """The stop of a session a power cut (or a dead loop) left open: now, which is later than the
    real end, so estimated; never before the start."""
    stopped_at = not_before(session.started_at, clock.stamp())
    marked = set(session.extra.get("time_estimated") or ()) | {"stop"}
    return stopped_at, {"stop_mono": clock.reference(), "time_estimated": sorted(marked)}


def not_before(started_at: str | None, stopped_at: str) -> str:
    """A stop is never before its start (ISO stamps only: monotonic ones are resolved together)."""
    if started_at is None or _mono(started_at) or _mono(stopped_at):
        return stopped_at
    try:
        return stopped_at if parse_iso(stopped_at) >= parse_iso(started_at) else started_at
    except ValueError:
        return stopped_at


def resolve(clock: Clock, session: Session, wait: bool) -> tuple[str, str | None] | None:
    """The session's times with the monotonic stamps of this boot resolved and reconciled with its
    duration; None while one of them must wait for the clock (`wait`: the backend sends times and
    can tell the time). A stamp of an earlier boot stays as it is: it can never be resolved."""
    started: str = clock.resolve(session.started_at) or session.started_at
    stopped: str | None = clock.resolve(session.stopped_at) or session.stopped_at
    if wait and (_this_boot(started, clock) or _this_boot(stopped, clock)):
        return None
    duration = session.extra.get("duration_s")
    if isinstance(duration, (int, float)):
        new_start, new_stop = reconcile(started, stopped, float(duration))
        started = new_start or started
        if new_stop is not None and new_stop != stopped:
            clock.hold(new_stop)
            stopped = new_stop
    return started, stopped


def settle(store: Store, clock: Clock, session: Session, wait: bool) -> bool:
    """Write the resolved times of `session` (and onto the object). False: wait for the clock."""
    times = resolve(clock, session, wait)
    if times is None:
        return False
    started, stopped = times
    if (started, stopped) != (session.started_at, session.stopped_at):
        store.update_times(session.id, started, stopped)
        session.started_at, session.stopped_at = started, stopped
    return True


def sweep(store: Store, clock: Clock) -> int:
    """Resolve every monotonic stamp of this boot in the journal (once the clock is known): the
    sessions a backend that sends no times (local) took as they were. Returns how many changed."""
    changed = 0
    for s in store.sessions():
        if _this_boot(s.started_at, clock) or _this_boot(s.stopped_at, clock):
            before = (s.started_at, s.stopped_at)
            settle(store, clock, s, wait=False)
            changed += (s.started_at, s.stopped_at) != before
    if changed:
        log.info("clock known: %d session(s) of this boot dated", changed)
    return changed


def estimated_times(session: Session) -> list[str]:
    """Which of the session's times are estimates: "start", "stop"."""
    marked = set(session.extra.get("time_estimated") or ())
    for name, stamp in (("start", session.started_at), ("stop", session.stopped_at)):
        if _mono(stamp):
            marked.add(name)
    return [n for n in ("start", "stop") if n in marked]
