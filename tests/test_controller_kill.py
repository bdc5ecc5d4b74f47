"""kill -9 of a real `station simulate` process charging through a charge controller, and the restart.

The RS-485 line (meter and EVSE-DIN board with its car) belongs to the test, not to the station
process (`hardware.emulate_bus = false`, `meter.port` on the test's line), so it outlives the kill as
a real board outlives the Pi's process: after SIGKILL the board still offers the last session's
16 A and the car still charges, with no station behind it. The restarted station must write 0 A
before anything else, never offer current while it has no session (the car stays plugged in),
and close the killed session as after a power cut.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from station.emulated.bus import EmulatedBus
from station.emulated.car import Car
from station.emulated.controller_server import EmulatedController, meter_follows
from station.emulated.meter_server import EmulatedMeter
from station.store import Store
from tests.stations import CARD, until

ROOT = Path(__file__).resolve().parents[1]
BOARD = 2

CONFIG = """
[station]
name = "kill-test"
system_clock = "trusted"
[hardware]
mode = "sim"
emulate_bus = false
[meter]
model = "SDM630"
port = "{port}"
timeout_s = 1.0
[controller]
model = "EVSE-DIN"
address = 2
max_current_a = 16
poll_interval_s = 0.2
[charging]
meter_interval_s = 0.2
[rfid]
poll_interval_s = 0.05
absent_s = 0.3
[backend]
kind = "local"
[backend.local.tags]
"{card}" = "Apartment 2"
"""

CHARGE = f"""
[[step]]
action = "tap"
uid = "{CARD}"
[[step]]
action = "expect"
state = "Charging"
within = 30
[[step]]
action = "wait"
seconds = 120
"""

RESTART = """
settle_s = 10
[[step]]
action = "expect"
state = "Preparing"
within = 30
[[step]]
action = "wait"
seconds = 2
[[step]]
action = "expect"
state = "Preparing"
offered_a = 0
"""


async def _launch(tmp_path: Path, scenario: str, name: str) -> asyncio.subprocess.Process:
    path = tmp_path / f"{name}.toml"
    path.write_text(scenario)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115, ASYNC230 - the child writes it; closed below
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station", "--log-level", "INFO", "simulate", "-c", str(tmp_path / "station.toml"),
            "--state-dir", str(tmp_path / "state"), "--scenario", str(path), cwd=str(ROOT), env=env,
            stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL)
    finally:
        log.close()


@pytest.mark.timeout(240)
async def test_after_a_kill_and_a_restart_no_current_is_offered_without_a_session(tmp_path):
    line = EmulatedBus("socket")
    meter = EmulatedMeter("SDM630", address=1, bus=line, tick_s=None)
    board = EmulatedController("EVSE-DIN", address=BOARD, bus=line, car=Car(max_current_a=16), tick_s=None)
    meter_follows(board, meter)
    port = await line.start()
    await meter.start()
    await board.start()
    first: asyncio.subprocess.Process | None = None
    second: asyncio.subprocess.Process | None = None
    try:
        (tmp_path / "station.toml").write_text(CONFIG.format(port=port, card=CARD))
        board.plug()  # the car is plugged in before the station starts, and stays plugged in
        first = await _launch(tmp_path, CHARGE, "first")
        await until(lambda: board.setpoint == 16 and board.draw_a == 16, 90.0, "the car charging at 16 A")
        first.send_signal(signal.SIGKILL)  # this process only, by its pid
        await first.wait()
        assert board.setpoint == 16 and board.draw_a == 16  # the board kept its RAM: no station behind it

        before = len(line.writes)
        second = await _launch(tmp_path, RESTART, "second")
        await until(lambda: len(line.writes) > before, 90.0, "the restarted station's first write")
        assert line.writes[before].values == (0,)  # 0 A before anything else
        await until(lambda: board.setpoint == 0, 5.0, "the board taking it")  # (recorded as it arrives)
        offered = []
        while second.returncode is None:  # the car stays plugged in; nothing may be offered
            offered.append(board.offered_a)
            try:
                await asyncio.wait_for(second.wait(), 0.02)
            except TimeoutError:
                pass
        log = (tmp_path / "second.log").read_text()
        assert second.returncode == 0, log[-3000:]
        assert set(offered) == {0.0} and board.draw_a == 0
        assert {(w.function_code, w.address, w.values) for w in line.writes[before:] if w.device == BOARD} \
            == {(16, 1000, (0,))}
        assert board.eeprom_writes == {}
        store = Store.open(tmp_path / "state")
        try:
            sessions = store.sessions()
        finally:
            store.close()
        assert [s.stop_reason for s in sessions] == ["PowerLoss"]
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        await board.stop()
        await meter.stop()
        await line.stop()
