"""The connector machine alone, event by event: no asyncio, no ports, no fakes.

The test plays the shell: it posts an event, reads the actions, and answers the ones
that take time (a meter read, a journal write, an authorization) with the event the
shell would post. Expected values come from the rules as the docs state them
(docs/states.md, docs/safety.md, docs/durability.md, OCPP 1.6), not from the code.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from station.core import events as ev
from station.core.connector import Connector
from station.core.events import CarState, Purpose, Step, TxFact
from station.core.faults import ContactorVerdict
from station.core.model import AuthResult, AuthStatus, DeliveryResult, Fault, MessageKind, MeterReading, OutboxItem, Session
from station.core.reservations import Reservation
from station.core.rules import Settings
from station.core.states import TRANSITIONS, State

CARD, OTHER, GROUP_MATE = "D64FC93B", "0A1B2C3D", "11223344"
ACCEPTED = AuthResult(AuthStatus.ACCEPTED)
FULL = Fault("OtherError", "journal write failed: database or disk is full", "JournalFull")


class Drive:
    """A connector and the answers a shell would give it. `t` is the monotonic clock."""

    def __init__(self, plug: bool = False, car: CarState | None = None, **settings: object) -> None:
        self.t = 1000.0
        values: dict[str, object] = {"name": "CP1", "finishing_s": 5.0, "no_power_timeout_s": 0.0,
                                     "connection_timeout_s": 60.0, "meter_interval_s": 1.0, "plug_sensor": plug}
        values.update(settings)
        self.m = Connector(Settings(**values), lambda: self.t, lambda: f"t{self.t:.1f}")  # type: ignore[arg-type]
        self.ids = itertools.count(1)
        self.wh = 5000
        self.actions: list[ev.Action] = []
        self.post(ev.Started(car=car or (CarState.A if plug else CarState.UNKNOWN)))

    @property
    def state(self) -> State:
        return self.m.state

    def post(self, event: ev.Event) -> list[ev.Action]:
        out = self.m.handle(event)
        self.actions += out
        return out

    def reading(self, wh: int | None = None, power: float = 0.0) -> MeterReading:
        return MeterReading(self.wh if wh is None else wh, power, taken_at=self.t)

    def record(self, tag: str, state: str = "authorizing", **kw: object) -> Session:
        n = next(self.ids)
        return Session(id=n, key=f"k{n}", connector_id=1, id_tag=tag, meter_start_wh=self.wh, started_at=f"t{self.t}",
                       state=state, **kw)  # type: ignore[arg-type]

    def authorizing(self, tag: str = CARD) -> tuple[Session, list[ev.Action]]:
        """Tap, and answer the read and the journal: the machine then asks the backend."""
        out = self.post(ev.Tapped(tag))
        if ev.ReadMeter in kinds(out):
            out = self.post(ev.MeterRead(Purpose.AUTHORIZE, self.reading()))
        assert ev.JournalOpen in kinds(out), out
        session = self.record(tag)
        return session, self.post(ev.Journaled(Step.OPEN, session))

    def accept(self, session: Session, result: AuthResult = ACCEPTED) -> list[ev.Action]:
        return self.post(ev.Authorized(result))

    def begin(self, session: Session, result: AuthResult = ACCEPTED) -> list[ev.Action]:
        """Answer the start's read and journal; returns what the activation did."""
        out = self.post(ev.MeterRead(Purpose.BEGIN, self.reading()))
        activate = one(out, ev.JournalActivate)
        active = Session(**{**session.__dict__, "state": "active", "meter_start_wh": activate.reading.energy_wh,
                            "parent_id": activate.result.parent_id})
        return self.post(ev.Journaled(Step.ACTIVATE, active))

    def start(self, tag: str = CARD, result: AuthResult = ACCEPTED) -> Session:
        session, _ = self.authorizing(tag)
        self.accept(session, result)
        self.begin(session, result)
        assert self.m.session is not None
        return self.m.session

    def stop_answers(self, wh: int | None = None, fault: Fault | None = None) -> list[ev.Action]:
        """Answer a stop's read (None: the meter is silent) and its journal write."""
        out = self.post(ev.MeterRead(Purpose.STOP, None if wh is None else self.reading(wh)))
        stop = one(out, ev.JournalStop)
        ended = Session(**{**stop.session.__dict__, "state": "stopped", "meter_stop_wh": stop.wh,
                           "stop_reason": stop.reason, "stopped_at": stop.at, "meter_stop_estimated": stop.estimated})
        return self.post(ev.Journaled(Step.STOP, ended, fault))

    def later(self, seconds: float) -> list[ev.Action]:
        self.t += seconds
        return self.post(ev.Tick())

    def reserve(self, rid: int = 7, tag: str = CARD, parent: str | None = None, minutes: float = 10) -> str:
        now = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
        return reply(self.post(ev.Reserve(rid, tag, parent, now + timedelta(minutes=minutes), now)))


def kinds(actions: list[ev.Action]) -> list[type]:
    return [type(a) for a in actions]


def work(actions: list[ev.Action]) -> list[type]:
    """The actions that do something (not what is shown, noted, reported or announced)."""
    shown = (ev.Note, ev.Notice, ev.Show, ev.ReportStatus, ev.Announce)
    return [type(a) for a in actions if not isinstance(a, shown)]


def one(actions: list[ev.Action], kind: type) -> ev.Action:
    found = [a for a in actions if isinstance(a, kind)]
    assert len(found) == 1, (kind.__name__, actions)
    return found[0]


def reply(actions: list[ev.Action]) -> object:
    return one(actions, ev.Reply).value  # type: ignore[attr-defined]


def contactor(actions: list[ev.Action]) -> list[bool]:
    return [a.closed for a in actions if isinstance(a, ev.SetContactor)]


def reported(actions: list[ev.Action]) -> list[str]:
    return [a.report.status.value for a in actions if isinstance(a, ev.ReportStatus)]


def notices(actions: list[ev.Action]) -> list[str]:
    return [a.key for a in actions if isinstance(a, ev.Notice)]


def facts(actions: list[ev.Action]) -> list[TxFact]:
    return [a.fact for a in actions if isinstance(a, ev.Announce)]


