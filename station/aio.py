"""Small asyncio helpers shared by the backends and servers."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, timeout: float | None = None) -> list[str]:
    """Cancel `tasks` (None entries are skipped) and wait until every one has ended, or at most
    `timeout` seconds; returns the names of those still running then (none without a timeout).

    What the tasks raise on the way out is not the caller's concern (the
    supervisor logs a task that failed); it is retrieved here so asyncio does
    not report it as never retrieved. Unlike the `try: await task / except
    (CancelledError, Exception): pass` block this replaces, a cancellation of
    the *caller* while it waits still propagates. With a `timeout`, a task that
    swallows its cancellation (Python 3.11's wait_for can lose one; a handler
    that goes on awaiting in its `except CancelledError`) cannot hang the
    caller: it is left behind, and named.
    """
    pending = [t for t in tasks if t is not None and t is not asyncio.current_task()]
    for task in pending:
        task.cancel()
    if not pending:
        return []
    done, stuck = await asyncio.wait(pending, timeout=timeout)
    for task in done:
        if not task.cancelled():
            task.exception()
    return sorted(t.get_name() for t in stuck)


async def bounded(aw: Awaitable[Any], timeout: float, what: str) -> bool:
    """Await `aw` as a task of its own for at most `timeout` seconds; True if it ended in time.

    For the steps of a shutdown: unlike `asyncio.timeout`, which cancels the awaiting task and so
    depends on the awaited code giving way, a step that swallows its cancellation or never ends
    is cancelled once and left behind (logged with `what`), and the shutdown goes on."""
    task: asyncio.Future[Any] = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.error("%s did not end within %.0f s; going on without it", what, timeout)
        task.cancel()
        return False
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %s", what, task.exception(), exc_info=task.exception())
    return True


def stop_on_signals(stop: asyncio.Event, *signals: signal.Signals) -> None:
    """Set `stop` when one of `signals` (default SIGTERM and SIGINT) arrives, where the loop
    can handle signals (not on Windows, not outside the main thread)."""
    loop = asyncio.get_running_loop()
    for sig in signals or (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
