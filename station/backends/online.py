"""What the MCSP and evcs-serial backends share about their link state."""

from __future__ import annotations

import asyncio

from station.core.ports import Backend


class OnlineBackend(Backend):
    """A backend whose online state is mirrored in an event, so `wait_ready` waits for it
    instead of polling."""

    def __init__(self) -> None:
        super().__init__()
        self._ready = asyncio.Event()

    def _set_online(self, online: bool) -> None:
        if online:
            self._ready.set()
        else:
            self._ready.clear()
        super()._set_online(online)

    async def wait_ready(self, timeout: float) -> bool:
        """True once the link is up, False if it is not within `timeout` s."""
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancellation on 3.11
                await self._ready.wait()
        except TimeoutError:
            pass
        return self.online
