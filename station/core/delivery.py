"""The deliverer: hands queued transaction messages to the backend, in order.

One task, one message at a time, oldest first. A message leaves the queue
only when the backend confirmed it (or refused it for good); a backend that
is offline gets the same message again after a backoff, or as soon as it
reports its link up. Times still stamped with a monotonic reference (clock
unknown at the event) are resolved before delivery, so nothing leaves the
station with a wrong date.

A backend that did not process a message (no answer, an error) says when to
try again (RetryLater: the try is counted in the outbox, so the count
survives a restart); one that did not process it in all its tries gives it
up (Undeliverable): the message is *held*, out of the queue but kept with its
reason (Store.hold), so it never blocks the messages behind it, and the
session stays undelivered, visible to the operator, who can send it again
(`station sessions --resend ID`). Messages of a session whose START is held
are held behind it, so the session's order is kept when it is sent again.

The deliverer is a carrier, not a safety loop (station/supervisor.py). It
reports progress on every turn and while it pauses, and it bounds its wait
on the backend itself (`Backend.delivery_timeout_s`, declared to the
supervisor with `waiting`): a slow central system makes deliveries slow,
never the supervisor's deadline miss that would stop a charge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from station.backoff import Backoff
from station.clock import Clock
from station.core import sessiontime
from station.core.model import HELD, DeliveryResult, MessageKind, OutboxItem, Session
from station.core.ports import Backend
from station.errors import BackendOffline, RetryLater, StorageError, Undeliverable

if TYPE_CHECKING:  # types only: the composition root hands the instances in (no import cycle)
    from station.store import Store
    from station.supervisor import Supervisor

log = logging.getLogger(__name__)

BEHIND_START = "its session's START is held: it goes after that when sent again"


IDLE_WAKE_S = 15.0  # an idle deliverer still wakes this often, to report that it lives
DEADLINE_S = 180.0  # the supervisor's deadline between two turns (a delivery's wait is declared on top)
NAME = "deliverer"  # its name at the supervisor


class Deliverer:
    def __init__(self, store: Store, backend: Backend, clock: Clock,
                 on_result: Callable[[OutboxItem, DeliveryResult], None] | None = None,
                 backoff: Backoff | None = None,
                 checkpoint: Callable[[], Awaitable[None]] | None = None,
                 supervisor: Supervisor | None = None, deadline_s: float = DEADLINE_S) -> None:
        self.store, self.backend, self.clock = store, backend, clock
        self.on_result = on_result
        self.backoff = backoff or Backoff(initial=0.5, cap=30.0)
        self.checkpoint = checkpoint  # the supervisor's: this loop reports its progress there
        self.supervisor = supervisor  # told of the bounded waits on the backend
        self.pause_slice_s = min(IDLE_WAKE_S, deadline_s / 6)  # a long pause still reports progress
        self._wake = asyncio.Event()
        self.delivered = 0
        self._swept = False  # monotonic stamps of this boot dated once the clock is known
        self.held = 0

    def wake(self) -> None:
        """Something was queued, or the link came up: try now."""
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives in the same loop pass as wake(), and Station.stop() would hang.
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` whatever wakes us (TransactionMessageRetryInterval), reporting progress."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(left, self.pause_slice_s))
            if self.checkpoint is not None:
                await self.checkpoint()

    async def _deliver(self, item: OutboxItem, session: Session) -> DeliveryResult:
        """The backend's delivery, bounded by its own declared limit (then: offered again later)."""
        limit = self.backend.delivery_timeout_s
        waiting = self.supervisor.waiting(NAME, limit) if self.supervisor is not None else contextlib.nullcontext()
        try:
            with waiting:
                async with asyncio.timeout(limit):
                    return await self.backend.deliver(item, session)
        except TimeoutError:
            log.warning("%s of session %d: the backend gave no result within %.0f s; cancelled, offered again later",
                        item.kind.value, item.session_id, limit)
            raise BackendOffline(f"no result within {limit:.0f} s") from None

    async def run(self) -> None:
        while True:
            if self.checkpoint is not None:
                await self.checkpoint()
            self._sweep()
            try:
                item = self.store.next_message()
                session = self.store.find_session(item.session_id) if item is not None else None
            except StorageError as exc:
                log.error("%s", exc)
                await self._sleep(self.backoff.next())
                continue
            if item is None:
                await self._sleep(IDLE_WAKE_S)
                continue
            if session is None:
                # Its session row is gone (a journal salvaged after corruption): it can never be
                # delivered, and must not hold up every message behind it.
                log.error("%s of session %d: no such session in the journal; parked", item.kind.value, item.session_id)
                try:
                    self.store.park(item, "session row missing")
                except StorageError as exc:
                    log.error("%s", exc)
                    await self._sleep(self.backoff.next())
                continue
            if item.kind is not MessageKind.START and MessageKind.START.value in session.extra.get(HELD, {}):
                await self._hold(item, BEHIND_START)
                continue
            if not self._resolve_times(session):
                await self._sleep(5.0)  # wait for the clock
                continue
            try:
                result = await self._deliver(item, session)
            except RetryLater as exc:
                log.warning("%s of session %d not processed by the backend: %s; trying again in %.3g s",
                            item.kind.value, item.session_id, exc, exc.delay_s)
                try:
                    self.store.count_attempt(item.seq)
                except StorageError as err:
                    log.error("%s", err)
                await self._pause(exc.delay_s)
                continue
            except BackendOffline as exc:
                delay = self.backoff.next()
                log.debug("backend offline (%s); retrying message %d in %.1f s", exc, item.seq, delay)
                await self._sleep(delay)
                continue
            except Undeliverable as exc:
                await self._hold(item, str(exc))
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # a backend bug must not stop delivery of the rest forever
                log.exception("delivering %s of session %d failed", item.kind.value, item.session_id)
                try:
                    self.store.count_attempt(item.seq)
                except StorageError:
                    pass
                await self._sleep(self.backoff.next())
                continue
            try:
                self.store.confirm(item, result.backend_session_id, result.rejected)
            except StorageError as exc:
                # Delivered but not recorded: the message will be offered again, and
                # the backend's idempotency (session key) keeps it from billing twice.
                log.error("%s", exc)
                await self._sleep(self.backoff.next())
                continue
            if result.rejected:
                log.warning("backend refused %s of session %d for good: %s", item.kind.value, item.session_id, result.rejected)
            self.delivered += 1
            self.backoff.reset()
            if self.on_result is not None:
                self.on_result(item, result)

    async def _hold(self, item: OutboxItem, reason: str) -> None:
        """Out of the queue, kept undelivered with its reason for the operator (it never blocks the rest)."""
        try:
            self.store.hold(item, reason)
        except StorageError as exc:
            log.error("%s", exc)
            await self._sleep(self.backoff.next())
            return
        self.held += 1
        log.log(logging.INFO if reason == BEHIND_START else logging.ERROR,
                "%s of session %d is held undelivered: %s; `station sessions` lists it, `station sessions "
                "--resend %d` sends it again", item.kind.value, item.session_id, reason, item.session_id)

    def _resolve_times(self, session: Session) -> bool:
        """Date the session's monotonic stamps (station/core/sessiontime.py). A stamp of this boot
        waits for the clock (False: not yet) when the backend sends times and can tell the time;
        one of an earlier boot can never be dated and goes as it is, rather than never."""
        return sessiontime.settle(self.store, self.clock, session, wait=self.backend.tells_time)

    def _sweep(self) -> None:
        """Once the clock is known: date what went out undated (a backend that sends no times)."""
        if self._swept or not self.clock.trusted:
            return
        try:
            sessiontime.sweep(self.store, self.clock)
            self._swept = True
        except StorageError as exc:
            log.error("%s", exc)