# ---------------------------------------------------------------------------------- every row of the table
def at(state: State, **kw: object) -> Drive:
    """A connector brought to `state` by events only."""
    if state is State.PREPARING:
        d = Drive(plug=True, **kw)
        d.post(ev.CarChanged(CarState.B))
    elif state is State.RESERVED:
        d = Drive(**kw)
        assert d.reserve() == "Accepted"
    elif state in (State.SUSPENDED_EV, State.CHARGING, State.SUSPENDED_EVSE, State.FINISHING):
        d = Drive(**kw)
        d.start()
        if state is State.CHARGING:
            d.post(ev.CarChanged(CarState.C))
        elif state is State.SUSPENDED_EVSE:
            d.post(ev.PowerLimit(0))
        elif state is State.FINISHING:
            d.post(ev.Tapped(CARD))
            d.stop_answers(5100)
    elif state is State.UNAVAILABLE:
        d = Drive(**kw)
        d.post(ev.SetAvailable(False))
    elif state is State.FAULTED:
        d = Drive(**kw)
        d.post(ev.ContactorChecked(ContactorVerdict.WELDED))
    else:
        d = Drive(**kw)
    assert d.state is state
    return d


def _asking(state: State) -> Drive:
    """Tapped at a connector in `state`: Preparing, the backend being asked."""
    d = at(state)
    d.asked, _ = d.authorizing(CARD)  # type: ignore[attr-defined]
    return d


def _refused_tap(d: Drive) -> None:
    d.accept(d.asked, AuthResult(AuthStatus.INVALID))  # type: ignore[attr-defined]


def _stop(d: Drive) -> None:
    d.post(ev.Tapped(CARD))
    d.stop_answers(5100)


# (trigger, source) -> (how to reach the source, the events that fire the trigger, the destination)
ROWS = {
    ("plug", State.AVAILABLE): (lambda: Drive(plug=True),
                                lambda d: d.post(ev.CarChanged(CarState.B)), State.PREPARING),
    ("tap", State.AVAILABLE): (lambda: at(State.AVAILABLE), lambda d: d.authorizing(), State.PREPARING),  # asking
    ("tap", State.RESERVED): (lambda: at(State.RESERVED), lambda d: d.authorizing(), State.PREPARING),
    ("tap", State.PREPARING): (lambda: at(State.PREPARING), lambda d: d.authorizing(), State.PREPARING),
    ("abandon", State.PREPARING): (lambda: _asking(State.PREPARING), _refused_tap, State.PREPARING),  # plugged
    ("abandon:not reserved", State.PREPARING): (lambda: _asking(State.AVAILABLE), _refused_tap, State.AVAILABLE),
    ("abandon:reserved", State.PREPARING): (lambda: _asking(State.RESERVED), _refused_tap, State.RESERVED),
    ("begin", State.PREPARING): (lambda: _asking(State.AVAILABLE),
                                 lambda d: (d.accept(d.asked), d.begin(d.asked)), State.SUSPENDED_EV),
    ("draw", State.SUSPENDED_EV): (lambda: at(State.SUSPENDED_EV), lambda d: d.post(ev.CarChanged(CarState.C)),
                                   State.CHARGING),
    ("idle", State.CHARGING): (lambda: at(State.CHARGING), lambda d: d.post(ev.CarChanged(CarState.UNKNOWN)),
                               State.SUSPENDED_EV),
    ("pause", State.CHARGING): (lambda: at(State.CHARGING), lambda d: d.post(ev.PowerLimit(0)), State.SUSPENDED_EVSE),
    ("pause", State.SUSPENDED_EV): (lambda: at(State.SUSPENDED_EV), lambda d: d.post(ev.PowerLimit(0)),
                                    State.SUSPENDED_EVSE),
    ("resume", State.SUSPENDED_EVSE): (lambda: at(State.SUSPENDED_EVSE), lambda d: d.post(ev.PowerLimit(None)),
                                       State.SUSPENDED_EV),
    ("end", State.CHARGING): (lambda: at(State.CHARGING), _stop, State.FINISHING),
    ("end", State.SUSPENDED_EV): (lambda: at(State.SUSPENDED_EV), _stop, State.FINISHING),
    ("end", State.SUSPENDED_EVSE): (lambda: at(State.SUSPENDED_EVSE), _stop, State.FINISHING),
    ("release:not reserved", State.FINISHING): (lambda: at(State.FINISHING), lambda d: d.later(5.1), State.AVAILABLE),
    ("hold", State.AVAILABLE): (lambda: at(State.AVAILABLE), lambda d: d.reserve(), State.RESERVED),
    ("unhold", State.RESERVED): (lambda: at(State.RESERVED), lambda d: d.post(ev.CancelReservation(7)),
                                 State.AVAILABLE),
    ("enable", State.UNAVAILABLE): (lambda: at(State.UNAVAILABLE), lambda d: d.post(ev.SetAvailable(True)),
                                    State.AVAILABLE),
    ("recover", State.FAULTED): (lambda: at(State.FAULTED),
                                 lambda d: d.post(ev.ContactorChecked(ContactorVerdict.OK)), State.AVAILABLE),
}
for _source in (State.AVAILABLE, State.RESERVED, State.PREPARING, State.FINISHING, State.FAULTED):
    ROWS[("disable", _source)] = ((lambda s=_source: at(s)), lambda d: d.post(ev.SetAvailable(False)), State.UNAVAILABLE)
for _source in (State.AVAILABLE, State.RESERVED, State.PREPARING, State.FINISHING, State.UNAVAILABLE):
    ROWS[("fault", _source)] = ((lambda s=_source: at(s)),
                                lambda d: d.post(ev.ContactorChecked(ContactorVerdict.WELDED)), State.FAULTED)


def _table_pairs() -> set[tuple[str, State]]:
    pairs = set()
    for row in TRANSITIONS:
        sources = row["source"] if isinstance(row["source"], list) else [row["source"]]
        name = row["trigger"]
        if "unless" in row:
            name += f":not {row['unless']}"
        elif row["trigger"] in ("abandon", "release") and "conditions" not in row:
            name += ":reserved"
        pairs |= {(name, s) for s in sources}
    return pairs


def test_every_row_of_the_table_has_a_test():
    missing = _table_pairs() - set(ROWS) - {("release:reserved", State.FINISHING)}  # the test below
    assert not missing, missing


@pytest.mark.parametrize(("row", "source"), sorted(ROWS, key=lambda r: (r[0], r[1].value)),
                         ids=lambda v: v if isinstance(v, str) else v.value)
def test_row(row, source):
    reach, fire, dest = ROWS[(row, source)]
    d = reach()
    assert d.state is source
    fire(d)
    assert d.state is dest


