"""A stop never hangs (issue 22: "a stop once hung after closing the MCSP link").

After the backend's link is closed, a station's stop closes the hardware, the
emulation and an embedded backend server; the MCSP server's stop cancels its
connection tasks and waits for them. Each of those waits used to be unbounded,
so one task that swallowed its cancellation (Python 3.11's `wait_for` can lose
one; a handler that goes on awaiting in its `except CancelledError`) hung the
stop for ever. Each step is now bounded by a wait such a task cannot defeat
(station.aio.bounded, cancel_and_wait's timeout), and named in the log.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from station.servers.mcsp import McspServer
from tests.stations import running_station


class Stubborn:
    """Swallows the cancellations it gets, then waits until released: a step that will not end."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.swallowed = 0

    async def run(self) -> None:
        while not self.release.is_set():
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.swallowed += 1

    async def close(self) -> None:  # as an embedded server's close()
        await self.run()


@pytest.mark.timeout(40)  # before the fix: hung here for ever
async def test_a_station_stop_is_bounded_when_a_step_never_ends(tmp_path, monkeypatch, caplog):
    import station.daemon

    monkeypatch.setattr(station.daemon, "CLOSE_STEP_S", 1.0, raising=False)
    stubborn = Stubborn()
    try:
        with caplog.at_level(logging.ERROR):
            async with asyncio.timeout(60):
                async with running_station(tmp_path, embedded=stubborn):
                    pass  # the stop at the end of the block
        assert "closing the embedded backend server did not end within 1 s" in caplog.text
        await asyncio.sleep(0.05)
        assert stubborn.swallowed >= 1  # it was cancelled, and would have hung the stop
    finally:
        stubborn.release.set()


@pytest.mark.timeout(40)  # before the fix: hung here for ever
async def test_the_mcsp_server_stop_is_bounded_when_a_connection_task_swallows_its_cancellation(monkeypatch, caplog):
    import station.servers.mcsp.server as server_mod

    monkeypatch.setattr(server_mod, "STOP_S", 1.0, raising=False)
    server = McspServer(tags={"D64FC93B": "Apartment 2"})
    await server.start()
    stubborn = Stubborn()
    task = asyncio.get_running_loop().create_task(stubborn.run(), name="mcsp-client stubborn")
    server._clients[object()] = task  # type: ignore[index]
    await asyncio.sleep(0)
    try:
        with caplog.at_level(logging.ERROR):
            async with asyncio.timeout(60):
                await server.close()
        assert "1 task(s) did not end within 1 s of their cancellation: mcsp-client stubborn" in caplog.text
    finally:
        stubborn.release.set()
        await task
