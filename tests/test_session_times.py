"""A session's times through the real journal and store (station/core/journal.py, sessiontime.py),
on an injected machine (tests/test_clock.py's): the system clock stepped forward and back during
sessions, before and after a backend's correction; the billing export's marks.

Expected durations are the machine's own monotonic bookkeeping, never the code's.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from station import sessionlist
from station.clock import MONO_PREFIX, parse_iso
from station.core import sessiontime
from station.core.delivery import Deliverer
from station.core.journal import Journal
from station.core.model import AuthResult, AuthStatus, DeliveryResult, MeterReading
from station.core.ports import Backend
from station.store import Store
from tests.support.machine import DAY, Machine, at

TAG = "D64FC93B"


class Rig:
    def __init__(self, tmp_path, machine: Machine, boot: str = "boot1") -> None:
        self.m = machine
        self.clock = machine.clock(boot)
        self.store = Store.open(tmp_path)
        self.journal = Journal(self.store, self.clock, 1)
        self.wh = 1000
        self.true_spans: list[float] = []

    async def session(self, seconds: float, during=None, at_fraction: float = 0.5) -> None:
        """A session lasting `seconds` of monotonic time; `during()` happens part-way through."""
        reading = MeterReading(self.wh)
        s = self.journal.open(TAG, reading, None)
        s = self.journal.activate(s, reading, AuthResult(AuthStatus.ACCEPTED), start_delivered=False)
        self.m.run(seconds * at_fraction)
        if during is not None:
            during()
        self.m.run(seconds * (1 - at_fraction))
        self.wh += 500
        _, error = self.journal.close(s, self.wh, (), False, "Local", None, self.clock.stamp())
        assert error is None
        self.true_spans.append(seconds)

    def check(self) -> list:
        """Every session lasts its true duration; starts in id order, every stop after its start."""
        sessions = self.store.sessions()
        assert len(sessions) == len(self.true_spans)
        previous_start = None
        for s, span in zip(sessions, self.true_spans, strict=True):
            start, stop = parse_iso(s.started_at), parse_iso(s.stopped_at or "")
            assert abs((stop - start).total_seconds() - span) < 0.01, (s.id, s.started_at, s.stopped_at, span)
            assert s.extra["duration_s"] == pytest.approx(span, abs=0.002)
            assert previous_start is None or start >= previous_start, (s.id, s.started_at, previous_start)
            previous_start = start
        return sessions


@pytest.mark.parametrize("synced", [True, False], ids=["ntp", "backend"])
async def test_steps_of_three_days_and_minus_one_hour_during_sessions_keep_durations_and_order(tmp_path, synced):
    m = Machine(synced=synced)
    rig = Rig(tmp_path, m)
    if not synced:
        rig.clock.set(at(m))  # the backend told the time before the steps
    await rig.session(1200)
    m.run(60)
    await rig.session(3600, during=lambda: m.step(3 * DAY))
    m.run(60)
    await rig.session(900)
    m.run(60)
    await rig.session(1800, during=lambda: m.step(-3600))
    m.run(30)
    await rig.session(300)  # starts within the hour the clock went back
    m.run(30)
    await rig.session(600, during=lambda: m.step(-3600), at_fraction=0.1)
    sessions = rig.check()
    stops = [parse_iso(s.stopped_at or "") for s in sessions]
    starts = [parse_iso(s.started_at) for s in sessions]
    assert all(b >= a for a, b in zip(stops, starts[1:], strict=False))  # no session starts before the last stopped
    if synced:  # NTP's steps are the time: the session across +3 days re-derived its start, the old one kept
        assert "started_at_was" in sessions[1].extra
        assert parse_iso(sessions[1].extra["started_at_was"]) < starts[1] - timedelta(days=2.9)
    else:  # the backend's time holds: a step of the unsynchronized system clock changes nothing
        for s, true_start in zip(sessions, _true_starts(rig), strict=True):
            assert abs((parse_iso(s.started_at) - true_start).total_seconds()) < 0.01
            assert "started_at_was" not in s.extra and not sessionlist.summary(s)["time_estimated"]


def _true_starts(rig: Rig) -> list:
    """The true start of each session: from the machine's true time at the stop, minus the duration."""
    out = []
    for s, span in zip(rig.store.sessions(), rig.true_spans, strict=True):
        stop_mono = float(s.extra["stop_mono"].partition(":")[2])
        out.append(rig.m.true() - timedelta(seconds=rig.m.mono - stop_mono + span))
    return out


async def test_a_backends_correction_during_a_session_keeps_its_duration(tmp_path):
    m = Machine(wall_error=-DAY)
    rig = Rig(tmp_path, m)
    rig.clock.set(at(m, -DAY + 5))  # a backend a day and a bit behind ...
    await rig.session(600, during=lambda: rig.clock.set(at(m)))  # ... corrects itself mid-session
    m.run(10)
    await rig.session(600, during=lambda: rig.clock.set(at(m, -7200)))  # and goes back two hours
    m.run(10)
    await rig.session(60)
    rig.check()