def test_release_to_reserved_row_holds_though_no_event_reaches_it():
    """Finishing -> Reserved: a reservation cannot be made while a session runs or finishes
    (ReserveNow answers Occupied), so no event reaches this row today; the table still sends a
    Finishing connector that holds a reservation to Reserved."""
    d = at(State.FINISHING)
    assert d.reserve() == "Occupied"
    d.m._reservation = Reservation(9, CARD, None, d.t + 600)  # what no event can do today
    d.later(5.1)
    assert d.state is State.RESERVED


# ---------------------------------------------------------------------------------- ordering rules
def test_the_tap_is_journaled_before_the_backend_is_asked_and_the_start_before_the_contactor():
    d = Drive()
    out = d.post(ev.Tapped(CARD))
    assert work(out) == [ev.ReadMeter] and one(out, ev.ReadMeter).full is False  # energy and power only
    out = d.post(ev.MeterRead(Purpose.AUTHORIZE, d.reading()))
    assert ev.JournalOpen in kinds(out) and ev.Authorize not in kinds(out)
    session = d.record(CARD)
    out = d.post(ev.Journaled(Step.OPEN, session))
    assert one(out, ev.Authorize).session is session
    out = d.accept(session)
    assert one(out, ev.ReadMeter).purpose is Purpose.BEGIN and not contactor(out)
    out = d.begin(session)
    order = [type(a) for a in out if isinstance(a, (ev.SetContactor, ev.WakeDelivery))]
    assert contactor(out) == [True] and d.state is State.SUSPENDED_EV
    assert d.actions.index(one(d.actions, ev.JournalActivate)) < d.actions.index(one(out, ev.SetContactor))
    assert order == [ev.WakeDelivery, ev.SetContactor]  # the START is queued: deliver it


def test_a_recent_idle_reading_spares_the_tap_a_meter_read():
    d = Drive()
    d.post(ev.MeterSampled(d.reading()))
    d.t += 1.4
    out = d.post(ev.Tapped(CARD))
    assert work(out) == [ev.JournalOpen]
    d2 = Drive()
    d2.post(ev.MeterSampled(d2.reading()))
    d2.t += 1.6  # older than 1.5 sampling intervals: read again
    assert ev.ReadMeter in kinds(d2.post(ev.Tapped(CARD)))


def test_the_stop_opens_the_contactor_first_then_reads_then_journals_then_finishes():
    d = Drive()
    d.start()
    out = d.post(ev.Tapped(CARD))
    assert contactor(out) == [False] and one(out, ev.ReadMeter).tries == 3
    assert kinds(out).index(ev.SetContactor) < kinds(out).index(ev.ReadMeter)
    assert d.state is State.SUSPENDED_EV and d.m.busy  # nothing journaled yet
    out = d.post(ev.MeterRead(Purpose.STOP, d.reading(6234)))
    stop = one(out, ev.JournalStop)
    assert (stop.wh, stop.reason, stop.id_tag, stop.estimated) == (6234, "Local", CARD, False)
    assert d.state is State.SUSPENDED_EV
    d.post(ev.Journaled(Step.STOP, Session(**{**stop.session.__dict__, "meter_stop_wh": 6234, "stop_reason": "Local"})))
    assert d.state is State.FINISHING and not d.m.busy and d.m.session is None


def test_while_the_stop_is_recorded_the_driver_sees_the_charge_over_not_charging_0_w():
    """Issue 22: the contactor opened at the stop tap, but the LCD said "Charging 0 W" while the
    stop waited for the journal. What is shown follows what the station did."""
    d = Drive()
    d.start()
    d.post(ev.CarChanged(CarState.C))
    d.post(ev.MeterSampled(d.reading(5600, 7400.0)))
    out = d.post(ev.Tapped(CARD))
    view = one(out, ev.Show).view
    assert view.stopping and view.power_w is None and view.energy_wh == 600
    from station.core.presenter import led_for, screen_for
    assert screen_for(view)[0] == "finishing" and screen_for(view)[1]["energy_wh"] == 600
    assert led_for(view).value == "busy"


def test_a_silent_meter_at_the_stop_bills_the_last_good_reading_marked_estimated():
    d = Drive()
    d.start()
    d.post(ev.MeterSampled(d.reading(5400)))
    d.post(ev.StopPressed())
    out = d.post(ev.MeterRead(Purpose.STOP, None))
    stop = one(out, ev.JournalStop)
    assert (stop.wh, stop.estimated, stop.reason) == (5400, True, "Local")


def test_a_meter_behind_the_start_never_bills_negative_energy():
    d = Drive()
    d.start()
    d.post(ev.StopPressed())
    stop = one(d.post(ev.MeterRead(Purpose.STOP, d.reading(4000))), ev.JournalStop)
    assert stop.wh == 5000


def test_one_stop_at_a_time():
    d = Drive()
    d.start()
    d.post(ev.StopPressed())
    assert reply(d.post(ev.StopRequested("DeAuthorized"))) is False
    assert ev.ReadMeter not in kinds(d.post(ev.StopPressed()))


# ---------------------------------------------------------------------------------- what a tap means
def test_another_card_during_a_session_is_told_so_and_the_session_goes_on():
    d = Drive()
    d.start()
    out = d.post(ev.Tapped(OTHER))
    assert notices(out) == ["other_card"] and not contactor(out) and d.m.session is not None


def test_a_card_of_the_same_group_stops_and_is_named_in_the_stop():
    d = Drive()
    session, _ = d.authorizing(CARD)
    d.accept(session, AuthResult(AuthStatus.ACCEPTED, parent_id="FLEET"))
    d.begin(session)
    out = d.post(ev.Tapped(GROUP_MATE))
    assert one(out, ev.LookupParent).tag == GROUP_MATE and not contactor(out)  # nothing decided yet
    out = d.post(ev.Tapped(GROUP_MATE, parent="FLEET", looked_up=True))
    assert contactor(out) == [False]
    stop = one(d.post(ev.MeterRead(Purpose.STOP, d.reading(5100))), ev.JournalStop)
    assert stop.id_tag == GROUP_MATE
    d2 = Drive()
    s2, _ = d2.authorizing(CARD)
    d2.accept(s2, AuthResult(AuthStatus.ACCEPTED, parent_id="FLEET"))
    d2.begin(s2)
    d2.post(ev.Tapped(GROUP_MATE))
    assert notices(d2.post(ev.Tapped(GROUP_MATE, parent="OTHER", looked_up=True))) == ["other_card"]


