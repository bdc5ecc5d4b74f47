"""Status reports to the backend: each change once, one at a time, in the order it happened.

Status is best effort (the backend re-sends the current one on reconnect),
so nothing here is journaled; what matters is that a central system never
sees the same status twice in a row nor two changes out of order.
"""

from __future__ import annotations

import asyncio
import logging

from station.core.model import StatusReport
from station.core.ports import Backend

log = logging.getLogger(__name__)


class StatusReporter:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._queue: asyncio.Queue[StatusReport] = asyncio.Queue()
        self._last: tuple[object, ...] = ()

    def report(self, report: StatusReport) -> None:
        key = (report.status, report.error_code, report.info, report.vendor_error_code)
        if key != self._last:
            self._last = key
            self._queue.put_nowait(report)

    async def run(self) -> None:
        while True:
            report = await self._queue.get()
            try:
                await self.backend.send_status(report)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # best effort: the backend re-sends the current one on reconnect
                log.debug("status not sent: %s", exc)
