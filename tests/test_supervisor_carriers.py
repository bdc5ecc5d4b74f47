"""Safety loops and message carriers (station/supervisor.py): a loop that only carries messages is
restarted when it hangs or dies, a declared wait on the network is not a hang, and a safety loop
still fails the station. Time is the test's (an injected monotonic clock)."""

from __future__ import annotations

import asyncio
from typing import Any

from station.supervisor import RESTART_CALM_S, Supervisor


class Ticks:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def _turns(sup: Supervisor, name: str, counter: dict[str, int]) -> None:
    counter["starts"] = counter.get("starts", 0) + 1
    while True:
        await sup.checkpoint(name)
        counter["turns"] = counter.get("turns", 0) + 1
        await asyncio.sleep(0.01)


def _carrier(sup: Supervisor, name: str, counter: dict[str, int], deadline: float = 10.0):
    def respawn() -> asyncio.Task[Any]:
        return sup.spawn(_turns(sup, name, counter), name, critical=True, deadline_s=deadline)
    sup.restartable(name, respawn)
    return respawn


async def _until(cond, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met"
        await asyncio.sleep(0.01)


async def test_a_hung_carrier_is_restarted_not_a_station_failure():
    ticks = Ticks()
    sup = Supervisor(ticks)
    told: list[tuple[str, str]] = []
    sup.on_restart = lambda name, why: told.append((name, why))
    counter: dict[str, int] = {}
    _carrier(sup, "deliverer", counter)()
    await _until(lambda: counter.get("turns", 0) > 0)
    sup.hang.add("deliverer")  # it stops making progress
    await asyncio.sleep(0.05)
    ticks.t += 10.5
    assert sup.check() is None  # not a failure: restarted
    assert told and told[0][0] == "deliverer" and "no progress for 10.5 s" in told[0][1]
    await _until(lambda: counter["starts"] == 2)
    turns = counter["turns"]
    await _until(lambda: counter["turns"] > turns)  # the new one turns (the injected hang was the old task's)
    assert sup.restarts["deliverer"].count == 1 and sup.failure is None
    assert list(sup.loops()) == ["deliverer"]
    sup.stopping()
    assert await sup.close() == []


async def test_a_carrier_that_keeps_dying_is_restarted_with_backoff():
    ticks = Ticks()
    sup = Supervisor(ticks)
    starts = []

    async def dies() -> None:
        starts.append(ticks.t)
        raise RuntimeError("link bug")

    def respawn() -> asyncio.Task[Any]:
        return sup.spawn(dies(), "ocpp-link", critical=True, deadline_s=120)

    sup.restartable("ocpp-link", respawn)
    respawn()
    await _until(lambda: len(starts) == 2)  # the first restart is at once
    await asyncio.sleep(0.05)
    assert len(starts) == 2 and sup.check() is None  # the second waits 1 s
    ticks.t += 1.0
    assert sup.check() is None
    await _until(lambda: len(starts) == 3)
    ticks.t += 1.0
    sup.check()
    await asyncio.sleep(0.05)
    assert len(starts) == 3  # then 2 s
    ticks.t += 1.0
    sup.check()
    await _until(lambda: len(starts) == 4)
    ticks.t += RESTART_CALM_S + 5  # long after: started again when due (4 s), and then at once again
    assert sup.check() is None
    await _until(lambda: len(starts) >= 6)
    await asyncio.sleep(0.05)
    assert len(starts) == 6 and sup.restarts["ocpp-link"].count == 6 and sup.failure is None
    sup.stopping()
    await sup.close()


async def test_a_declared_wait_is_not_a_hang_but_its_bound_is():
    ticks = Ticks()
    sup = Supervisor(ticks)
    release = asyncio.Event()

    async def waits() -> None:
        with sup.waiting("deliverer", 120.0):
            await release.wait()
        await asyncio.Event().wait()

    sup.spawn(waits(), "deliverer", critical=True, deadline_s=180)
    await asyncio.sleep(0.02)
    ticks.t += 290  # beyond its deadline, within deadline + the declared wait
    assert sup.check() is None
    release.set()
    await asyncio.sleep(0.02)  # it leaves the wait: beats, and the deadline is 180 s again
    ticks.t += 179
    assert sup.check() is None
    ticks.t += 2
    assert sup.check() == "deliverer: no progress for 181.0 s (deadline 180 s)"  # not restartable here
    sup.stopping()
    await sup.close()


async def test_a_safety_loop_still_fails_the_station_while_carriers_are_restartable():
    ticks = Ticks()
    sup = Supervisor(ticks)
    counter: dict[str, int] = {}
    _carrier(sup, "deliverer", counter, deadline=180)()
    sup.spawn(_turns(sup, "meter", {}), "meter", critical=True, deadline_s=9)
    await asyncio.sleep(0.05)
    sup.hang.add("meter")
    await asyncio.sleep(0.05)
    ticks.t += 10
    assert sup.check() == "meter: no progress for 10.0 s (deadline 9 s)"
    assert sup.restarts == {}
    sup.stopping()
    await sup.close()


async def test_a_restart_cancels_the_hung_task():
    """The hung task is cancelled (its end is no failure), so two deliverers never run at once."""
    ticks = Ticks()
    sup = Supervisor(ticks)
    cancelled = asyncio.Event()
    first = True

    async def stuck() -> None:
        nonlocal first
        if not first:
            await asyncio.Event().wait()
        first = False
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def respawn() -> asyncio.Task[Any]:
        return sup.spawn(stuck(), "deliverer", critical=True, deadline_s=10)

    sup.restartable("deliverer", respawn)
    respawn()
    await asyncio.sleep(0.02)
    ticks.t += 11
    assert sup.check() is None
    await asyncio.wait_for(cancelled.wait(), 5)
    await asyncio.sleep(0.02)
    assert sup.check() is None and sup.failure is None
    assert sum(t.get_name() == "deliverer" and not t.done() for t in asyncio.all_tasks()) == 1
    sup.stopping()
    await sup.close()


# --------------------------------------------------------------------------- a whole station
async def test_a_hung_deliverer_is_restarted_and_the_charge_goes_on(tmp_path, monkeypatch, notify_socket):
    """Before issue 22 this opened the contactor mid-charge and ended the station (exit 70)."""
    import station.core.delivery
    import station.daemon
    from tests.stations import CARD, running_station, state_is, until

    monkeypatch.setattr(station.daemon, "DELIVERER_DEADLINE_S", 3.0)  # 180 s in the field
    monkeypatch.setattr(station.core.delivery, "IDLE_WAKE_S", 0.25)
    page = {"status_page.enabled": True, "status_page.listen": "127.0.0.1:0", "sim.load_w": 7400.0}
    async with running_station(tmp_path / "state", page, graceful=False) as st:
        await st.world.tap(CARD)
        await state_is(st, "Charging")
        st.world.inject("loop-hang", loop="deliverer")
        await until(lambda: "deliverer" in st.supervisor.restarts, timeout=30, what="the deliverer's restart")
        assert st.failure is None and st.world.contactor_closed and st.charger.state.value == "Charging"
        assert "restarted: deliverer 1x (deliverer: no progress" in st.status_line()
        await until(lambda: any("restarted: deliverer" in m for m in notify_socket.drain()), timeout=10,
                    what="STATUS= naming the restart")
        snap = await st.status_page.snapshot(False)
        assert snap["restarts"]["deliverer"]["count"] == 1
        st.world.consume(100)
        await st.world.tap(CARD)  # the restarted deliverer delivers the session
        await state_is(st, "Available")
        await until(lambda: st.store.pending_messages() == 0, timeout=10, what="the session delivered")
        assert st.failure is None


async def test_status_page_shows_what_needs_attention(tmp_path):
    from station.core.model import MessageKind, OutboxItem
    from station.statuspage import render_html
    from tests.stations import CARD, running_station, state_is

    page = {"status_page.enabled": True, "status_page.listen": "127.0.0.1:0"}
    async with running_station(tmp_path / "state", page) as st:
        await st.world.tap(CARD)
        await state_is(st, "SuspendedEV")
        sid = st.charger.session.id
        st.world.consume(42)
        await st.world.tap(CARD)
        await state_is(st, "Available")
        # What an OCPP backend leaves when the central system never processed the stop, and when
        # StartTransactions went unanswered (see tests/backends/ocpp/test_ocpp_slow_central_system.py).
        st.store.hold(OutboxItem(10_000, MessageKind.STOP, sid, {}, "2026-12-07T10:00:00Z"),
                      "StopTransaction not processed after 3 tries (last: CALLERROR InternalError)")
        st.store.set_extra(sid, maybe_open_at_backend={"count": 2, "timestamp": "2026-12-07T09:00:00.000Z"})
        snap = await st.status_page.snapshot(False)
        assert snap["backend"]["held"] == 1
        [row] = snap["attention"]
        assert row["id"] == sid and "not processed after 3 tries" in row["undelivered"]
        assert row["maybe_open_at_backend"] == 2 and row["id_tag"] == "…3B"  # masked without a password
        html = render_html(snap)
        assert "Needs attention" in html and f"station sessions --resend {sid}" in html
        assert "may hold 2 transaction(s) open" in html and "meterStart 0 Wh" in html
        assert "2026-12-07T09:00:00.000Z" in html and CARD not in html
        assert '<span class="bad">held</span>' in html  # in the list of sessions too