def test_taps_while_busy_are_ignored_and_taps_where_nothing_can_start_say_why():
    d = Drive()
    d.post(ev.Tapped(CARD))
    assert d.post(ev.Tapped(OTHER)) == [ev.Note(f"tap {OTHER}")]
    u = at(State.UNAVAILABLE)
    assert notices(u.post(ev.Tapped(CARD))) == ["unavailable"]
    x = at(State.FAULTED)
    out = x.post(ev.Tapped(CARD))
    assert notices(out) == ["faulted"] and one(out, ev.Notice).fields["reason"] == "ContactorWelded"
    f = at(State.FINISHING)
    assert ev.JournalOpen not in kinds(f.post(ev.Tapped(OTHER))) and f.state is State.FINISHING


def test_a_refused_card_is_journaled_with_its_reason_and_the_driver_told():
    d = Drive()
    session, _ = d.authorizing(CARD)
    out = d.accept(session, AuthResult(AuthStatus.INVALID, message="Key is not registered", reason="unknown"))
    end = one(out, ev.JournalEnd)
    assert (end.state, end.reason) == ("refused", "Invalid: Key is not registered (unknown)")
    assert notices(out) == ["refused"] and d.state is State.AVAILABLE
    d2 = Drive(offline_policy="cached")
    s2, _ = d2.authorizing(CARD)
    out = d2.accept(s2, AuthResult(AuthStatus.INVALID, offline=True, reason="backend offline"))
    assert notices(out) == ["offline"] and one(out, ev.Notice).fields["cached"] is True


def test_a_fault_refuses_the_tap_and_a_silent_meter_refuses_it_too():
    d = Drive()
    d.post(ev.FaultChanged("reader", Fault("ReaderFailure", "no SPI")))
    assert d.state is State.FAULTED
    d2 = Drive()
    d2.post(ev.Tapped(CARD))
    out = d2.post(ev.MeterRead(Purpose.AUTHORIZE, None))
    assert notices(out) == ["meter_fault"] and ev.JournalOpen not in kinds(out) and d2.state is State.AVAILABLE


# ---------------------------------------------------------------------------------- plug, unplug, replug, finishing
def test_accepted_before_the_plug_waits_then_the_plug_starts():
    d = Drive(plug=True)
    session, _ = d.authorizing(CARD)
    out = d.accept(session)
    assert d.m.pending and ev.ReadMeter not in kinds(out) and d.state is State.PREPARING
    assert TxFact.AUTHORIZED in facts(out)
    out = d.post(ev.CarChanged(CarState.B))
    assert one(out, ev.ReadMeter).purpose is Purpose.BEGIN and TxFact.EV_CONNECTED in facts(out)
    d.begin(session)
    assert d.state is State.SUSPENDED_EV and contactor(d.actions) == [True]


def test_the_same_card_cancels_the_wait_and_the_wait_times_out():
    d = Drive(plug=True)
    session, _ = d.authorizing(CARD)
    d.accept(session)
    out = d.post(ev.Tapped(CARD))
    assert (one(out, ev.JournalEnd).state, one(out, ev.JournalEnd).reason) == ("aborted", "cancelled")
    assert d.state is State.AVAILABLE and not d.m.pending
    # the authorization ends unused: announced after the journal has its reason (OCPP 2.0.1 ends a
    # transaction that started at the authorization)
    assert work(out)[0] is ev.JournalEnd and facts(out) == [TxFact.DEAUTHORIZED]
    assert one(out, ev.Announce).session is session
    d2 = Drive(plug=True)
    s2, _ = d2.authorizing(CARD)
    d2.accept(s2)
    d2.later(59)
    assert d2.state is State.PREPARING
    out = d2.later(2)
    assert one(out, ev.JournalEnd).reason == "ConnectionTimeout" and d2.state is State.AVAILABLE
    assert facts(out) == [TxFact.DEAUTHORIZED] and one(out, ev.Announce).session is s2


def test_plugged_without_a_card_falls_back_after_the_connection_timeout_only_when_unplugged():
    d = at(State.PREPARING)
    d.later(61)
    assert d.state is State.PREPARING  # plugged: Preparing means "waiting for a card"
    d.post(ev.CarChanged(CarState.A))
    assert d.state is State.AVAILABLE


def test_unplugged_during_the_start_read_gives_no_power():
    d = Drive(plug=True, car=CarState.B)
    session, _ = d.authorizing(CARD)
    d.accept(session)
    d.post(ev.CarChanged(CarState.A))
    out = d.post(ev.MeterRead(Purpose.BEGIN, d.reading()))
    assert ev.JournalActivate not in kinds(out) and not contactor(out)
    assert one(out, ev.JournalEnd).reason == "EVDisconnected" and d.state is State.AVAILABLE


def test_unplug_ends_the_session():
    d = Drive(plug=True, car=CarState.B)
    d.post(ev.CarChanged(CarState.B))
    d.start()
    out = d.post(ev.CarChanged(CarState.A))
    assert contactor(out) == [False] and TxFact.EV_DISCONNECTED in facts(out)
    assert one(d.post(ev.MeterRead(Purpose.STOP, d.reading(5200))), ev.JournalStop).reason == "EVDisconnected"


def test_unplug_and_replug_with_stop_on_disconnect_off_powers_the_car_again():
    d = Drive(plug=True, car=CarState.B, stop_on_ev_disconnect=False)
    d.start()
    d.post(ev.CarChanged(CarState.C))
    out = d.post(ev.CarChanged(CarState.A))
    assert contactor(out) == [False] and d.state is State.SUSPENDED_EV and d.m.session is not None
    assert ev.ReadMeter not in kinds(out)
    out = d.post(ev.CarChanged(CarState.B))
    assert contactor(out) == [True] and d.state is State.SUSPENDED_EV
    # Unplugged during a pause the station ordered: the replug does not end the pause.
    d.post(ev.PowerLimit(0))
    d.post(ev.CarChanged(CarState.A))
    out = d.post(ev.CarChanged(CarState.B))
    assert not contactor(out) and d.state is State.SUSPENDED_EVSE


def test_finishing_lasts_until_the_unplug_with_a_plug_sensor_and_finishing_s_without():
    d = Drive(plug=True, car=CarState.B)
    d.start()
    _stop(d)
    d.later(100)
    assert d.state is State.FINISHING
    d.post(ev.CarChanged(CarState.A))
    assert d.state is State.AVAILABLE
    d2 = at(State.FINISHING)
    d2.later(4.9)
    assert d2.state is State.FINISHING
    d2.later(0.2)
    assert d2.state is State.AVAILABLE


