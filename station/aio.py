"""Small asyncio helpers shared by the backends and servers."""

from __future__ import annotations

import asyncio
import signal
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel `tasks` (None entries are skipped) and wait until every one has ended.

    What the tasks raise on the way out is not the caller's concern (the
    supervisor logs a task that failed); it is retrieved here so asyncio does
    not report it as never retrieved. Unlike the `try: await task / except
    (CancelledError, Exception): pass` block this replaces, a cancellation of
    the *caller* while it waits still propagates.
    """
    pending = [t for t in tasks if t is not None and t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()


def stop_on_signals(stop: asyncio.Event, *signals: signal.Signals) -> None:
    """Set `stop` when one of `signals` (default SIGTERM and SIGINT) arrives, where the loop
    can handle signals (not on Windows, not outside the main thread)."""
    loop = asyncio.get_running_loop()
    for sig in signals or (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
