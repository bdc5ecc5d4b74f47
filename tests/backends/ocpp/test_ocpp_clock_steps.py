"""BootNotification's currentTime, then the wall clock steps: counted once in StopTransaction.

A real `station simulate` process under the clock shim (tests/clock_shim.py) speaks OCPP 1.6 to the
independent strict central system (npm ocpp-rpc, its own unshifted clock). The Pi boots with a
fake-hwclock time 3 days old and an unsynchronized kernel; BootNotification's currentTime sets the
clock; then NTP steps the system clock +3 days during the first transaction, and it is set back an
hour during the second. Before the fix the offset to the central system's time was kept against the
system clock: StopTransaction went out 3 days ahead (a 3-day transaction), and the second stopped
before it started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import strict_peer

from station.clock import parse_iso
from tests.clock_shim import CARD, DAY, TOLERANCE_S, Shim, build, check, run, scenario


@pytest.fixture
def shim_lib(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("clockshim"))


async def test_a_step_after_boot_notifications_time_does_not_count_twice(shim_lib, tmp_path):
    cs = await strict_peer.start()
    try:
        shim = Shim(shim_lib, tmp_path / "shim", offset=-3 * DAY, synced=False)
        config = tmp_path / "ocpp.toml"
        config.write_text(f'[station]\nname = "CP1"\n[backend]\nkind = "ocpp"\n'
                          f'[backend.ocpp]\nurl = "{cs.url}"\ncharge_point_id = "CP1"\n')
        plan = {1: (2.0, "NTP step +3 days", lambda: shim.step(3 * DAY)),
                2: (2.0, "-1 hour", lambda: shim.step(-3600))}
        rows, seen, summary = await run(shim, tmp_path / "state", scenario(2, 6.0, system_clock="ntp", uid=CARD),
                                        plan, config=config)
        starts = [e["params"] for e in cs.events if e["event"] == "call" and e["method"] == "StartTransaction"]
        stops = [e["params"] for e in cs.events if e["event"] == "call" and e["method"] == "StopTransaction"]
        assert not cs.failures(), cs.failures()
    finally:
        await cs.close()
    assert summary["undelivered"] == 0
    check(rows, seen, absolute={1, 2})
    assert len(starts) == len(stops) == 2
    for start, stop, s in zip(starts, stops, seen, strict=True):
        began, ended = parse_iso(start["timestamp"]), parse_iso(stop["timestamp"])
        assert s.stopped_wall is not None
        assert abs((ended - s.stopped_wall).total_seconds()) < TOLERANCE_S, (stop["timestamp"], s.stopped_wall)
        assert abs((ended - began).total_seconds() - s.duration) < TOLERANCE_S, (start, stop, s.duration)
