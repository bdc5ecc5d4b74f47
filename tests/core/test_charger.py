"""The Charger (the shell around the connector machine) on its own: fake ports, a fake backend,
a clock the test moves, a real journal.

No emulated chips and no drivers here (tests/test_station.py runs whole stations): the point is
that the shell carries the machine's decisions out, in their order, reachable in milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from station import config as configmod
from station.core.charger import Charger
from station.core.control import Control
from station.core.ports import Hardware, LedPattern
from station.core.states import State
from station.store import Store
from station.supervisor import Supervisor
from tests.stations import until
from tests.support.fakes import FakeBackend, FakeClock, FakeContactor, FakeDisplay, FakeInputs, FakeLeds, FakeMeter, FakeReader

CARD, OTHER = "D64FC93B", "0A1B2C3D"


class Rig:
    def __init__(self, tmp_path: Path, overrides: dict | None = None, ev: bool | None = None) -> None:
        values = {"station.state_dir": str(tmp_path), "charging.meter_interval_s": 0.2,
                  "charging.no_power_timeout_s": 0,
                  "charging.contactor_settle_s": 0.5, "charging.contactor_recover_s": 5.0,
                  "charging.message_s": 4.0}
        values.update(overrides or {})
        self.config = configmod.defaults(values)
        self.clock = FakeClock()
        self.meter = FakeMeter(self.clock)
        self.contactor = FakeContactor()
        self.inputs = FakeInputs(ev)
        self.leds, self.display = FakeLeds(), FakeDisplay()
        self.reader = FakeReader()
        hw = Hardware(self.reader, self.contactor, self.inputs, self.leds, self.display, self.meter)  # type: ignore[arg-type]
        self.store = Store.open(tmp_path)
        self.backend = FakeBackend({CARD: None, OTHER: "FLEET"})
        self.supervisor = Supervisor(self.clock.monotonic)
        self.charger = Charger(self.config, hw, self.store, self.backend, self.clock, self.supervisor)
        self.control = Control(self.charger)

    async def __aenter__(self) -> Rig:
        await self.charger.start()
        await self.backend.start(self.control)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.supervisor.stopping()
        await self.charger.close()
        await self.supervisor.close()
        self.store.close()

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        await until(predicate, timeout, f"{what} (state {self.charger.state.value})")

    async def state(self, state: State) -> None:
        await self.until(lambda: self.charger.state is state and not self.charger.busy, f"state {state.value}")

    async def tap(self, tag: str) -> None:
        before = self.charger.taps
        self.charger.tap_tag(tag)
        await self.until(lambda: self.charger.taps > before and self.charger.events_idle(), "the tap handled")

    async def later(self, seconds: float, steps: int = 10) -> None:
        """Move the fake clock in steps, letting the poll loop see each one."""
        for _ in range(steps):
            self.clock.t += seconds / steps
            self.charger.kick()
            await asyncio.sleep(0.02)


async def test_a_session_journals_before_the_contactor_and_stops_with_the_exact_reading(tmp_path):
    async with Rig(tmp_path) as r:
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        session = r.store.open_sessions()[0]
        assert r.contactor.closed and session.meter_start_wh == 5000
        r.meter.wh, r.meter.power_w = 6234, 7400.0
        await r.later(600)  # 1234 Wh in 10 min: plausible at 7.4 kW
        await r.state(State.CHARGING)
        await r.tap(CARD)
        await r.state(State.FINISHING)
        stopped = r.store.sessions()[0]
        assert not r.contactor.closed and stopped.meter_stop_wh == 6234 and stopped.stop_reason == "Local"


async def test_another_card_of_the_same_group_stops_and_is_named_in_the_stop(tmp_path):
    r = Rig(tmp_path)
    r.backend.tags = {CARD: "FLEET", OTHER: "FLEET"}
    async with r:
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        await r.tap(OTHER)
        await r.state(State.FINISHING)
        stop = [item for item in r.store.messages() if item.kind.value == "stop"][0]
        assert stop.payload == {"reason": "Local", "id_tag": OTHER}


async def test_a_refused_card_blinks_red_for_the_message_time(tmp_path):
    async with Rig(tmp_path) as r:
        await r.tap("11223344")
        await r.state(State.AVAILABLE)
        assert r.leds.shown[-1] is LedPattern.REFUSED
        assert r.display.lines[0] == "Card refused"
        await r.later(4.1)
        await r.until(lambda: r.leds.shown[-1] is LedPattern.AVAILABLE, "green again")
        assert r.store.sessions(("refused",))[0].stop_reason == "Invalid"


async def test_a_card_refused_because_the_backend_is_down_says_so(tmp_path):
    async with Rig(tmp_path) as r:
        r.backend.up = False
        await r.tap(CARD)
        assert r.display.lines[0] == "Backend offline"
        reason = r.store.sessions(("refused",))[0].stop_reason
        assert reason == "Invalid (backend offline; tag not in the offline cache)"
        assert r.charger.recent[-1].endswith("refused: Invalid (backend offline; tag not in the offline cache)")


async def test_welded_while_available_faults_and_refuses_then_recovers_when_the_contact_agrees(tmp_path):
    async with Rig(tmp_path) as r:
        r.contactor.welded = True
        await r.later(0.4)
        assert r.charger.state is State.AVAILABLE  # within the settle time: maybe a bounce
        await r.later(0.3)
        await r.state(State.FAULTED)
        assert r.charger.status().vendor_error_code == "ContactorWelded"
        assert "Contactor welded" in r.display.lines
        await r.tap(CARD)
        assert not r.store.sessions(("active", "authorizing"))
        assert r.display.lines[:2] == ["Fault", "Contactor welded"] and r.leds.shown[-1] is LedPattern.REFUSED
        r.contactor.welded = False
        await r.later(4.0)
        assert r.charger.state is State.FAULTED  # not yet: agreed for 4 s of 5
        await r.later(1.5)
        await r.state(State.AVAILABLE)
        fault = r.store.recent_faults()[0]
        assert fault["source"] == "contactor" and fault["vendor"] == "ContactorWelded" and fault["cleared_at"]
        assert fault["raised_wh"] == 5000 and fault["cleared_wh"] == 5000


async def test_welded_at_start_up_starts_faulted(tmp_path):
    r = Rig(tmp_path)
    r.contactor.welded = True
    async with r:
        await r.later(1.0)
        await r.state(State.FAULTED)


async def test_drop_out_while_charging_ends_the_session_then_faults(tmp_path):
    async with Rig(tmp_path) as r:
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        r.meter.wh, r.meter.power_w = 5800, 7400.0
        await r.later(600)
        await r.state(State.CHARGING)
        r.contactor.broken = True
        r.meter.power_w = 0.0
        await r.later(1.0)
        await r.state(State.FAULTED)
        s = r.store.sessions()[0]
        assert s.stop_reason == "Other" and s.meter_stop_wh == 5800 and not r.contactor.closed
        assert r.charger.status().vendor_error_code == "ContactorOpen"
        assert "dropped out" in r.charger.status().info


async def test_a_power_limit_that_fails_to_close_the_contactor_is_caught(tmp_path):
    async with Rig(tmp_path) as r:
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        r.control.set_power_limit(0)
        await r.state(State.SUSPENDED_EVSE)
        r.contactor.broken = True
        r.control.set_power_limit(None)  # resume: the contactor is told to close, and does not
        await r.later(1.0)
        await r.state(State.FAULTED)
        assert r.store.sessions()[0].stop_reason == "Other"


async def test_a_silent_meter_ends_the_session_with_the_last_good_reading(tmp_path):
    async with Rig(tmp_path) as r:
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        r.meter.wh = 5400
        await r.later(600)
        await r.until(lambda: r.charger.reading.energy_wh == 5400, "the reading")
        r.meter.error = "no reply from the meter"
        await r.state(State.FAULTED)
        s = r.store.sessions()[0]
        assert s.meter_stop_wh == 5400 and s.meter_stop_estimated and s.stop_reason == "Other"


async def test_unplug_and_replug_with_stop_on_disconnect_off_powers_the_car_again(tmp_path):
    async with Rig(tmp_path, ev=False) as r:
        r.control.tune(stop_on_ev_disconnect=False)
        r.inputs.ev = True
        await r.state(State.PREPARING)
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        assert r.contactor.closed
        r.inputs.ev = False
        await r.until(lambda: not r.contactor.closed, "contactor open at unplug")
        assert r.charger.session is not None
        r.inputs.ev = True
        await r.until(lambda: r.contactor.closed, "contactor closed again at replug")
        assert r.charger.session is not None and r.charger.state is State.SUSPENDED_EV


async def test_plug_in_at_a_reserved_connector_stays_reserved_until_the_reserved_card(tmp_path):
    async with Rig(tmp_path, ev=False) as r:
        expiry = (r.clock.now().timestamp() + 600)
        from datetime import UTC, datetime
        assert await r.control.reserve(5, CARD, None, datetime.fromtimestamp(expiry, UTC).isoformat()) == "Accepted"
        await r.state(State.RESERVED)
        r.inputs.ev = True
        await r.later(0.1)
        assert r.charger.state is State.RESERVED
        r.backend.tags["11223344"] = None
        await r.tap("11223344")  # accepted by the backend, but not the reserved card
        assert r.charger.state is State.RESERVED and not r.store.sessions(("active",))
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        assert r.store.open_sessions()[0].reservation_id == 5


async def test_unlock_is_not_supported_and_stops_nothing(tmp_path):
    async with Rig(tmp_path) as r:
        assert await r.control.unlock() == "NotSupported"
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        assert await r.control.unlock() == "NotSupported"
        assert r.charger.session is not None


async def test_scheduled_unavailable_goes_straight_from_finishing_to_unavailable(tmp_path):
    async with Rig(tmp_path, {"charging.finishing_s": 1.0}) as r:
        seen: list[State] = []
        report = r.charger.statuses.report
        r.charger.statuses.report = lambda status: (seen.append(status.status), report(status))[1]  # type: ignore[method-assign]
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        assert await r.control.set_available(False) == "Scheduled"
        await r.tap(CARD)
        await r.state(State.FINISHING)
        await r.later(1.1)
        await r.state(State.UNAVAILABLE)
        assert seen[-2:] == [State.FINISHING, State.UNAVAILABLE] and State.AVAILABLE not in seen[seen.index(State.FINISHING):]


@pytest.mark.parametrize("hard", [False, True])
async def test_reset_stops_the_session_and_waits_for_its_delivery(tmp_path, hard):
    async with Rig(tmp_path) as r:
        from station.core.delivery import Deliverer

        deliverer = Deliverer(r.store, r.backend, r.clock)
        r.charger.deliverer = deliverer
        task = r.supervisor.spawn(deliverer.run(), "deliverer")
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        r.backend_link_up = r.control.backend_link(True)
        assert await r.control.reset(hard)
        await asyncio.wait_for(r.charger.exit_event.wait(), 10)
        assert ("stop", {"reason": "HardReset" if hard else "SoftReset"}) in r.backend.delivered
        assert r.store.pending_messages() == 0
        task.cancel()


async def test_the_backend_is_told_the_transaction_points_as_they_happen(tmp_path):
    async with Rig(tmp_path, ev=False) as r:
        r.inputs.ev = True
        await r.state(State.PREPARING)
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        sid = r.charger.session.id
        r.meter.wh, r.meter.power_w = 5100, 7400.0
        await r.later(60)
        await r.state(State.CHARGING)
        await r.tap(CARD)
        await r.state(State.FINISHING)
        r.inputs.ev = False
        await r.state(State.AVAILABLE)
        assert r.backend.facts == [("EVConnected", None), ("Authorized", sid), ("PowerPathClosed", sid),
                                   ("EnergyTransferStarted", sid), ("Deauthorized", sid), ("PowerPathOpened", sid),
                                   ("EnergyTransferStopped", sid), ("EVDisconnected", None)]


async def test_a_backend_queues_its_own_messages_through_the_port_and_they_are_delivered(tmp_path):
    async with Rig(tmp_path) as r:
        from station.core.delivery import Deliverer
        from station.core.model import MessageKind

        deliverer = Deliverer(r.store, r.backend, r.clock)
        r.charger.deliverer = deliverer
        task = r.supervisor.spawn(deliverer.run(), "deliverer")
        await r.tap(CARD)
        await r.state(State.SUSPENDED_EV)
        await r.until(lambda: ("start", {"id_tag": CARD, "meter_start_wh": 5000, "timestamp": r.charger.session.started_at,
                                         "reservation_id": None}) in r.backend.delivered, "START delivered")
        r.control.queue_message(r.charger.session.id, MessageKind.METER_VALUES, {"meterValue": [{"v": 1}]})
        await r.until(lambda: ("meter_values", {"meterValue": [{"v": 1}]}) in r.backend.delivered,
                      "the meter values delivered at once (the port woke the deliverer)")
        task.cancel()


async def test_remote_start_is_answered_before_the_connector_moves(tmp_path):
    async with Rig(tmp_path) as r:
        seen: list[State] = []
        report = r.charger.statuses.report
        r.charger.statuses.report = lambda status: (seen.append(status.status), report(status))[1]  # type: ignore[method-assign]
        assert await r.control.remote_start(CARD)
        assert r.charger.state is State.AVAILABLE and r.charger.busy  # taken, not yet moved
        await r.state(State.SUSPENDED_EV)
        assert seen[-2:] == [State.PREPARING, State.SUSPENDED_EV]
        assert not await r.control.remote_start(CARD)  # a session runs