def test_charging_follows_the_car():
    d = at(State.SUSPENDED_EV)
    out = d.post(ev.CarChanged(CarState.C))
    assert d.state is State.CHARGING and TxFact.ENERGY_TRANSFER_STARTED in facts(out)
    out = d.post(ev.CarChanged(CarState.UNKNOWN))
    assert d.state is State.SUSPENDED_EV and TxFact.ENERGY_TRANSFER_STOPPED in facts(out)


def test_a_car_that_never_draws_power_is_ended_after_the_no_power_timeout():
    d = Drive(no_power_timeout_s=600.0)
    d.start()
    d.t += 599
    assert ev.ReadMeter not in kinds(d.post(ev.MeterSampled(d.reading())))
    d.t += 2
    out = d.post(ev.MeterSampled(d.reading()))
    assert notices(out) == ["no_power_timeout"] and contactor(out) == [False]
    assert one(d.post(ev.MeterRead(Purpose.STOP, d.reading())), ev.JournalStop).reason == "Other"
    d2 = Drive(no_power_timeout_s=600.0)  # a car that drew once keeps its session
    d2.start()
    d2.post(ev.CarChanged(CarState.C))
    d2.post(ev.CarChanged(CarState.UNKNOWN))
    d2.t += 700
    assert not contactor(d2.post(ev.MeterSampled(d2.reading())))


def test_the_reading_is_journaled_every_interval_and_at_each_change_of_state():
    d = Drive(journal_interval_s=60.0)
    d.start()
    d.t += 10
    assert ev.JournalSample not in kinds(d.post(ev.MeterSampled(d.reading(5010))))
    d.post(ev.CarChanged(CarState.C))
    d.t += 1
    assert one(d.post(ev.MeterSampled(d.reading(5020, 7000.0))), ev.JournalSample).wh == 5020
    d.t += 1
    assert ev.JournalSample not in kinds(d.post(ev.MeterSampled(d.reading(5030, 7000.0))))
    d.t += 60
    assert ev.JournalSample in kinds(d.post(ev.MeterSampled(d.reading(5150, 7000.0))))


# ---------------------------------------------------------------------------------- reservations
def test_a_reserved_connector_stays_reserved_at_the_plug_and_admits_its_card_and_group_only():
    d = Drive(plug=True)
    assert d.reserve(parent="FLEET") == "Accepted" and d.state is State.RESERVED
    d.post(ev.CarChanged(CarState.B))
    assert d.state is State.RESERVED
    assert one(d.post(ev.Tapped(OTHER)), ev.LookupParent).tag == OTHER
    out = d.post(ev.Tapped(OTHER, parent="SOMEONE", looked_up=True))
    assert notices(out) == ["reserved"] and d.state is State.RESERVED
    d.post(ev.Tapped(GROUP_MATE, parent="FLEET", looked_up=True))
    assert d.state is State.PREPARING
    out = d.post(ev.MeterRead(Purpose.AUTHORIZE, d.reading()))
    assert one(out, ev.JournalOpen).reservation_id == 7


def test_reservation_answers_and_expiry_with_a_car_plugged_in():
    assert at(State.FAULTED).reserve() == "Faulted"
    assert at(State.UNAVAILABLE).reserve() == "Unavailable"
    assert at(State.CHARGING).reserve() == "Occupied"
    d = Drive(plug=True)
    assert d.reserve(minutes=-1) == "Rejected"
    assert d.reserve(rid=7) == "Accepted" and d.reserve(rid=8) == "Occupied" and d.reserve(rid=7) == "Accepted"
    d.post(ev.CarChanged(CarState.B))
    d.later(601)
    assert d.state is State.PREPARING  # the plugged car now waits for a card
    assert reply(d.post(ev.CancelReservation(7))) is False


# ---------------------------------------------------------------------------------- availability
def test_unavailable_now_or_after_the_session_straight_from_finishing():
    d = Drive()
    out = d.post(ev.SetAvailable(False))
    assert reply(out) == "Accepted" and one(out, ev.Remember).value is False and d.state is State.UNAVAILABLE
    d.post(ev.SetAvailable(True))
    assert d.state is State.AVAILABLE
    d.start()
    assert reply(d.post(ev.SetAvailable(False))) == "Scheduled" and d.state is State.SUSPENDED_EV
    _stop(d)
    out = d.later(5.1)
    assert d.state is State.UNAVAILABLE and "Available" not in reported(out)


def test_a_card_being_authorized_schedules_the_change_too():
    d = Drive()
    d.post(ev.Tapped(CARD))
    assert reply(d.post(ev.SetAvailable(False))) == "Scheduled"


def test_unavailable_survives_a_restart_and_a_fault_clearing():
    d = Drive.__new__(Drive)
    d.t, d.actions = 0.0, []
    d.m = Connector(Settings(), lambda: d.t, lambda: "t")
    d.post(ev.Started(available=False))
    assert d.state is State.UNAVAILABLE
    d.post(ev.ContactorChecked(ContactorVerdict.WELDED))
    assert d.state is State.FAULTED
    d.post(ev.ContactorChecked(ContactorVerdict.OK))
    assert d.state is State.UNAVAILABLE


# ---------------------------------------------------------------------------------- limits
def test_a_limit_of_zero_pauses_with_the_contactor_open_and_lifting_it_closes_again():
    d = at(State.CHARGING)
    out = d.post(ev.PowerLimit(0))
    assert contactor(out) == [False] and d.state is State.SUSPENDED_EVSE
    out = d.post(ev.PowerLimit(None))
    assert contactor(out) == [True] and d.state is State.CHARGING  # the car still asks for power
    assert d.m.limit_w is None


def test_a_pause_lifted_while_the_car_still_asks_for_power_is_charging_again():
    """A pilot keeps saying C through the station's pause: no new car event comes, and the session
    must still be Charging once the contactor closes again."""
    d = at(State.CHARGING)
    d.post(ev.PowerLimit(0))
    out = d.post(ev.PowerLimit(None))
    assert d.state is State.CHARGING and reported(out) == ["SuspendedEV", "Charging"]


def test_a_session_that_starts_under_a_zero_limit_starts_paused_without_power():
    d = Drive()
    d.post(ev.PowerLimit(0))
    d.start()
    assert d.state is State.SUSPENDED_EVSE and contactor(d.actions) == []


