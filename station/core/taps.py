"""Taps and reader faults: from the RFID reader's worker thread into the event loop, one at a time.

The reader's worker thread must never touch the charger: it posts what it saw
into this inbox (thread-safe, through the event loop), and one task hands the
items, in order, to the shell (`take(kind, value)`), which turns them into
events for the connector machine. What a tap means is the machine's to decide
(station/core/connector.py); `take` returns once the tap is handled to its end
(authorization included), so two quick taps never race. The task wakes every
few seconds even when nothing comes, to report to the supervisor that it lives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

WAIT_S = 5.0


class TapInbox:
    def __init__(self, take: Callable[[str, Any], Awaitable[None]]) -> None:
        self._take = take
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

    async def run(self, checkpoint: Callable[[str], Awaitable[None]]) -> None:
        while True:
            await checkpoint("events")
            try:
                async with asyncio.timeout(WAIT_S):  # wake now and then to report progress
                    kind, value = await self._queue.get()
            except TimeoutError:
                continue
            try:
                await self._take(kind, value)
            except Exception:
                log.exception("handling %s failed", kind)
