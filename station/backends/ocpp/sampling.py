"""The meter-value clocks: sampled during a transaction, clock-aligned always (both OCPP versions).

Theory of operation
-------------------
One task (`MeterClock.run`) keeps the clocks a version asks for (`Tick`):

* sampled: every `interval_s` counted from the start of the transaction,
  only while one runs (1.6 MeterValueSampleInterval; 2.0.1
  SampledDataCtrlr.TxUpdatedInterval and TxEndedInterval);
* aligned: at every multiple of `interval_s` counted from midnight UTC,
  stamped with the aligned instant itself (1.6 ClockAlignedDataInterval;
  2.0.1 AlignedDataCtrlr.Interval and TxEndedInterval).

When one is due it calls the version back (`ClockHost.tick`) with its name,
the running session (None outside a transaction) and the timestamp; what is
read and where it goes (the outbox, a sample kept for the transaction's end,
a direct MeterValues) is the version's business.

The task sleeps until the next tick is due; nothing is polled. It is woken
when the core reports a state change (a transaction starts or ends with one)
and when an interval changes (the clocks start over); without a transaction
and without aligned clocks it wakes every IDLE_S only. When the running
session changes it tells the version (`transaction_ended`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from station.clock import iso

from . import metering
from .link import sleep_or_event

if TYPE_CHECKING:
    from station.clock import Clock
    from station.core.model import Session

log = logging.getLogger(__name__)

STOP_SAMPLES_MAX = 32  # samples kept per transaction for its end (1.6 transactionData, 2.0.1 Ended meterValue)
IDLE_S = 300.0  # nothing due: look again after this long anyway


@dataclass(frozen=True)
class Tick:
    name: str
    aligned: bool  # True: from midnight UTC, always; False: from the transaction start, during one
    interval_s: float  # already scaled; 0 = off


class ClockHost(Protocol):
    @property
    def clock(self) -> Clock: ...

    def active_session(self) -> Session | None: ...

    def now(self) -> datetime: ...

    def ticks(self) -> list[Tick]: ...

    async def tick(self, name: str, session: Session | None, stamp: str) -> None: ...

    def transaction_ended(self) -> None: ...


class MeterClock:
    def __init__(self, host: ClockHost) -> None:
        self.b = host
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        session_id: int | None = None
        started = 0.0
        due: dict[str, float | datetime] = {}
        ticks: list[Tick] = []
        while True:
            self._wake.clear()  # a wake from here on is seen: the next sleep returns at once
            wait = IDLE_S
            try:
                session = self.b.active_session()
                mono = time.monotonic()
                if (session.id if session else None) != session_id:
                    if session_id is not None:
                        self.b.transaction_ended()
                    session_id = session.id if session else None
                    started = mono
                    due = {t.name: d for t, d in ((t, due.get(t.name)) for t in ticks) if t.aligned and d is not None}
                now_ticks = self.b.ticks()
                if now_ticks != ticks:  # changed: start the clocks over
                    ticks, due = now_ticks, {}
                for t in ticks:
                    wait = min(wait, await self._one(t, session, started, due))
            except Exception:
                log.exception("meter values: sampling failed")
            await sleep_or_event(self._wake, max(0.0, wait))

    async def _one(self, t: Tick, session: Session | None, started: float, due: dict[str, float | datetime]) -> float:
        """Run one clock if it is due; the seconds until it is due next (IDLE_S: never)."""
        if t.interval_s <= 0:
            due.pop(t.name, None)
            return IDLE_S
        if t.aligned:
            now = self.b.now()
            at = due.get(t.name)
            if not isinstance(at, datetime):
                at = due[t.name] = metering.next_aligned(now, t.interval_s)
            if now >= at:
                due[t.name] = metering.next_aligned(now, t.interval_s)
                await self.b.tick(t.name, session, iso(at))
            nxt = due[t.name]
            assert isinstance(nxt, datetime)
            return (nxt - self.b.now()).total_seconds()
        if session is None:
            due.pop(t.name, None)
            return IDLE_S
        mono = time.monotonic()
        when = due.get(t.name)
        if not isinstance(when, float):
            when = due[t.name] = metering.next_sampled(started, mono, t.interval_s)
        if mono >= when:
            due[t.name] = metering.next_sampled(started, mono, t.interval_s)
            await self.b.tick(t.name, session, self.b.clock.stamp())
        left = due[t.name]
        assert isinstance(left, float)
        return left - time.monotonic()