def test_a_limit_lifted_during_the_stop_does_not_close_the_contactor():
    d = at(State.SUSPENDED_EVSE)
    d.post(ev.StopPressed())
    out = d.post(ev.PowerLimit(None))
    assert True not in contactor(out)
    d.stop_answers(5100)
    assert d.state is State.FINISHING and contactor(d.actions)[-1] is False


def test_the_offered_current_never_exceeds_the_installation_and_pauses_below_six_amps_with_a_controller():
    d = Drive(max_current_a=16.0, current_control=True, phases=3)
    d.start()
    assert d.m.offered_a == 16.0
    out = d.post(ev.CurrentLimit(32.0))
    assert d.m.offered_a == 16.0 and ev.SetCurrent not in kinds(out)
    out = d.post(ev.PowerLimit(11040.0))  # 16 A at 230 V on three phases
    assert d.m.offered_a == 16.0
    out = d.post(ev.PowerLimit(6900.0))  # 10 A
    assert one(out, ev.SetCurrent).amps == pytest.approx(10.0) and d.state is State.SUSPENDED_EV
    out = d.post(ev.CurrentLimit(5.0))
    assert one(out, ev.SetCurrent).amps == 0.0 and contactor(out) == [False] and d.state is State.SUSPENDED_EVSE
    out = d.post(ev.CurrentLimit(6.0))
    assert one(out, ev.SetCurrent).amps == 6.0 and contactor(out) == [True] and d.state is State.SUSPENDED_EV


def currents(actions: list[ev.Action]) -> list[float]:
    return [a.amps for a in actions if isinstance(a, ev.SetCurrent)]  # type: ignore[attr-defined]


def order(actions: list[ev.Action]) -> list[str]:
    """The contactor commands and the currents, in the order given."""
    return [f"contactor {a.closed}" if isinstance(a, ev.SetContactor) else f"{a.amps:g} A"  # type: ignore[attr-defined]
            for a in actions if isinstance(a, (ev.SetContactor, ev.SetCurrent))]


def controlled(**kw: object) -> Drive:
    """A station with a charge controller: the pilot tells the car's state (the plug too)."""
    values: dict[str, object] = {"max_current_a": 16.0, "current_control": True, "plug": True, "car": CarState.A}
    values.update(kw)
    return Drive(**values)  # type: ignore[arg-type]


def test_zero_amps_comes_before_every_opening_of_the_contactor_and_current_after_its_closing():
    """IEC 61851: the pilot tells the car to stop drawing before the power is cut; and no current is
    ever offered while the contactor is commanded open."""
    d = controlled()
    d.post(ev.CarChanged(CarState.B))
    d.start()
    assert order(d.actions) == ["0 A", "contactor True", "16 A"]  # 0 A as the machine starts
    out = d.post(ev.CurrentLimit(0))  # a pause
    assert order(out) == ["0 A", "contactor False"]
    out = d.post(ev.CurrentLimit(None))
    assert order(out) == ["contactor True", "16 A"]
    out = d.post(ev.FaultChanged("pilot", Fault("GroundFailure", "residual current", "ResidualCurrent")))
    assert order(out) == ["0 A", "contactor False"]  # the session ends: current first
    d.stop_answers(5100)
    assert d.state is State.FAULTED and d.m.offered_a == 0
    for stop in (ev.StopPressed(), ev.CarChanged(CarState.A)):
        d = controlled()
        d.post(ev.CarChanged(CarState.B))
        d.start()
        assert order(d.post(stop)) == ["0 A", "contactor False"]


def test_no_current_is_offered_to_a_car_without_a_session():
    d = controlled()
    d.post(ev.CarChanged(CarState.B))
    assert d.state is State.PREPARING and currents(d.actions) in ([], [0.0])
    d.post(ev.CurrentLimit(32))
    d.post(ev.CableLimit(32))
    d.post(ev.CarChanged(CarState.C))  # a car that asks anyway
    assert all(a == 0 for a in currents(d.actions)) and d.m.offered_a in (None, 0.0)
    d = controlled(car=CarState.B)  # plugged in at start: Preparing, nothing offered
    assert d.state is State.PREPARING and all(a == 0 for a in currents(d.actions))


def test_the_car_s_states_move_the_connector():
    """Issue 20's mapping: A Available (Finishing to Available), B without a session Preparing, B in a
    session with current SuspendedEV, withheld SuspendedEVSE, C/D Charging, E/F Faulted."""
    d = controlled()
    assert d.state is State.AVAILABLE
    d.post(ev.CarChanged(CarState.B))
    assert d.state is State.PREPARING
    d.start()
    assert d.state is State.SUSPENDED_EV and d.m.offered_a == 16
    d.post(ev.CarChanged(CarState.C))
    assert d.state is State.CHARGING
    d.post(ev.CarChanged(CarState.D))
    assert d.state is State.CHARGING
    d.post(ev.CarChanged(CarState.B))
    assert d.state is State.SUSPENDED_EV
    d.post(ev.CurrentLimit(3))
    assert d.state is State.SUSPENDED_EVSE and d.m.offered_a == 0
    d.post(ev.CurrentLimit(None))
    d.post(ev.StopPressed())
    d.stop_answers(5100)
    assert d.state is State.FINISHING
    d.post(ev.CarChanged(CarState.A))
    assert d.state is State.AVAILABLE
    d.post(ev.CarChanged(CarState.F))
    assert d.state is State.FAULTED


def test_the_offer_is_the_lowest_of_rating_limits_and_cable_and_the_minimum_is_the_controller_s():
    d = controlled(min_current_a=8.0, max_current_a=32.0)
    d.post(ev.CarChanged(CarState.B))
    d.start()
    assert d.m.offered_a == 32
    d.post(ev.CableLimit(20))
    assert d.m.offered_a == 20
    d.post(ev.CurrentLimit(13))
    assert d.m.offered_a == 13
    d.post(ev.CableLimit(None))
    out = d.post(ev.CurrentLimit(7.5))  # below this installation's 8 A: a pause
    assert d.state is State.SUSPENDED_EVSE and currents(out) == [0.0]
    d.post(ev.CurrentLimit(8))
    assert d.state is State.SUSPENDED_EV and d.m.offered_a == 8


