"""The supervisor: every task and thread the station runs is owned here.

Why: a charging station must not go on looking healthy while one of its own
loops is dead. systemd's watchdog only knows whether *we* say WATCHDOG=1, and
an event loop that keeps running while the meter loop has died would keep
saying it. So liveness is the sum of the loops, not the event loop alone:

* `spawn(coro, name)` starts a task and keeps it. A task that raises is
  logged with its name and the exception; nothing is fire-and-forget.
* `spawn(..., critical=True, deadline_s=D)` marks a loop the station cannot
  live without (meter, inputs, ticker, deliverer, backend link). It must call
  `beat(name)` at least every D seconds; ending at all, by an exception or
  by returning, is a failure too (until `close()`).
* `expect(name, deadline_s, alive)` does the same for a loop that is not a
  task: the RFID reader's worker thread beats from its thread, and `alive()`
  tells at once when it has died.
* `check()` returns the first problem, or None. The daemon calls it once a
  second and sends WATCHDOG=1 only while it returns None; on a problem it
  opens the contactor, journals what is open and exits non-zero, so systemd
  restarts the station (station/daemon.py).

Safety loops and message carriers. The rule above is for the loops that
keep the car and the driver safe (meter, inputs, events, the reader): a
station that cannot trust them must stop. A loop that only carries messages
(the deliverer, a backend's link) is another matter: waiting on a slow
network is not a hang, and even a truly stuck carrier endangers nothing, so
it must never open the contactor under a running charge. Two tools keep the
two apart:

* `waiting(name, seconds)`: a loop declares a wait on the network that it
  bounds itself (it cancels the wait after `seconds`); its deadline is
  stretched by that much while it waits. Liveness (the loop turns) stays
  apart from the network's progress.
* `restartable(name, respawn)`: a critical loop that is a carrier. If it
  ends or misses its deadline, the supervisor cancels it and starts it
  again with `respawn()` (at once the first time, then backing off up to
  RESTART_CAP_S while it keeps failing), logs it, counts it in `restarts`
  and tells `on_restart`; the station charges on.

Beats are plain stores into a dict (atomic under the GIL), so a thread may
beat without a lock. Time comes from an injected monotonic function, so the
deadlines are testable without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 5.0
RESTART_CAP_S = 60.0  # a carrier that keeps failing is restarted at most this often
RESTART_CALM_S = 600.0  # ... and once it ran this long without failing, at once again


@dataclass
class _Watch:
    deadline_s: float | None
    alive: Callable[[], bool] | None = None
    task: asyncio.Task[Any] | None = None


@dataclass
class Restarts:
    """How often a carrier was restarted, and why the last time (for logs, STATUS= and the status page)."""

    count: int = 0
    why: str = ""
    at: float = 0.0  # monotonic
    streak: int = 0  # restarts since it last ran RESTART_CALM_S without failing


class Supervisor:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watches: dict[str, _Watch] = {}
        self._beats: dict[str, float] = {}
        self._failure: str | None = None
        self._closing = False
        self.on_failure: Callable[[str], None] | None = None  # told once, at the first failure
        self.on_restart: Callable[[str, str], None] | None = None  # told (name, why) at each carrier restart
        self.hang: set[str] = set()  # fault injection: loops that stop at their next checkpoint
        self.restarts: dict[str, Restarts] = {}
        self._carriers: dict[str, Callable[[], asyncio.Task[Any]]] = {}
        self._due: dict[str, float] = {}  # carrier -> when to start it again
        self._retired: set[asyncio.Task[Any]] = set()  # carriers cancelled for a restart: their end is no failure
        self._grace: dict[str, float] = {}  # loop -> seconds its deadline is stretched by (a declared wait)

    # ------------------------------------------------------------------ owning
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, *, critical: bool = False,
              deadline_s: float | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        if critical:
            self._watches[name] = _Watch(deadline_s, task=task)
            self._beats[name] = self._now()
        task.add_done_callback(self._done)
        return task

    def expect(self, name: str, deadline_s: float, alive: Callable[[], bool] | None = None) -> None:
        """A critical loop outside asyncio (a thread): it beats; `alive()` says whether it runs."""
        self._watches[name] = _Watch(deadline_s, alive=alive)
        self._beats[name] = self._now()

    def forget(self, name: str) -> None:
        """A critical loop that ends on purpose (e.g. the reader is stopped)."""
        self._watches.pop(name, None)
        self._beats.pop(name, None)

    def beat(self, name: str) -> None:
        self._beats[name] = self._now()

    def restartable(self, name: str, respawn: Callable[[], asyncio.Task[Any]]) -> None:
        """`name` only carries messages: when it ends or hangs, `respawn()` starts it again (it must
        spawn it as a critical loop of the same name) instead of the station failing."""
        self._carriers[name] = respawn

    @contextlib.contextmanager
    def waiting(self, name: str, seconds: float) -> Iterator[None]:
        """A wait on the network that the loop bounds itself to `seconds`: meanwhile its deadline is
        `seconds` longer. The loop beats as it enters and as it leaves."""
        self.beat(name)
        self._grace[name] = seconds
        try:
            yield
        finally:
            self._grace.pop(name, None)
            self.beat(name)

    async def checkpoint(self, name: str) -> None:
        """A loop's turn: beat, and stop here for good if a fault injection said this loop hangs
        (scenario step `loop-hang`: the loop stops making progress, as a real bug would)."""
        self.beat(name)
        if name in self.hang:
            log.warning("fault injection: the %s loop hangs", name)
            await asyncio.Event().wait()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task in self._retired:  # cancelled for its restart
            self._retired.discard(task)
            if not task.cancelled() and task.exception() is not None:
                log.error("task %s failed on its way out: %s", task.get_name(), task.exception())
            return
        name = task.get_name()
        watch = self._watches.get(name)
        critical = watch is not None and watch.task is task
        if task.cancelled():
            if critical and not self._closing:
                self._ended(name, f"{name}: cancelled")
            return
        exc = task.exception()
        if exc is not None:
            log.error("task %s failed: %s", name, exc, exc_info=exc)
            if critical and not self._closing:
                self._ended(name, f"{name}: {type(exc).__name__}: {exc}")
        elif critical and not self._closing:
            self._ended(name, f"{name}: ended")

    def _ended(self, name: str, why: str) -> None:
        """A critical loop is gone: a carrier is started again, any other loop fails the station."""
        if name in self._carriers:
            self._schedule_restart(name, why)
        else:
            self._fail(why)

    def _schedule_restart(self, name: str, why: str) -> None:
        now = self._now()
        record = self.restarts.setdefault(name, Restarts())
        if record.count and now - record.at > RESTART_CALM_S:
            record.streak = 0
        delay = 0.0 if record.streak == 0 else min(RESTART_CAP_S, 2.0 ** (record.streak - 1))
        record.count += 1
        record.streak += 1
        record.why, record.at = why, now
        watch = self._watches.pop(name, None)
        self._beats.pop(name, None)
        self._grace.pop(name, None)
        if watch is not None and watch.task is not None and not watch.task.done():
            self._retired.add(watch.task)
            watch.task.cancel()
        self._due[name] = now + delay
        if delay == 0.0:
            with contextlib.suppress(RuntimeError):  # no running loop: check() restarts it
                asyncio.get_running_loop().call_soon(lambda: None if self._closing else self._restart_due(self._now()))
        log.error("supervisor: %s; it only carries messages: restarting it%s (restart %d); charging goes on",
                  why, f" in {delay:.0f} s" if delay else "", record.count)
        if self.on_restart is not None:
            self.on_restart(name, why)

    def _restart_due(self, now: float) -> None:
        for name, due in list(self._due.items()):
            if now < due:
                continue
            del self._due[name]
            self.hang.discard(name)  # a new task is a new loop (an injected hang was the old one's)
            try:
                self._carriers[name]()
            except Exception as exc:  # cannot start it now: try again later
                log.exception("supervisor: restarting %s failed", name)
                self._schedule_restart(name, f"{name}: restart failed: {exc}")

    # ------------------------------------------------------------------ judging
    def check(self) -> str | None:
        """The first problem (which loop, and why), or None while every loop is alive and on time."""
        if self._failure is not None:
            return self._failure
        now = self._now()
        if not self._closing:
            self._restart_due(now)
        for name, watch in list(self._watches.items()):
            if watch.alive is not None and not watch.alive():
                return self._fail(f"{name}: thread died")
            if watch.deadline_s is not None:
                silent = now - self._beats.get(name, now)
                allowed = watch.deadline_s + self._grace.get(name, 0.0)
                if silent > allowed:
                    why = f"{name}: no progress for {silent:.1f} s (deadline {allowed:g} s)"
                    if name in self._carriers and not self._closing:
                        self._schedule_restart(name, why)
                        continue
                    return self._fail(why)
        return None

    def _fail(self, why: str) -> str:
        if self._failure is None:
            self._failure = why
            log.critical("supervisor: %s", why)
            if self.on_failure is not None:
                self.on_failure(why)
        return self._failure

    @property
    def failure(self) -> str | None:
        return self._failure

    def loops(self) -> dict[str, float]:
        """Seconds since each critical loop last reported (for status pages and tests)."""
        now = self._now()
        return {name: now - self._beats.get(name, now) for name in self._watches}

    # ------------------------------------------------------------------ ending
    def stopping(self) -> None:
        """The station is shutting down: tasks that end from now on are not failures."""
        self._closing = True

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> list[str]:
        """Cancel every task still running and wait for them (ending them is not a failure).

        A task that does not end within `timeout` (one that swallows its cancellation: a bug) is
        named in the log and left behind, so that stopping the station never hangs on it.
        Returns the names of such tasks."""
        self._closing = True
        tasks = [t for t in self._tasks if not t.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        done, stuck = await asyncio.wait(tasks, timeout=timeout)
        for task in done:
            if not task.cancelled():
                task.exception()  # retrieved: the done callback has logged it
        names = sorted(t.get_name() for t in stuck)
        if names:
            log.error("tasks that did not end within %.0f s of their cancellation: %s", timeout, ", ".join(names))
        return names


class LoopWatch:
    """A thread that notices when the event loop itself stops turning.

    The supervisor runs *in* the event loop, so it cannot see the loop block
    (a blocking call, a busy coroutine). systemd's watchdog would, but only
    after WatchdogSec, and a process that is killed leaves the GPIO pins as
    they were: a closed contactor stays closed until the restart. So this
    thread, which needs no event loop, opens the contactor itself and ends
    the process (exit 70) once the loop has not beaten for `deadline_s`.
    Everything the journal needs is already on disk: the next start closes an
    open session as after a power cut.
    """

    def __init__(self, deadline_s: float, on_hang: Callable[[float], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.deadline_s = deadline_s
        self._on_hang = on_hang
        self._now = monotonic
        self._beat = monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loop-watch", daemon=True)

    def start(self) -> None:
        self._beat = self._now()
        self._thread.start()

    def beat(self) -> None:
        self._beat = self._now()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self.deadline_s / 4)):
            silent = self._now() - self._beat
            if silent > self.deadline_s:
                self._on_hang(silent)
                return
