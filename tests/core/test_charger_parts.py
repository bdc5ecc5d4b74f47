"""The shell's parts, each on its own: no station, no hardware, a clock the test moves."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest
from transitions import Machine

from station.core import messages, reservations
from station.core.faults import PRIORITY, ContactorVerdict, ContactorWatch, FaultRegistry
from station.core.meterguard import MeterGuard
from station.core.model import Fault, MeterReading, StatusReport
from station.core.ports import LedPattern
from station.core.presenter import Presenter, View, screen_for
from station.core.sampler import MeterSampler
from station.core.states import TRANSITIONS, State
from station.core.status import StatusReporter
from station.core.triggers import Triggers
from station.errors import MeterError
from station.supervisor import LoopWatch, Supervisor
from tests.support.fakes import FakeClock, FakeDisplay, FakeLeds


# ---------------------------------------------------------------- the contactor watch
def test_contactor_watch_without_a_contact_knows_nothing():
    w = ContactorWatch(settle_s=0.5)
    assert w.observe(True, None, 0.0) is None
    assert w.observe(False, None, 9.0) is None
    assert w.verdict is ContactorVerdict.OK


def test_contactor_watch_allows_the_settle_time_after_a_command():
    w = ContactorWatch(settle_s=0.5)
    assert w.observe(False, False, 0.0) is None
    assert w.observe(True, False, 1.0) is None  # commanded closed; the contact has not moved yet
    assert w.observe(True, False, 1.4) is None
    assert w.observe(True, True, 1.45) is None  # it followed within the settle time
    assert w.followed and w.verdict is ContactorVerdict.OK


def test_contactor_watch_welded_while_open_then_recovers_only_after_agreeing_long_enough():
    w = ContactorWatch(settle_s=0.5, recover_s=10.0)
    assert w.observe(False, True, 0.0) is None  # closed while commanded open: maybe a bounce
    assert w.observe(False, True, 0.49) is None
    assert w.observe(False, True, 0.5) is ContactorVerdict.WELDED
    assert w.observe(False, True, 5.0) is None  # no repeats
    assert w.observe(False, False, 6.0) is None  # agrees again ...
    assert w.observe(False, True, 7.0) is None  # ... a bounce restarts the recovery time
    assert w.observe(False, False, 8.0) is None
    assert w.observe(False, False, 17.9) is None
    assert w.observe(False, False, 18.0) is ContactorVerdict.OK


def test_contactor_watch_drop_out_during_a_session():
    w = ContactorWatch(settle_s=0.5)
    w.observe(True, True, 0.0)
    assert w.followed
    assert w.observe(True, False, 60.0) is None
    assert w.observe(True, False, 60.6) is ContactorVerdict.DROPPED
    assert w.followed  # it had closed: a drop-out, not "did not close"


def test_contactor_watch_did_not_close():
    w = ContactorWatch(settle_s=0.5)
    w.observe(False, False, 0.0)
    assert w.observe(True, False, 1.0) is None
    assert w.observe(True, False, 1.6) is ContactorVerdict.DROPPED
    assert not w.followed


def test_contactor_watch_a_new_command_restarts_the_settle_time():
    w = ContactorWatch(settle_s=0.5)
    w.observe(False, False, 0.0)
    w.observe(True, False, 1.0)
    assert w.observe(False, False, 1.4) is None  # opened again before the fault was due
    assert w.observe(True, False, 1.45) is None
    assert w.observe(True, False, 1.9) is None  # 0.45 s after the new command
    assert w.observe(True, False, 1.95) is ContactorVerdict.DROPPED


# ---------------------------------------------------------------- the fault registry
def test_fault_registry_priority_and_blocking():
    r = FaultRegistry()
    assert not r and r.first() is None and not r.blocking()
    storage = Fault("OtherError", "disk full", "Storage")
    assert r.set("storage", storage)
    assert not r.set("storage", storage)  # the same again: no change
    assert not r.blocking()  # storage refuses sessions but does not fault the connector
    r.set("reader", Fault("ReaderFailure", "no SPI"))
    r.set("contactor", Fault("OtherError", "welded", "ContactorWelded"))
    assert r.blocking() and r.first().vendor == "ContactorWelded"
    assert PRIORITY[0] == "contactor"
    assert r.clear("contactor") and not r.clear("contactor")
    assert r.first().code == "ReaderFailure"


# ---------------------------------------------------------------- the presenter
def test_refusal_keeps_the_red_led_through_the_state_change_then_returns_to_green():
    ticks, screen, lights = FakeClock(), FakeDisplay(), FakeLeds()
    p = Presenter(screen, lights, "en", message_s=4.0, monotonic=ticks)
    p.render(View(State.PREPARING, busy=True))
    p.show_notice("refused", status="Invalid")
    p.render(View(State.PREPARING))
    p.render(View(State.AVAILABLE))  # abandon(): the state says green, the notice says red
    assert lights.shown[-1] is LedPattern.REFUSED
    assert screen.shown[-1][0] == messages.screen("refused", "en", 20, 4, status="Invalid")[0]
    ticks.t += 3.9
    assert not p.expire()
    ticks.t += 0.1
    assert p.expire()
    p.render(View(State.AVAILABLE))
    assert lights.shown[-1] is LedPattern.AVAILABLE
    assert screen.shown[-1] == messages.screen("available", "en", 20, 4, name="", offline=False)


def test_a_notice_that_is_not_a_refusal_keeps_the_state_led():
    ticks, lights = FakeClock(), FakeLeds()
    p = Presenter(FakeDisplay(), lights, "en", message_s=4.0, monotonic=ticks)
    p.show_notice("no_power_timeout")
    p.render(View(State.SUSPENDED_EV))
    assert lights.shown == [LedPattern.SUSPENDED]


def test_presenter_writes_only_changes():
    screen, lights = FakeDisplay(), FakeLeds()
    p = Presenter(screen, lights, "en", 4.0, FakeClock())
    for _ in range(3):
        p.render(View(State.AVAILABLE, name="CP"))
    assert len(screen.shown) == 1 and len(lights.shown) == 1


@pytest.mark.parametrize(("view", "key"), [
    (View(State.PREPARING, busy=True), "authorizing"),
    (View(State.PREPARING, pending=True), "plug_in"),
    (View(State.PREPARING), "tap_card"),
    (View(State.CHARGING, energy_wh=1200, power_w=7400.0), "charging"),
    (View(State.FINISHING, finished_wh=1500), "finishing"),
    (View(State.FAULTED, fault=Fault("OtherError", "x", "ContactorWelded")), "faulted"),
    (View(State.RESERVED), "reserved"),
])
def test_screen_for_each_state(view, key):
    assert screen_for(view)[0] == key


def test_screen_for_a_welded_contactor_says_so():
    key, fields = screen_for(View(State.FAULTED, fault=Fault("OtherError", "x", "ContactorWelded")))
    lines = messages.screen(key, "en", 20, 4, **fields)
    assert "Contactor welded" in lines


# ---------------------------------------------------------------- reservations
def test_reservation_admits_its_tag_and_its_group_only():
    r = reservations.Reservation(7, "D64FC93B", "FLEET", expires_mono=50.0)
    assert not r.needs_parent("d6:4f:c9:3b") and r.allows("d6:4f:c9:3b")
    assert r.needs_parent("0A1B2C3D") and r.allows("0A1B2C3D", "FLEET")
    assert not r.allows("11223344", "OTHER")
    assert not r.allows("99999999", None)
    assert not r.expired(50.0) and r.expired(50.1)
    assert not reservations.Reservation(8, "A", None, 1.0).needs_parent("B")  # no group: nothing to ask


def test_reservation_answers():
    assert reservations.answer(State.FAULTED, False, None, 1) == "Faulted"
    assert reservations.answer(State.UNAVAILABLE, False, None, 1) == "Unavailable"
    assert reservations.answer(State.CHARGING, False, None, 1) == "Occupied"
    assert reservations.answer(State.AVAILABLE, True, None, 1) == "Occupied"
    other = reservations.Reservation(2, "A", None, 1.0)
    assert reservations.answer(State.RESERVED, False, other, 1) == "Occupied"
    assert reservations.answer(State.RESERVED, False, other, 2) is None  # the same id: replaced
    assert reservations.answer(State.AVAILABLE, False, None, 1) is None


# ---------------------------------------------------------------- the sampler
class Meter:
    model, max_power_w, measurands = "X", 22_000.0, frozenset({"energy"})
    map_warning = None

    def __init__(self, ticks: FakeClock) -> None:
        self.ticks, self.wh, self.error = ticks, 1000, None

    async def read(self, full: bool = True) -> MeterReading:
        if self.error:
            raise MeterError(self.error)
        return MeterReading(self.wh, 0.0, taken_at=self.ticks())

    async def close(self) -> None:
        pass


async def test_sampler_reports_the_fault_once_and_its_end():
    ticks = FakeClock()
    meter = Meter(ticks)
    sampler = MeterSampler(meter, MeterGuard(22_000.0, max_failures=2), ticks)
    told: list[str | None] = []
    sampler.on_fault = told.append
    assert await sampler.read() is not None  # a candidate, then its confirmation
    meter.error = "no reply"
    for _ in range(3):
        assert await sampler.read(tries=1) is None
    assert told == ["no reply"]
    meter.error = None
    ticks.t += 1
    assert (await sampler.read()).energy_wh == 1000
    assert told == ["no reply", None]


async def test_sampler_idle_reading_only_with_the_contactor_open_and_recent():
    ticks = FakeClock()
    sampler = MeterSampler(Meter(ticks), MeterGuard(22_000.0, 3), ticks)
    await sampler.read()
    assert sampler.fresh_idle(False, 1.0) is not None
    assert sampler.fresh_idle(True, 1.0) is None  # energy may flow
    ticks.t += 1.6
    assert sampler.fresh_idle(False, 1.0) is None  # too old


# ---------------------------------------------------------------- status reports
async def test_status_reporter_sends_each_change_once_in_order():
    sent: list[str] = []

    class Backend:
        async def send_status(self, report: StatusReport) -> None:
            sent.append(report.status.value)

    r = StatusReporter(Backend())  # type: ignore[arg-type]
    for state in (State.AVAILABLE, State.AVAILABLE, State.PREPARING, State.CHARGING, State.CHARGING):
        r.report(StatusReport(1, state))
    task = asyncio.create_task(r.run())
    for _ in range(100):
        if len(sent) == 3:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    assert sent == ["Available", "Preparing", "Charging"]


# ---------------------------------------------------------------- the supervisor
async def test_supervisor_sees_a_critical_task_that_raises():
    sup = Supervisor()
    failures: list[str] = []
    sup.on_failure = failures.append

    async def boom() -> None:
        raise RuntimeError("bug")

    sup.spawn(boom(), "meter", critical=True, deadline_s=5)
    await asyncio.sleep(0.05)
    assert sup.check() == "meter: RuntimeError: bug" and failures == ["meter: RuntimeError: bug"]


async def test_supervisor_a_transient_task_that_raises_is_logged_not_fatal(caplog):
    sup = Supervisor()

    async def boom() -> None:
        raise ValueError("handler bug")

    with caplog.at_level(logging.ERROR):
        sup.spawn(boom(), "remote-stop")
        await asyncio.sleep(0.05)
    assert sup.check() is None
    assert "task remote-stop failed: handler bug" in caplog.text


async def test_supervisor_deadline_and_checkpoint_hang():
    ticks = FakeClock()
    sup = Supervisor(ticks)
    turns = 0

    async def loop() -> None:
        nonlocal turns
        while True:
            await sup.checkpoint("poll")
            turns += 1
            await asyncio.sleep(0.01)

    sup.spawn(loop(), "poll", critical=True, deadline_s=10)
    await asyncio.sleep(0.05)
    ticks.t += 9
    await asyncio.sleep(0.05)
    assert sup.check() is None  # it beats
    sup.hang.add("poll")
    await asyncio.sleep(0.05)
    stuck = turns
    ticks.t += 10.5
    await asyncio.sleep(0.05)
    assert turns == stuck
    assert sup.check() == "poll: no progress for 10.5 s (deadline 10 s)"
    sup.stopping()
    await sup.close()


async def test_supervisor_a_critical_loop_that_ends_is_a_failure_but_not_at_close():
    sup = Supervisor()

    async def quits() -> None:
        return None

    sup.spawn(quits(), "deliverer", critical=True)
    await asyncio.sleep(0.02)
    assert sup.check() == "deliverer: ended"
    sup2 = Supervisor()
    sup2.spawn(asyncio.Event().wait(), "meter", critical=True)
    sup2.stopping()
    await sup2.close()
    assert sup2.check() is None


def test_supervisor_watches_a_thread():
    ticks = FakeClock()
    sup = Supervisor(ticks)
    done = threading.Event()
    worker = threading.Thread(target=done.wait)
    worker.start()
    sup.expect("reader", 10.0, worker.is_alive)
    assert sup.check() is None
    done.set()
    worker.join()
    assert sup.check() == "reader: thread died"


def test_loop_watch_fires_when_the_loop_stops_beating():
    fired: list[float] = []
    watch = LoopWatch(0.2, fired.append)
    watch.start()
    for _ in range(10):  # beating: nothing happens
        watch.beat()
        time.sleep(0.02)
    assert not fired
    deadline = time.monotonic() + 10
    while not fired and time.monotonic() < deadline:
        time.sleep(0.02)
    watch.stop()
    assert fired and fired[0] > 0.2


# ---------------------------------------------------------------- the triggers
def test_every_trigger_the_table_binds_is_declared():
    """transitions with model_override=True binds only declared names: a trigger added to the
    table must be declared in station/core/triggers.py, or the charger would lack it."""

    class Model(Triggers):
        def ev_plugged(self) -> bool:
            return False

        def reserved(self) -> bool:
            return False

    model = Model()
    skipped: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            skipped.append(record.getMessage())

    handler = Catch(logging.WARNING)
    logging.getLogger("transitions.core").addHandler(handler)
    try:
        Machine(model=model, states=State, transitions=TRANSITIONS, initial=State.AVAILABLE,
                auto_transitions=False, model_override=True)
    finally:
        logging.getLogger("transitions.core").removeHandler(handler)
    assert skipped == []
    assert model.may_plug() and model.plug() and model.state is State.PREPARING


async def test_supervisor_close_does_not_hang_on_a_task_that_swallows_its_cancellation(caplog):
    sup = Supervisor()

    async def stubborn() -> None:
        swallowed = False
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:  # the test's own teardown ends it
                    raise
                swallowed = True  # a bug: it does not end when the supervisor cancels it

    sup.spawn(stubborn(), "stubborn")
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.ERROR):
        assert await sup.close(timeout=0.2) == ["stubborn"]
    assert "did not end" in caplog.text and "stubborn" in caplog.text