def test_watts_are_spread_over_the_phases_the_meter_sees_the_car_draw_on():
    d = controlled(phases=3, max_current_a=32.0)
    d.post(ev.CarChanged(CarState.B))
    d.start()
    d.post(ev.PowerLimit(4600.0))
    assert d.m.offered_a == pytest.approx(4600 / 690)  # three phases until the meter tells
    one_phase = MeterReading(d.wh + 10, 1500.0, current_a=(6.5, 0.0, 0.0), taken_at=d.t)
    out = d.post(ev.MeterSampled(one_phase))
    assert currents(out) == [pytest.approx(4600 / 230)]  # 20 A on one phase
    quiet = MeterReading(d.wh + 10, 0.0, current_a=(0.0, 0.0, 0.0), taken_at=d.t)
    assert currents(d.post(ev.MeterSampled(quiet))) == []  # no current: the phases stay as seen
    d.post(ev.PowerLimit(None))
    assert d.m.offered_a == 32


def test_a_current_limit_without_a_controller_keeps_today_s_rule():
    d = at(State.CHARGING)
    out = d.post(ev.CurrentLimit(3))
    assert d.state is State.CHARGING and not contactor(out)  # only 0 pauses a contactor


def test_without_a_controller_only_zero_pauses():
    d = at(State.SUSPENDED_EV)
    out = d.post(ev.PowerLimit(3000.0))
    assert d.state is State.SUSPENDED_EV and not contactor(out)


# ---------------------------------------------------------------------------------- faults
def test_welded_while_available_faults_refuses_and_recovers_on_the_contact_s_evidence():
    d = Drive()
    d.post(ev.MeterSampled(d.reading()))
    out = d.post(ev.ContactorChecked(ContactorVerdict.WELDED))
    assert d.state is State.FAULTED and reported(out) == ["Faulted"]
    fault = one(out, ev.JournalFault)
    assert (fault.source, fault.wh, fault.fault.vendor) == ("contactor", 5000, "ContactorWelded")
    assert d.m.status().vendor_error_code == "ContactorWelded"
    out = d.post(ev.ContactorChecked(ContactorVerdict.OK))
    assert d.state is State.AVAILABLE and one(out, ev.JournalFault).fault is None


def test_drop_out_and_a_meter_fault_end_the_session_then_fault_but_a_reader_fault_does_not():
    for verdict, followed, text in ((ContactorVerdict.DROPPED, True, "dropped out"),
                                    (ContactorVerdict.DROPPED, False, "did not close")):
        d = at(State.CHARGING)
        out = d.post(ev.ContactorChecked(verdict, followed))
        assert contactor(out) == [False] and text in d.m.status().info
        d.stop_answers(5300)
        assert d.state is State.FAULTED
        assert one([a for a in d.actions if isinstance(a, ev.JournalStop)], ev.JournalStop).reason == "Other"
    d = at(State.CHARGING)
    d.post(ev.FaultChanged("meter", Fault("PowerMeterFailure", "no reply")))
    d.stop_answers(None)
    assert d.state is State.FAULTED and d.m.status().error_code == "PowerMeterFailure"
    d = at(State.CHARGING)
    out = d.post(ev.FaultChanged("reader", Fault("ReaderFailure", "no SPI")))
    assert not contactor(out) and d.state is State.CHARGING
    _stop(d)  # the stop button or the unplug still end it; then Faulted
    assert d.state is State.FAULTED


def test_a_fault_while_the_car_is_plugged_in_aborts_the_start():
    d = Drive(plug=True)
    session, _ = d.authorizing(CARD)
    d.accept(session)
    d.post(ev.ContactorChecked(ContactorVerdict.WELDED))
    out = d.post(ev.CarChanged(CarState.B))
    assert one(out, ev.JournalEnd).reason == "fault" and not contactor(out)


def test_a_pilot_error_ends_the_session_and_faults_until_it_clears():
    d = Drive(plug=True, car=CarState.B)
    d.start()
    d.post(ev.CarChanged(CarState.C))
    out = d.post(ev.CarChanged(CarState.E))
    assert contactor(out) == [False] and TxFact.EV_DISCONNECTED not in facts(out)
    d.stop_answers(5100)
    assert d.state is State.FAULTED and d.m.status().vendor_error_code == "PilotError"
    d.post(ev.CarChanged(CarState.B))
    assert d.state is State.PREPARING  # still plugged in: it waits for a card (B without a session)
    d.post(ev.CarChanged(CarState.A))
    assert d.state is State.AVAILABLE


# ---------------------------------------------------------------------------------- remote start and stop, reset
def test_remote_start_answers_first_then_starts():
    d = Drive()
    out = d.post(ev.RemoteStart(CARD))
    assert reply(out) is True and kinds(out)[:2] == [ev.Continue, ev.Reply] and d.state is State.AVAILABLE
    out = d.post(ev.Continued())
    assert d.state is State.PREPARING and ev.ReadMeter in kinds(out)
    out = d.post(ev.MeterRead(Purpose.AUTHORIZE, d.reading()))
    out = d.post(ev.Journaled(Step.OPEN, d.record(CARD)))
    assert ev.Authorize not in kinds(out) and one(out, ev.ReadMeter).purpose is Purpose.BEGIN  # already authorized


def test_remote_start_refusals():
    assert reply(at(State.CHARGING).post(ev.RemoteStart(CARD))) is False
    assert reply(at(State.FAULTED).post(ev.RemoteStart(CARD))) is False
    assert reply(at(State.UNAVAILABLE).post(ev.RemoteStart(CARD))) is False
    assert reply(Drive().post(ev.RemoteStart(CARD, connector_id=2))) is False
    busy = Drive()
    busy.post(ev.Tapped(OTHER))
    assert reply(busy.post(ev.RemoteStart(CARD))) is False
    r = Drive()
    r.reserve(parent="FLEET")
    assert one(r.post(ev.RemoteStart(OTHER)), ev.LookupParent).tag == OTHER
    assert reply(r.post(ev.RemoteStart(OTHER, parent="NOPE", looked_up=True))) is False
    assert reply(r.post(ev.RemoteStart(GROUP_MATE, parent="FLEET", looked_up=True))) is True


def test_remote_stop_names_the_backend_s_session():
    d = Drive()
    session = d.start()
    item = OutboxItem(1, MessageKind.START, session.id, {}, "t")
    d.post(ev.Delivered(item, DeliveryResult(backend_session_id="42")))
    assert reply(d.post(ev.RemoteStop("41"))) is False
    out = d.post(ev.RemoteStop("42"))
    assert reply(out) is True and contactor(out) == [False] and TxFact.DEAUTHORIZED in facts(out)
    assert one(d.post(ev.MeterRead(Purpose.STOP, d.reading(5100))), ev.JournalStop).reason == "Remote"


