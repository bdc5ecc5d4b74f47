"""station.aio: cancel_and_wait (tasks end, their errors are retrieved, the caller's own
cancellation is never swallowed) and stop_on_signals."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import pytest

from station.aio import cancel_and_wait, stop_on_signals


async def test_cancels_every_task_and_waits_for_its_cleanup():
    cleaned: list[str] = []

    async def loop(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits
            cleaned.append(name)

    tasks = [asyncio.create_task(loop(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks[0], None, tasks[1])
    assert sorted(cleaned) == ["a", "b"] and all(t.cancelled() for t in tasks)


async def test_a_task_that_fails_on_its_way_out_or_has_ended_is_fine_and_its_error_retrieved():
    async def fail_when_cancelled() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise RuntimeError("cleanup failed")

    reported: list[dict] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        failed = asyncio.create_task(fail_when_cancelled())
        ended = asyncio.create_task(asyncio.sleep(0))
        await asyncio.sleep(0.01)
        await cancel_and_wait(failed, ended)
        assert failed.done() and not failed.cancelled()  # it raised (not asked: that would retrieve it)
        await cancel_and_wait()
        del failed, ended
        gc.collect()  # an error never retrieved is reported when its task is collected
    finally:
        loop.set_exception_handler(None)
    assert reported == []


async def test_the_callers_cancellation_propagates():
    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(5)  # slow to end: the caller is cancelled while it waits

    victim = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_and_wait(victim))
    await asyncio.sleep(0.01)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim


async def test_stop_on_signals_sets_the_event():
    stop = asyncio.Event()
    stop_on_signals(stop, signal.SIGUSR1)  # not SIGTERM: the test process must live on
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        async with asyncio.timeout(10):
            await stop.wait()
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
