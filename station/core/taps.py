"""Taps and reader faults: from the RFID reader's worker thread into the event loop, one at a time.

The reader's worker thread must never touch the charger: it posts what it saw
into this inbox (thread-safe, through the event loop), and one task takes the
items in order. A tap is handled to its end (authorization included) before
the next one, so two quick taps never race. The task wakes every few seconds
even when nothing comes, to report to the supervisor that it lives.

What a tap means depends on the moment: in a session, the same card (or one
of its group) stops it and any other is told so; waiting for the plug, the
same card cancels; at a reserved connector only the reserved card (or its
group) may start; Unavailable and Faulted say why not; else it is a request
to charge.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from station import privacy
from station.core.states import IN_SESSION, State
from station.core.tags import format_uid, normalize_tag

if TYPE_CHECKING:
    from station.core.charger import Charger

log = logging.getLogger(__name__)

WAIT_S = 5.0


class TapInbox:
    def __init__(self, charger: Charger) -> None:
        self.charger = charger
        self._queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    # ------------------------------------------------------------------ from the reader's thread
    def tap_from_thread(self, uid: bytes) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ("tap", uid))

    def fault_from_thread(self, text: str | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ("reader", text))

    # ------------------------------------------------------------------ in the loop
    def put_tag(self, id_tag: str) -> None:
        """A tap by id tag (scenarios with UIDs no ISO 14443 card has)."""
        self._queue.put_nowait(("tag", id_tag))

    def empty(self) -> bool:
        return self._queue.empty()

    def format(self, uid: bytes) -> str:
        r = self.charger.config.rfid
        return format_uid(uid, r.uid_case, r.uid_separator, r.uid_byte_order)

    async def run(self) -> None:
        while True:
            await self.charger.supervisor.checkpoint("events")
            try:
                async with asyncio.timeout(WAIT_S):  # wake now and then to report progress
                    kind, value = await self._queue.get()
            except TimeoutError:
                continue
            try:
                if kind == "tap":
                    await self.on_tag(self.format(value))
                elif kind == "tag":
                    await self.on_tag(value)
                elif kind == "reader":
                    self.charger.on_reader_fault(value)
            except Exception:
                log.exception("handling %s failed", kind)

    # ------------------------------------------------------------------ what a tap means
    async def on_tag(self, tag: str) -> None:
        c = self.charger
        log.info("tap %s in %s", privacy.tag(tag), c.state.value)
        c.note(f"tap {tag}")
        try:
            await self._handle(tag)
        finally:
            c.taps += 1

    async def _handle(self, tag: str) -> None:
        c = self.charger
        if c.busy:
            return
        if c.state in IN_SESSION:
            if await self._may_stop(tag):
                await c.stop("Local", id_tag=tag)
            else:
                c.notice("other_card")
            return
        if c.waiting is not None:  # accepted, waiting for the plug: the same card again cancels
            session, _ = c.waiting
            if normalize_tag(tag) == normalize_tag(session.id_tag):
                c.cancel_waiting("cancelled")
            return
        if c.state is State.UNAVAILABLE:
            c.notice("unavailable")
            return
        if c.state is State.FAULTED:
            c.notice("faulted", reason=c.fault_reason())
            return
        if c.state is State.FINISHING:
            return
        if c.reservation is not None and not await c.reservation.admits(tag, c.backend.parent_of):
            c.notice("reserved")
            return
        await c.authorize(tag)

    async def _may_stop(self, tag: str) -> bool:
        """The card that started, or one of the same group (OCPP parentIdTag)."""
        s = self.charger.session
        assert s is not None
        if normalize_tag(tag) == normalize_tag(s.id_tag):
            return True
        if s.parent_id:
            parent = await self.charger.backend.parent_of(tag)
            return parent is not None and normalize_tag(parent) == normalize_tag(s.parent_id)
        return False