@pytest.mark.parametrize("hard", [False, True])
def test_reset_stops_the_session_first_then_exits_draining_when_online(hard):
    d = Drive()
    d.post(ev.BackendLink(True))
    d.start()
    out = d.post(ev.Reset(hard))
    assert reply(out) is True and contactor(out) == [False] and ev.Exit not in kinds(out)
    out = d.stop_answers(5100)
    exit_ = one(out, ev.Exit)
    assert (exit_.kind, exit_.drain) == ("hard" if hard else "soft", True)
    assert one([a for a in d.actions if isinstance(a, ev.JournalStop)], ev.JournalStop).reason == \
        ("HardReset" if hard else "SoftReset")
    idle = Drive()
    assert one(idle.post(ev.Reset(False)), ev.Exit) == ev.Exit("soft", drain=False)


# ---------------------------------------------------------------------------------- the journal failing (issue 22)
def test_a_journal_that_cannot_take_the_tap_refuses_it_and_says_why():
    d = Drive()
    d.post(ev.Tapped(CARD))
    d.post(ev.MeterRead(Purpose.AUTHORIZE, d.reading()))
    out = d.post(ev.Journaled(Step.OPEN, None, FULL))
    assert notices(out) == ["storage_refused"] and ev.Authorize not in kinds(out) and d.state is State.AVAILABLE
    status = d.m.status()
    assert (status.status, status.error_code, status.vendor_error_code) == (State.AVAILABLE, "OtherError", "JournalFull")
    assert reply(d.post(ev.RemoteStart(CARD))) is False  # new sessions are refused
    d.t += 6
    view = d.m.view()
    from station.core.presenter import led_for, screen_for
    assert screen_for(view)[0] == "storage_fault" and led_for(view).value == "fault"


def test_a_stop_the_journal_cannot_take_does_not_hold_the_connector_and_the_probe_clears_the_fault():
    d = at(State.CHARGING)
    d.post(ev.Tapped(CARD))
    out = d.stop_answers(5300, fault=FULL)
    assert d.state is State.FINISHING and not d.m.busy and "storage" in d.m.faults
    assert "Finishing" in reported(out)
    d.later(5.1)
    assert d.state is State.AVAILABLE
    out = d.later(5.0)
    assert ev.JournalProbe in kinds(out)
    out = d.post(ev.Journaled(Step.PROBE))
    assert "storage" not in d.m.faults and one(out, ev.JournalFault).fault is None
    assert reported(out) == ["Available"]


def test_a_journal_that_fails_at_start_up_is_a_fault_that_refuses_but_does_not_fault_the_connector():
    d = Drive.__new__(Drive)
    d.t = 0.0
    d.m = Connector(Settings(), lambda: d.t, lambda: "t")
    d.actions = []
    ro = Fault("OtherError", "attempt to write a readonly database", "JournalReadOnly")
    out = d.post(ev.Started(storage=ro))
    assert d.state is State.AVAILABLE and d.m.status().vendor_error_code == "JournalReadOnly"
    assert one(out, ev.Show).view.refusing == ro


# ---------------------------------------------------------------------------------- the backend's START and 2.0.1 facts
@pytest.mark.parametrize(("in_authorize", "result", "delivered"), [
    (True, ACCEPTED, True),
    (True, AuthResult(AuthStatus.ACCEPTED, offline=True), False),  # the offline policy accepted: START queued
    (False, ACCEPTED, False),
])
def test_start_is_sent_when_the_backend_says_it_is(in_authorize, result, delivered):
    d = Drive(starts_session_in_authorize=in_authorize)
    session, _ = d.authorizing(CARD)
    d.accept(session, result)
    out = d.post(ev.MeterRead(Purpose.BEGIN, d.reading()))
    assert one(out, ev.JournalActivate).start_delivered is delivered


def test_a_remote_start_s_session_queues_its_start():
    d = Drive(starts_session_in_authorize=True)
    d.post(ev.RemoteStart(CARD))
    d.post(ev.Continued())
    d.post(ev.MeterRead(Purpose.AUTHORIZE, d.reading()))
    d.post(ev.Journaled(Step.OPEN, d.record(CARD)))
    assert one(d.post(ev.MeterRead(Purpose.BEGIN, d.reading())), ev.JournalActivate).start_delivered is False


def test_transaction_facts_in_the_order_they_happen():
    d = Drive(plug=True)
    d.post(ev.CarChanged(CarState.B))
    d.start()
    d.post(ev.CarChanged(CarState.C))
    d.post(ev.CarChanged(CarState.B))
    d.post(ev.Tapped(CARD))
    d.stop_answers(5200)
    d.post(ev.CarChanged(CarState.A))
    assert facts(d.actions) == [TxFact.EV_CONNECTED, TxFact.AUTHORIZED, TxFact.POWER_PATH_CLOSED,
                                TxFact.ENERGY_TRANSFER_STARTED, TxFact.ENERGY_TRANSFER_STOPPED,
                                TxFact.DEAUTHORIZED, TxFact.POWER_PATH_OPENED, TxFact.EV_DISCONNECTED]
    sessions = {a.session.id for a in d.actions if isinstance(a, ev.Announce) and a.session is not None}
    assert sessions == {1}


# ---------------------------------------------------------------------------------- the rest
def test_tune_takes_the_backend_s_settings_and_refuses_others():
    d = Drive()
    d.post(ev.Tune({"connection_timeout_s": 30, "stop_on_ev_disconnect": False}))
    assert d.m.settings.connection_timeout_s == 30.0 and d.m.settings.stop_on_ev_disconnect is False
    with pytest.raises(KeyError):
        d.post(ev.Tune({"max_current_a": 80}))


def test_the_link_shows_and_wakes_the_deliverer():
    d = Drive()
    out = d.post(ev.BackendLink(True))
    assert ev.WakeDelivery in kinds(out) and one(out, ev.Show).view.online
    out = d.post(ev.BackendLink(False))
    assert ev.WakeDelivery not in kinds(out) and one(out, ev.Note).text == "backend offline"


def test_status_reports_each_change_and_the_view_only_when_it_changes():
    d = Drive()
    assert d.post(ev.Tick()) == []
    out = d.post(ev.ContactorChecked(ContactorVerdict.WELDED))
    assert reported(out) == ["Faulted"] and ev.Show in kinds(out)
