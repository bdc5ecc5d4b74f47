"""The poll loop: the plug switch, the stop button, the contactor's auxiliary contact, the clock.

One loop reads the inputs and hands what changed to the shell (a `Sink`,
station/core/charger.py), which posts it to the connector machine: a plug
change, a stop button press (rising edge), a new verdict of the contactor
watch (faults.ContactorWatch: command against auxiliary contact), and a tick
for the machine's timers every turn. It decides nothing about the connector.

Its rate is the moment's (the sink says): every 50 ms while a session runs,
the contactor is closed, a command is settling or a car is being plugged in
(IEC 61851-1 wants power off within 100 ms when the EV asks); until the next
timer, at most four times a second, while one is due; once a second when the
station is idle with its contactor open (idle CPU is a budget). A state
change or a contactor command kicks it at once, so a change is never a
second old before it is looked at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from station.core.faults import ContactorVerdict, ContactorWatch
from station.core.ports import Contactor, Inputs

log = logging.getLogger(__name__)

FAST_S = 0.05
DUE_S = 0.25
IDLE_S = 1.0


class Sink(Protocol):
    """Where the poll loop's findings go (the shell)."""

    def plug_changed(self, plugged: bool | None) -> None: ...

    def stop_pressed(self) -> None: ...

    def contactor_checked(self, verdict: ContactorVerdict, followed: bool) -> None: ...

    def turned(self) -> None: ...

    def poll_interval(self, fast: float, due: float, idle: float) -> float: ...


class Poller:
    def __init__(self, inputs: Inputs, contactor: Contactor, settle_s: float, recover_s: float,
                 monotonic: Callable[[], float], sink: Sink) -> None:
        self.inputs, self.contactor, self.sink = inputs, contactor, sink
        self._now = monotonic
        self.plugged: bool | None = inputs.ev_connected()  # None: no plug switch wired
        self.stop_btn: bool | None = inputs.stop_pressed()
        self.watch = ContactorWatch(settle_s, recover_s)
        self._kicked = asyncio.Event()

    def kick(self) -> None:
        """Poll now (a state change or a contactor command: the next second is not soon enough)."""
        self._kicked.set()

    def interval(self) -> float:
        if self.contactor.closed or self.watch.unsettled:
            return FAST_S
        return self.sink.poll_interval(FAST_S, DUE_S, IDLE_S)

    async def run(self, checkpoint: Callable[[str], Awaitable[None]]) -> None:
        while True:
            await checkpoint("poll")
            self._kicked.clear()
            try:
                async with asyncio.timeout(self.interval()):
                    await self._kicked.wait()
            except TimeoutError:
                pass
            self.turn()

    def turn(self) -> None:
        self.read_inputs()
        self.watch_contactor()
        self.sink.turned()

    def read_inputs(self) -> None:
        plugged, btn = self.inputs.ev_connected(), self.inputs.stop_pressed()
        if plugged != self.plugged:
            self.plugged = plugged
            self.sink.plug_changed(plugged)
        if btn and not self.stop_btn:
            self.sink.stop_pressed()
        self.stop_btn = btn

    def watch_contactor(self) -> None:
        verdict = self.watch.observe(self.contactor.closed, self.contactor.feedback(), self._now())
        if verdict is not None:
            self.sink.contactor_checked(verdict, self.watch.followed)

    async def check_at_start(self, settle_s: float) -> None:
        """The contactor is commanded open at start; a contact that says closed gets its settle
        time once, then the station starts Faulted (no session may start on a welded contactor)."""
        self.watch_contactor()
        if self.contactor.feedback() not in (None, self.contactor.closed):
            await asyncio.sleep(settle_s)
            self.watch_contactor()
