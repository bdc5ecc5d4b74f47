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
import os
import time
from collections.abc import Callable
from typing import Any

from station import backends, security
from station.aio import bounded, stop_on_signals
from station.clock import Clock, system_clock_policy
from station.config import Config
from station.configcheck import retired_keys
from station.core.charger import Charger
from station.core.control import Control
from station.core.delivery import DEADLINE_S as DELIVERER_DEADLINE_S
from station.core.delivery import NAME as DELIVERER
from station.core.delivery import Deliverer
from station.core.ports import Backend, Hardware
from station.errors import StationError, StorageError
from station.hardware.factory import build_hardware
from station.notify import Notifier
from station.store import Store
from station.supervisor import LoopWatch, Supervisor

log = logging.getLogger(__name__)

EXIT_RESET = 75  # EX_TEMPFAIL: systemd's Restart=on-failure brings the station back after a Reset
EXIT_FAILURE = 70  # EX_SOFTWARE: a loop of the station died or hung; systemd restarts it
LOOP_DEADLINE_S = 10.0  # the event loop itself must turn at least this often (LoopWatch)
CLOSE_STEP_S = 10.0  # each step of a stop (backend, hardware, emulation, embedded server) at most this long


class Station:
    def __init__(self, config: Config, *, clock: Clock | None = None, notifier: Notifier | None = None,
                 backend: Backend | None = None, embedded: Any = None) -> None:
        self.config = config
        self.embedded = embedded  # a backend server the simulator runs in-process (the demo's MCSP server)
        self.clock = clock or Clock(synchronized=system_clock_policy(config.station.system_clock))
        self.notifier = notifier or Notifier()
        self.supervisor = Supervisor(self.clock.monotonic)
        self.supervisor.on_failure = self._failed
        self._backend_override = backend
        self.world: Any = None
        self.hardware: Hardware | None = None
        self.store: Store | None = None
        self.backend: Backend | None = None
        self.charger: Charger | None = None
        self.control: Control | None = None
        self.deliverer: Deliverer | None = None
        self.failure: str | None = None  # why the station gave up (a loop died or hung)
        self._zeroing: asyncio.Task[Any] | None = None  # the charge controller's last 0 A (_current_off)
        self.done = asyncio.Event()  # set at a failure: run_forever() and the simulator end
        self.loop_watch: LoopWatch | None = None
        self.status_page: Any = None  # station.statuspage.StatusPage when status_page.enabled
        self.started_at = time.monotonic()
        self.ready_after: float | None = None

    async def start(self) -> None:
        cfg = self.config
        security.check_at_start(cfg)  # tag masking in logs; warns about readable secrets
        for finding in retired_keys(cfg):
            log.warning("%s: %s: %s", cfg.source, finding.key, finding.text)
        if cfg.hardware.mode == "sim":
            from station.sim.world import SimWorld

            self.world = await SimWorld.create(cfg, embedded=self.embedded)
        self.hardware = await build_hardware(cfg, self.world)
        self.store, reopen = self._open_journal()
        self.backend = self._backend_override or backends.create(cfg, self.store)
        self.charger = Charger(cfg, self.hardware, self.store, self.backend, self.clock, self.supervisor, reopen)
        self.charger.exit_event = self.done  # a backend-ordered reset ends run_forever() like a signal
        self.control = Control(self.charger)
        self.deliverer = Deliverer(self.store, self.backend, self.clock, on_result=self.charger.on_delivery,
                                   checkpoint=lambda: self.supervisor.checkpoint(DELIVERER),
                                   supervisor=self.supervisor, deadline_s=DELIVERER_DEADLINE_S)
        self.charger.deliverer = self.deliverer
        if self.world is not None:
            self.world.bind(self)
        await self.charger.start()
        await self.backend.start(self.control)
        # The deliverer and the backend's link only carry messages: restarted when they hang, never a
        # reason to open the contactor under a running charge (docs/safety.md, "The station's own loops").
        self.supervisor.on_restart = self._restarted
        self.supervisor.restartable(DELIVERER, self._spawn_deliverer)
        for name, respawn in self.backend.carriers().items():
            self.supervisor.restartable(name, respawn)
        self._spawn_deliverer()
        self.supervisor.spawn(self._supervise(), "supervise")
        if cfg.status_page.enabled:
            from station.statuspage import StatusPage

            self.status_page = StatusPage(self)
            await self.status_page.start()  # never raises: the station charges without its page
        self.ready_after = time.monotonic() - self.started_at
        self.notifier.ready(self.status_line())
        log.info("station %s ready in %.2f s (%s hardware, %s backend)", cfg.station.name, self.ready_after,
                 cfg.hardware.mode, cfg.backend.kind)
        if not self.clock.trusted:
            log.warning("clock: the system clock is not synchronized (station.system_clock = %s); session times are "
                        "estimates until NTP or the backend tells the time", cfg.station.system_clock)

    def _open_journal(self) -> tuple[Store, Callable[[], None] | None]:
        """The journal, for writing; when it cannot be (a read-only file system, a full disk), read-only:
        the station then runs degraded, refusing sessions and saying why, instead of exiting into a
        restart loop (docs/durability.md), with the way to open it for writing again. No journal at
        all, not even to read: that error stands."""
        state_dir = self.config.station.state_dir
        try:
            return Store.open(state_dir), None
        except StorageError as exc:
            from station.journalview import DegradedStore  # only then: memory is a budget

            log.error("%s; starting degraded: the journal is read-only, new sessions are refused", exc)
            degraded = DegradedStore.open_degraded(state_dir)
            return degraded, degraded.reopen

    def _spawn_deliverer(self) -> asyncio.Task[Any]:
        assert self.deliverer is not None
        return self.supervisor.spawn(self.deliverer.run(), DELIVERER, critical=True, deadline_s=DELIVERER_DEADLINE_S)

    def _restarted(self, name: str, why: str) -> None:
        """A carrier was restarted (the supervisor logged it): the status line says so at once."""
        self.notifier.status(self.status_line())

    def watch_event_loop(self, deadline_s: float = LOOP_DEADLINE_S) -> None:
        """Guard against a blocked event loop from a thread (station run and simulate; never in
        a test that shares its event loop with the station: the guard ends the process)."""
        self.loop_watch = LoopWatch(deadline_s, self._loop_hung)
        self.loop_watch.start()

    async def _supervise(self) -> None:
        """Once a second: every loop alive and on time? Only then WATCHDOG=1 (systemd). Every
        other turn, systemd's STATUS= line if it changed (one timer for both: idle CPU)."""
        interval = min(1.0, self.notifier.watchdog_interval or 1.0)
        last_line, turn = "", 0
        while True:
            if self.loop_watch is not None:
                self.loop_watch.beat()
            if self.supervisor.check() is not None:
                return  # no more WATCHDOG=1: _failed() has taken over
            if self.notifier.watchdog_interval:
                self.notifier.watchdog()
            turn += 1
            if turn % 2 == 0 and (line := self.status_line()) != last_line:
                self.notifier.status(line)
                last_line = line
            await asyncio.sleep(interval)

    def _failed(self, why: str) -> None:
        """A critical loop died or hung: make it safe, journal what is open, and end with
        EXIT_FAILURE so that systemd restarts the station (which then closes an open session
        as after a power cut, with a fresh meter reading)."""
        if self.failure is not None:
            return
        self.failure = why
        log.critical("station failed: %s; opening the contactor and exiting for a restart", why)
        self._current_off()  # the charge controller's 0 A is on its way before the contactor opens
        self._contactor_off()
        c, store = self.charger, self.store
        if c is not None and store is not None:
            wh = c.reading.energy_wh if c.reading is not None else None
            try:
                if c.session is not None and wh is not None:
                    store.record_meter(c.session.id, wh, self.clock.stamp())
                store.raise_fault("supervisor", "InternalError", why, "LoopFailure", self.clock.stamp(), wh)
            except StationError as exc:
                log.error("%s", exc)
        self.notifier.status(f"FAILED: {why}")
        self.done.set()

    def _current_off(self) -> asyncio.Task[Any] | None:
        """Offer nothing (a charge controller's 0 A), from now on: the write is a task (a bus round
        trip) that `stop()` waits for. The charger's pilot loop writes nothing else from here on."""
        pilot = self.charger.pilot if self.charger is not None else None
        if pilot is None:
            return None
        if self._zeroing is None:
            self._zeroing = self.supervisor.spawn(pilot.off(), "controller-off")
        return self._zeroing

    def _contactor_off(self) -> None:
        if self.hardware is not None:
            try:
                self.hardware.contactor.set(False)
            except Exception:  # the contactor first: whatever else is broken
                log.exception("opening the contactor")

    def _loop_hung(self, silent: float) -> None:
        """From the LoopWatch thread: the event loop has not turned for `silent` seconds."""
        log.critical("event loop blocked for %.1f s: opening the contactor and exiting (%d)", silent, EXIT_FAILURE)
        self._contactor_off()
        self.notifier.status(f"FAILED: event loop blocked for {silent:.0f} s")
        logging.shutdown()
        os._exit(EXIT_FAILURE)

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
            try:
                held = self.store.held_count()
            except StationError:
                held = 0
            if held:
                parts.append(f"{held} held undelivered")
        if self.supervisor.restarts:
            parts.append("restarted: " + ", ".join(f"{name} {r.count}x ({r.why})"
                                                   for name, r in self.supervisor.restarts.items()))
        return " | ".join(parts)

    async def stop(self, graceful: bool = True) -> None:
        """Stop the station. Graceful: a running session is ended (reason Reboot) and delivered
        if the backend is reachable within a moment. `graceful=False` imitates a power cut for
        tests (and is what a failed station does): tasks stop where they are, the journal keeps
        the session open."""
        self.notifier.stopping()
        if self.loop_watch is not None:
            self.loop_watch.stop()
        if self.status_page is not None:
            await self.status_page.close()
        if graceful and self.failure is None and self.charger is not None and self.charger.session is not None:
            await self.charger.stop("Reboot")
            await self.flush(timeout=3.0)
        self.supervisor.stopping()
        zeroing = self._current_off()  # 0 A on its way first, then the contactor
        self._contactor_off()  # before anything that could wait: the process may not get further
        if zeroing is not None:
            await asyncio.wait([zeroing])  # bounded by the pilot's own timeout
        if self.charger is not None:
            await self.charger.close()
        # Every step below is bounded by a wait that a step swallowing its cancellation cannot defeat
        # (station.aio.bounded): a stop must never hang (issue 22: one did, after the MCSP link closed).
        if self.backend is not None:
            await bounded(self.backend.close(), CLOSE_STEP_S, "closing the backend")
        await self.supervisor.close()
        if self.hardware is not None:
            for closer in self.hardware.closers:
                try:
                    result = closer()
                    if asyncio.iscoroutine(result):
                        await bounded(result, CLOSE_STEP_S, "closing hardware")
                except Exception:
                    log.exception("closing hardware")
        if self.world is not None:
            await bounded(self.world.close(), CLOSE_STEP_S, "closing the emulated hardware")
        if self.embedded is not None:
            await bounded(self.embedded.close(), CLOSE_STEP_S, "closing the embedded backend server")
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
        """Run until SIGTERM/SIGINT (exit 0), a backend-ordered reset (EXIT_RESET) or a failed
        loop (EXIT_FAILURE)."""
        await self.start()
        self.watch_event_loop()
        stop_on_signals(self.done)
        assert self.charger is not None
        await self.done.wait()  # a signal, a failure, or a reset (the charger's exit_event is this event)
        if self.failure is not None:
            await self.stop(graceful=False)
            return EXIT_FAILURE
        code = EXIT_RESET if self.charger.exit_request else 0
        await self.stop()
        return code