async def test_sessions_before_the_clock_is_known_get_exact_times_once_it_is(tmp_path):
    m = Machine(wall_error=-3 * DAY)  # fake-hwclock, no NTP, no backend yet
    rig = Rig(tmp_path, m)
    await rig.session(1000, during=lambda: m.step(3 * DAY))  # NTP steps the (unsynchronized) clock
    m.run(50)
    await rig.session(500)
    first, second = rig.store.sessions()
    assert first.started_at.startswith(MONO_PREFIX) and (second.stopped_at or "").startswith(MONO_PREFIX)
    rows = sessionlist.rows(rig.store, clock=rig.clock)  # the export, before the clock is known
    assert [r["time_estimated"] for r in rows] == [["start", "stop"], ["start", "stop"]]
    shown = [(parse_iso(r["started_at"]), parse_iso(r["stopped_at"])) for r in rows]
    assert abs((shown[0][1] - shown[0][0]).total_seconds() - 1000) < 0.01  # estimates on one mapping
    assert shown[1][0] > shown[0][1]
    m.run(20)
    rig.clock.set(at(m))  # a backend tells the time
    assert sessiontime.sweep(rig.store, rig.clock) == 2
    rig.check()
    for s, true_start in zip(rig.store.sessions(), _true_starts(rig), strict=True):
        assert abs((parse_iso(s.started_at) - true_start).total_seconds()) < 0.01
        assert sessiontime.estimated_times(s) == []


async def test_a_stop_after_a_power_cut_is_estimated_and_never_before_the_start(tmp_path):
    m = Machine(synced=True)
    rig = Rig(tmp_path, m)
    reading = MeterReading(1000)
    s = rig.journal.activate(rig.journal.open(TAG, reading, None), reading, AuthResult(AuthStatus.ACCEPTED),
                            start_delivered=False)
    m.run(100)
    m.step(-2 * DAY)  # the Pi comes back with a fake-hwclock time two days old, and NTP agrees (wrongly)
    after = Journal(rig.store, m.clock(boot="boot2"), 1)
    after.recover(after.leftovers(), MeterReading(1300))
    [s] = rig.store.sessions()
    assert s.stop_reason == "PowerLoss" and s.stopped_at == s.started_at
    assert sessiontime.estimated_times(s) == ["stop"] and "duration_s" not in s.extra
    [row] = sessionlist.rows(rig.store, clock=rig.clock)
    assert row["time_estimated"] == ["stop"]


async def test_the_export_says_which_times_were_estimated(tmp_path):
    m = Machine(synced=True)
    rig = Rig(tmp_path, m)
    await rig.session(100)
    # A session of an earlier boot whose clock was never known, as that boot journaled it.
    s = rig.journal.open(TAG, MeterReading(2000), None)
    rig.store.activate(s.id, 2000, "mono:oldboot:50.000~2026-05-01T10:00:00.000Z", (), None, None, False, {}, False)
    rig.store.stop(s.id, 2100, "mono:oldboot:950.000~2026-05-01T10:15:00.000Z", "Local")
    table = sessionlist.rows(rig.store, clock=rig.clock)
    assert [r["time_estimated"] for r in table] == [[], ["start", "stop"]]
    assert table[1]["started_at"] == "2026-05-01T10:00:00.000Z"  # the estimate it carries
    out = list(csv.reader(io.StringIO(sessionlist.to_csv(table))))
    assert out[0][-1] == "time_estimated" and out[0][:12] == sessionlist.FIELDS[:12]  # appended at the end
    assert [r[-1] for r in out[1:]] == ["", "start+stop"]
    assert out[2][5] == "2026-05-01T10:00:00.000Z"
    text = sessionlist.to_text(table)
    assert "~2026-05-01T10:00:00.000Z" in text and "~2026-05-01T10:15:00.000Z" in text
    assert "time estimated" in text.splitlines()[-1]
    assert "~" not in text.splitlines()[1]


class SendsTimes(Backend):
    kind = "test"

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[str, str | None]] = []

    async def authorize(self, id_tag, session):
        raise NotImplementedError

    async def deliver(self, item, session) -> DeliveryResult:
        self.got.append((session.started_at, session.stopped_at))
        return DeliveryResult(backend_session_id="1")


@pytest.mark.parametrize("tells_time", [True, False])
async def test_the_deliverer_waits_for_the_clock_only_for_a_backend_that_sends_times(tmp_path, tells_time):
    m = Machine()
    rig = Rig(tmp_path, m)
    await rig.session(100)
    backend = SendsTimes()
    backend.tells_time = tells_time
    deliverer = Deliverer(rig.store, backend, rig.clock)
    item = rig.store.next_message()
    assert item is not None
    session = rig.store.session(item.session_id)
    assert deliverer._resolve_times(session) is (not tells_time)
    rig.clock.set(at(m))
    assert deliverer._resolve_times(session)
    assert not session.started_at.startswith(MONO_PREFIX)
    assert abs((parse_iso(session.stopped_at or "") - parse_iso(session.started_at)).total_seconds() - 100) < 0.01


async def test_a_station_without_a_time_source_says_so_on_its_status_page(tmp_path):
    """Local backend, no NTP (untrusted system clock): the page says the clock is not synchronized,
    marks the session's times with "~", and the CSV's last column says which are estimates."""
    from tests.stations import running_station, state_is
    from tests.support.page import PAGE, http

    async with running_station(tmp_path, {**PAGE, "station.system_clock": "untrusted"}) as st:
        await st.world.tap(TAG)
        await state_is(st, "SuspendedEV")
        st.world.consume(300)
        await st.world.tap(TAG)
        await state_is(st, "Available")
        assert await st.flush(10)  # the local backend waits for no clock
        port = st.status_page._server.port
        _, _, page = await http(port)
        _, _, status = await http(port, path="/api/status")
        _, _, table = await http(port, path="/sessions.csv")
    assert json.loads(status)["clock"] == {"source": "estimate", "steps": 0}
    text = page.decode()
    assert "<th>Clock</th><td><span class=\"bad\">not synchronized</span>" in text
    assert text.count("<td>~") == 2
    [row] = list(csv.reader(io.StringIO(table.decode())))[1:]
    assert row[-1] == "start+stop" and not row[5].startswith(MONO_PREFIX)
