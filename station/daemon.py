"""The composition root: config in, a running station out.

`Station` builds the hardware ports (real, or emulated in `hardware.mode =
"sim"`), opens the journal, closes what a power cut left open, starts the
backend and the deliverer, then tells systemd it is READY. `station run`,
`station simulate` and the end-to-end tests all use it, so what is tested is
what runs on the Pi.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

from station import backends, security
from station.clock import Clock
from station.config import Config
from station.core.charger import Charger
from station.core.delivery import Deliverer
from station.core.ports import Backend, Hardware
from station.errors import StationError
from station.hardware.factory import build_hardware
from station.notify import Notifier
from station.store import Store

log = logging.getLogger(__name__)

EXIT_RESET = 75  # EX_TEMPFAIL: systemd's Restart=on-failure brings the station back after a Reset


class Station:
    def __init__(self, config: Config, *, clock: Clock | None = None, notifier: Notifier | None = None,
                 backend: Backend | None = None, embedded: Any = None) -> None:
        self.config = config
        self.embedded = embedded  # a backend server the simulator runs in-process (the demo's MCSP server)
        self.clock = clock or Clock()
        self.notifier = notifier or Notifier()
        self._backend_override = backend
        self.world: Any = None
        self.hardware: Hardware | None = None
        self.store: Store | None = None
        self.backend: Backend | None = None
        self.charger: Charger | None = None
        self.deliverer: Deliverer | None = None
        self.status_page: Any = None  # station.statuspage.StatusPage when status_page.enabled
        self._tasks: list[asyncio.Task] = []
        self.started_at = time.monotonic()
        self.ready_after: float | None = None

    async def start(self) -> None:
        cfg = self.config
        security.check_at_start(cfg)  # tag masking in logs; warns about readable secrets
        if cfg.hardware.mode == "sim":
            from station.sim.world import SimWorld

            self.world = await SimWorld.create(cfg, embedded=self.embedded)
        self.hardware = await build_hardware(cfg, self.world)
        self.store = Store.open(cfg.station.state_dir)
        self.backend = self._backend_override or backends.create(cfg, self.store)
        self.charger = Charger(cfg, self.hardware, self.store, self.backend, self.clock)
        self.deliverer = Deliverer(self.store, self.backend, self.clock, on_result=self.charger.on_delivery)
        self.charger.deliverer = self.deliverer
        if self.world is not None:
            self.world.bind(self)
        await self.charger.start()
        await self.backend.start(self.charger)
        self._tasks.append(asyncio.create_task(self.deliverer.run(), name="deliverer"))
        interval = self.notifier.watchdog_interval
        if interval:
            self._tasks.append(asyncio.create_task(self._watchdog(interval), name="watchdog"))
        self._tasks.append(asyncio.create_task(self._status_lines(), name="status"))
        if cfg.status_page.enabled:
            from station.statuspage import StatusPage

            self.status_page = StatusPage(self)
            await self.status_page.start()  # never raises: the station charges without its page
        self.ready_after = time.monotonic() - self.started_at
        self.notifier.ready(self.status_line())
        log.info("station %s ready in %.2f s (%s hardware, %s backend)", cfg.station.name, self.ready_after,
                 cfg.hardware.mode, cfg.backend.kind)

    def status_line(self) -> str:
        c = self.charger
        if c is None:
            return "starting"
        parts = [c.state.value]
        if c.faults:
            parts.append("fault: " + ", ".join(f.text for f in c.faults.values()))
        parts.append("online" if c.online else "offline")
        if self.store is not None:
            try:
                pending = self.store.pending_messages()
            except StationError:
                pending = -1
            if pending:
                parts.append(f"{pending} queued")
        return " | ".join(parts)

    async def _watchdog(self, interval: float) -> None:
        # From the event loop on purpose: if the loop hangs, systemd stops hearing from us.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    async def _status_lines(self) -> None:
        last = ""
        while True:
            await asyncio.sleep(2.0)
            line = self.status_line()
            if line != last:
                self.notifier.status(line)
                last = line

    async def stop(self, graceful: bool = True) -> None:
        """Stop the station. Graceful: a running session is ended (reason Reboot) and delivered
        if the backend is reachable within a moment. `graceful=False` imitates a power cut for
        tests: tasks stop where they are, the journal keeps the session open."""
        self.notifier.stopping()
        if self.status_page is not None:
            await self.status_page.close()
        if graceful and self.charger is not None and self.charger.session is not None:
            await self.charger.stop_session("Reboot")
            await self.flush(timeout=3.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.charger is not None:
            await self.charger.close()
        if self.backend is not None:
            try:
                await self.backend.close()
            except Exception:
                log.exception("closing the backend")
        if self.hardware is not None:
            for closer in self.hardware.closers:
                try:
                    result = closer()
                    if asyncio.iscoroutine(result):
                        await result
                except Exception:
                    log.exception("closing hardware")
        if self.world is not None:
            await self.world.close()
        if self.embedded is not None:
            await self.embedded.close()
        if self.store is not None:
            self.store.close()

    async def flush(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything delivered) or the timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.store is None or self.store.pending_messages() == 0:
                return True
            await asyncio.sleep(0.05)
        return False

    async def run_forever(self) -> int:
        """Run until SIGTERM/SIGINT (exit 0) or a backend-ordered reset (EXIT_RESET)."""
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        assert self.charger is not None
        reset = asyncio.create_task(self.charger.exit_event.wait())
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({reset, stopped}, return_when=asyncio.FIRST_COMPLETED)
        reset.cancel()
        stopped.cancel()
        code = EXIT_RESET if self.charger.exit_request else 0
        await self.stop()
        return code
